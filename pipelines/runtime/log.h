// Logging shared by the runner and the pipelines: `[component] message` lines on the main
// process, a progress display (a redrawn bar on a terminal, periodic plain lines otherwise),
// and per-stage metrics.jsonl.
#pragma once
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace nurture {

// True on the process that prints and writes (rank 0; every process when not distributed).
bool is_main_process();

// `[component] message` on stdout (main process only), flushed.
void log_line(const std::string& component, const std::string& message);
// The same on stderr, on every process (warnings and errors).
void warn_line(const std::string& component, const std::string& message);

// 12345 -> "12.3k"; for throughput and counts in log lines.
std::string human_count(double v);
// 190 s -> "3m10s".
std::string human_duration(double seconds);
// (3.14159, 2) -> "3.14": figures in log lines and progress fields.
std::string fixed(double v, int digits);
// (0.00012, 1) -> "1.2e-04": learning rates in log lines.
std::string scientific(double v, int digits);
// `text` with every byte that is not part of valid UTF-8 written as \xNN, so that a message
// quoting a user's bad bytes can be printed and stored in JSON.
std::string escape_invalid_utf8(const std::string& text);

// Progress of a loop with a known number of steps. On a terminal, one line redrawn in place
// (at most a few times a second); otherwise a plain line every `plain_every_s` seconds and at
// the last step. `fields` are already formatted ("loss", "1.734").
class Progress {
 public:
  using Fields = std::vector<std::pair<std::string, std::string>>;
  Progress(std::string component, int64_t total, double plain_every_s = 10.0);
  ~Progress();
  void update(int64_t step, const Fields& fields);
  void finish();  // ends the bar's line on a terminal

 private:
  std::string line(int64_t step, const Fields& fields, bool bar) const;
  std::string component_;
  int64_t total_;
  double plain_every_s_;
  bool tty_;
  bool open_line_ = false;
  std::chrono::steady_clock::time_point start_, last_print_;
  int64_t start_step_ = -1;
};

// Appends one JSON object per line to <dir>/metrics.jsonl (main process only). A log that cannot
// be opened or written is a std::runtime_error naming the file, not a run without its curves.
class MetricsLog {
 public:
  explicit MetricsLog(const std::filesystem::path& file);
  void write(const nlohmann::json& record);

 private:
  std::filesystem::path file_;
  std::ofstream out_;
};

// On resume: drops the lines of a metrics file whose `key` (step, iteration) is past `last` (what
// a crashed run logged after its last checkpoint; it will be logged again) and a half-written
// last line. Only the main process writes; a missing file is left missing.
void drop_metrics_after(const std::filesystem::path& file, const std::string& key, int64_t last);

}  // namespace nurture
