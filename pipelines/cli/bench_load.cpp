// `nurture bench --mode load`: what loading a checkpoint costs (see bench.h).
#include <malloc.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "modules/model/model_dir.h"
#include "pipelines/cli/bench.h"
#include "pipelines/runtime/log.h"
#include "pipelines/runtime/threads.h"

namespace nurture {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

int64_t directory_bytes(const fs::path& dir) {
  int64_t bytes = 0;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file()) bytes += static_cast<int64_t>(entry.file_size());
  return bytes;
}

// Starts a new peak: Linux resets VmHWM to the current RSS on "5" in /proc/self/clear_refs.
bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

// Loads `dir` once and measures it: seconds, and the peak and remaining RSS above the RSS before.
json measure_load(const fs::path& dir, torch::ScalarType dtype) {
  ::malloc_trim(0);
  if (!reset_peak_rss()) throw std::runtime_error("cannot reset the peak RSS (/proc/self/clear_refs)");
  const int64_t before = proc_status_bytes("VmRSS");
  const auto start = std::chrono::steady_clock::now();
  Transformer model = load_transformer(dir, torch::kCPU, dtype);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t peak = proc_status_bytes("VmHWM") - before, after = proc_status_bytes("VmRSS") - before;
  return {{"dir", dir.string()}, {"bytes_on_disk", directory_bytes(dir)}, {"load_s", seconds},
          {"peak_rss_extra_bytes", peak}, {"rss_extra_after_bytes", after}};
}

}  // namespace

json run_load_bench(const BenchOptions& o) {
  const TransformerOptions shape = bench_model_options(o);
  set_cpu_threads(o.threads > 0 ? o.threads : default_cpu_threads());
  const torch::ScalarType dtype = o.precision == "bf16" ? torch::kBFloat16 : torch::kFloat;
  const fs::path root = fs::temp_directory_path() / ("nurture-bench-load-" + std::to_string(::getpid()));
  fs::remove_all(root);
  json result = {{"mode", "load"}, {"preset", o.preset}, {"model", to_json(shape)},
                 {"precision", o.precision}, {"torch_version", TORCH_VERSION}};
  try {
    int64_t model_bytes = 0, largest = 0, parameters = 0;
    {
      torch::manual_seed(o.seed);
      Transformer model(shape);
      model->to(dtype);
      for (const auto& p : model->parameters()) {
        model_bytes += p.numel() * static_cast<int64_t>(p.element_size());
        largest = std::max<int64_t>(largest, p.numel() * static_cast<int64_t>(p.element_size()));
        parameters += p.numel();
      }
      save_model(root / "hf", *model, shape, "lm", ModelFormat::kHuggingFace);
      save_model(root / "nurture", *model, shape, "lm", ModelFormat::kNurture);
    }
    result.update({{"parameters", parameters}, {"model_bytes", model_bytes}, {"largest_tensor_bytes", largest}});
    result["hf"] = measure_load(root / "hf", dtype);
    result["nurture"] = measure_load(root / "nurture", dtype);
  } catch (...) {
    fs::remove_all(root);
    throw;
  }
  fs::remove_all(root);
  return result;
}

std::string format_load_bench(const json& r) {
  auto mib = [](const json& bytes) { return fixed(bytes.get<double>() / (1 << 20), 0) + " MiB"; };
  const double model = r["model_bytes"].get<double>();
  std::ostringstream out;
  out << "[bench] load: " << r["preset"].get<std::string>() << ", " << human_count(r["parameters"].get<double>())
      << " parameters in " << r["precision"].get<std::string>() << " = " << mib(r["model_bytes"])
      << " (largest tensor " << mib(r["largest_tensor_bytes"]) << "), LibTorch "
      << r["torch_version"].get<std::string>() << "\n";
  for (const char* format : {"hf", "nurture"}) {
    const json& m = r[format];
    const double peak = m["peak_rss_extra_bytes"].get<double>();
    out << "[bench] " << (std::string(format) == "hf" ? "hf safetensors " : "nurture model.pt") << "  "
        << mib(m["bytes_on_disk"]) << " on disk, loaded in " << fixed(m["load_s"].get<double>(), 2) << " s, peak RSS +"
        << mib(m["peak_rss_extra_bytes"]) << " = " << fixed(peak / model, 2) << " x the model = the model + "
        << fixed((peak - model) / r["largest_tensor_bytes"].get<double>(), 2) << " x its largest tensor; +"
        << mib(m["rss_extra_after_bytes"]) << " after\n";
  }
  return out.str();
}

}  // namespace nurture
