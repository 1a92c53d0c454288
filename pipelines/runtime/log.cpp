// Log lines, the progress display and metrics.jsonl.
#include "pipelines/runtime/log.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "modules/core/files.h"

namespace nurture {

bool is_main_process() {
  // Set by the launcher / torchrun / Slurm; a single process is rank 0.
  for (const char* var : {"RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK"}) {
    if (const char* v = std::getenv(var)) return std::atoi(v) == 0;
  }
  return true;
}

void log_line(const std::string& component, const std::string& message) {
  if (!is_main_process()) return;
  std::cout << "[" << component << "] " << message << std::endl;
}

void warn_line(const std::string& component, const std::string& message) {
  std::cerr << "[" << component << "] warning: " << message << std::endl;
}

std::string human_count(double v) {
  char buf[32];
  const double a = std::fabs(v);
  if (a >= 1e9) std::snprintf(buf, sizeof buf, "%.2fG", v / 1e9);
  else if (a >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (a >= 1e3) std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

std::string escape_invalid_utf8(const std::string& text) {
  std::string out;
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = byte(i);
    // The length of the sequence c starts, and the smallest code point it may encode.
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    uint32_t code = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
    bool valid = n > 0 && i + n <= text.size();
    for (size_t k = 1; valid && k < n; ++k) {
      valid = (byte(i + k) & 0xC0) == 0x80;
      code = (code << 6) | (byte(i + k) & 0x3F);
    }
    static const uint32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};
    valid = valid && code >= smallest[n] && code <= 0x10FFFF && (code < 0xD800 || code > 0xDFFF);
    if (valid) {
      out.append(text, i, n);
      i += n;
    } else {
      char escaped[5];
      std::snprintf(escaped, sizeof escaped, "\\x%02X", c);
      out += escaped;
      ++i;
    }
  }
  return out;
}

std::string human_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  std::ostringstream out;
  if (s >= 3600) out << s / 3600 << "h" << (s % 3600) / 60 << "m";
  else if (s >= 60) out << s / 60 << "m" << s % 60 << "s";
  else out << s << "s";
  return out.str();
}

std::string fixed(double v, int digits) {
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(digits);
  out << v;
  return out.str();
}

std::string scientific(double v, int digits) {
  std::ostringstream out;
  out.setf(std::ios::scientific);
  out.precision(digits);
  out << v;
  return out.str();
}

// ---- Progress --------------------------------------------------------------------------------------

Progress::Progress(std::string component, int64_t total, double plain_every_s)
    : component_(std::move(component)),
      total_(total),
      plain_every_s_(plain_every_s),
      tty_(isatty(STDOUT_FILENO) && is_main_process()),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

Progress::~Progress() { finish(); }

std::string Progress::line(int64_t step, const Fields& fields, bool bar) const {
  std::ostringstream out;
  out << "[" << component_ << "] step " << step << "/" << total_;
  if (bar) {
    const int width = 20;
    const int filled = total_ > 0 ? static_cast<int>(width * step / total_) : width;
    out << " [" << std::string(filled, '#') << std::string(width - filled, '.') << "]";
  }
  for (const auto& [k, v] : fields) out << " " << k << " " << v;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const int64_t done = step - start_step_;
  if (done > 0 && step < total_) out << " eta " << human_duration(elapsed / done * (total_ - step));
  return out.str();
}

void Progress::update(int64_t step, const Fields& fields) {
  if (!is_main_process()) return;
  if (start_step_ < 0) start_step_ = step > 0 ? step - 1 : 0;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_print_).count();
  const bool last = step >= total_;
  if (tty_) {
    if (since < 0.2 && !last) return;
    std::cout << "\r\033[K" << line(step, fields, true) << std::flush;
    open_line_ = true;
  } else {
    if (since < plain_every_s_ && !last) return;
    std::cout << line(step, fields, false) << std::endl;
  }
  last_print_ = now;
}

void Progress::finish() {
  if (open_line_) std::cout << std::endl;
  open_line_ = false;
}

// ---- MetricsLog -------------------------------------------------------------------------------------

void drop_metrics_after(const std::filesystem::path& file, const std::string& key, int64_t last) {
  if (!is_main_process() || !std::filesystem::exists(file)) return;
  std::ifstream in(file);
  std::string kept, line;
  while (std::getline(in, line)) {
    try {
      if (nlohmann::json::parse(line).value(key, int64_t{0}) <= last) kept += line + "\n";
    } catch (const nlohmann::json::exception&) {  // a half-written last line
    }
  }
  in.close();
  write_file_atomic(file, kept);  // interrupted here, the run still has every record it had
}

MetricsLog::MetricsLog(const std::filesystem::path& file) : file_(file) {
  if (!is_main_process()) return;
  out_.open(file, std::ios::app);
  if (!out_) throw std::runtime_error(file.string() + ": cannot open the metrics log for appending");
}

void MetricsLog::write(const nlohmann::json& record) {
  if (!out_.is_open()) return;  // another rank's: rank 0 writes the log
  out_ << record.dump() << "\n";
  out_.flush();
  if (!out_) throw std::runtime_error(file_.string() + ": cannot write the metrics log (is the disk full?)");
}

}  // namespace nurture
