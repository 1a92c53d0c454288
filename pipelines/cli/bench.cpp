// The benchmark behind `nurture bench` (see bench.h).
#include "pipelines/cli/bench.h"

#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>
#include <thread>

#include "modules/core/compat.h"
#include "modules/generation/sampling.h"
#include "modules/objectives/losses.h"
#include "pipelines/runtime/distributed.h"
#include "pipelines/runtime/log.h"
#include "pipelines/runtime/threads.h"
#include "pipelines/train/trainer.h"

namespace nurture {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- what is counted -----------------------------------------------------------------------------

TransformerOptions bench_model_options(const BenchOptions& o) {
  TransformerOptions model = preset(o.preset);
  for (const auto& [key, value] : o.overrides) set_option(model, key, value);
  validate(model);
  return model;
}

double train_flops_per_token(const TransformerOptions& m, int64_t context) {
  const double n = static_cast<double>(count_parameters(m));
  return 6.0 * n + 6.0 * static_cast<double>(m.n_layer() * m.n_embd() * context);
}

double generate_flops_per_token(const TransformerOptions& m, double mean_positions) {
  const double n = static_cast<double>(count_parameters(m));
  return 2.0 * n + 2.0 * static_cast<double>(m.n_layer() * m.n_embd()) * mean_positions;
}

static void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

double measured_matmul_flops(const torch::Device& device, torch::ScalarType dtype) {
  constexpr int64_t kN = 2048;
  torch::NoGradGuard no_grad;
  const auto options = torch::TensorOptions().dtype(dtype).device(device);
  auto a = torch::randn({kN, kN}, options), b = torch::randn({kN, kN}, options);
  auto c = torch::mm(a, b);  // warm-up (thread pools, BLAS buffers)
  synchronize(device);
  double best = 0;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const auto start = std::chrono::steady_clock::now();
    torch::mm_out(c, a, b);
    synchronize(device);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, 2.0 * kN * kN * kN / s);
  }
  return best;
}

std::optional<double> datasheet_peak_flops(const std::string& name, const std::string& precision) {
  // Dense (no sparsity) peaks in FLOP/s: bf16 tensor cores; fp32 runs as TF32 (set_cuda_matmul_tf32).
  struct Peak {
    const char* name;
    double bf16, tf32;
  };
  static const std::vector<Peak> kPeaks = {
      {"H200", 989e12, 494e12},  {"H100 PCIe", 756e12, 378e12}, {"H100", 989e12, 494e12},
      {"A100", 312e12, 156e12},  {"L40S", 362e12, 183e12},      {"L4", 121e12, 60e12},
      {"A10G", 70e12, 35e12},    {"V100", 125e12, 15.7e12},
  };
  for (const auto& p : kPeaks)
    if (name.find(p.name) != std::string::npos) return precision == "bf16" ? p.bf16 : p.tf32;
  return std::nullopt;
}

// ---- memory ------------------------------------------------------------------------------------------

int64_t proc_status_bytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) != 0) continue;
    std::istringstream fields(line.substr(field.size() + 1));
    int64_t kib = 0;
    fields >> kib;
    return kib * 1024;
  }
  return 0;
}

static std::string gpu_name(const torch::Device& device) {
  const std::string command = "nvidia-smi --query-gpu=name --format=csv,noheader -i " +
                              std::to_string(std::max<int>(0, device.index())) + " 2>/dev/null";
  std::string name;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buffer[256];
    while (fgets(buffer, sizeof buffer, pipe)) name += buffer;
    pclose(pipe);
  }
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  return name;
}

// ---- the timed loops --------------------------------------------------------------------------------

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The real training step: Trainer::step over a pretrain-style micro-batch of random tokens.
std::vector<double> time_training(Transformer& model, const BenchOptions& o, int64_t* memory_after_warmup) {
  StageContext ctx{"bench", "bench", fs::temp_directory_path(), Settings(ConfigNode(), "bench"), {}, {}};
  ctx.run.device = o.device;
  TrainingOptions training;
  training.batch_size = o.batch;
  training.max_steps = o.warmup + o.steps;
  Trainer trainer(ctx, *model, training);
  model->train();
  auto generator = compat::make_generator(o.seed, torch::kCPU);
  const int64_t vocab = model->options.vocab_size();
  auto micro_step = [&](TrainingState&) {
    auto tokens = torch::randint(vocab, {o.batch, o.context}, generator, torch::kLong).to(o.device);
    LMLoss loss = lm_loss(model->forward(tokens), tokens);  // [B, T] -> [B, T, V]
    return MicroBatch{loss.sum, loss.count, o.batch * o.context, {}};
  };
  compat::AutocastGuard autocast(o.device, o.precision == "bf16" ? torch::kBFloat16 : torch::kFloat);
  std::vector<double> times;
  std::unique_ptr<torch::autograd::profiler::RecordProfile> profiler;
  for (int64_t i = 0; i < o.warmup + o.steps; ++i) {
    if (i == o.warmup) *memory_after_warmup = proc_status_bytes("VmRSS");
    if (i == o.warmup && !o.profile.empty())
      profiler = std::make_unique<torch::autograd::profiler::RecordProfile>(o.profile);
    synchronize(o.device);
    const auto start = std::chrono::steady_clock::now();
    trainer.step(micro_step);
    synchronize(o.device);
    if (i >= o.warmup) times.push_back(seconds_since(start));
  }
  return times;
}

// Batched KV-cache generation of new_tokens per row after random prompts (no early stop).
std::vector<double> time_generation(Transformer& model, const BenchOptions& o, int64_t* memory_after_warmup) {
  auto generator = compat::make_generator(o.seed, torch::kCPU);
  const int64_t vocab = model->options.vocab_size();
  const auto prompt_tokens = torch::randint(vocab, {o.batch, o.prompt_length}, generator, torch::kLong);
  std::vector<std::vector<int64_t>> prompts;
  for (int64_t b = 0; b < o.batch; ++b) {
    const int64_t* row = prompt_tokens[b].data_ptr<int64_t>();
    prompts.emplace_back(row, row + o.prompt_length);
  }
  const auto sampling = SamplingOptions().max_new_tokens(o.new_tokens).temperature(1.0);
  compat::AutocastGuard autocast(o.device, o.precision == "bf16" ? torch::kBFloat16 : torch::kFloat);
  std::vector<double> times;
  std::unique_ptr<torch::autograd::profiler::RecordProfile> profiler;
  for (int64_t i = 0; i < o.warmup + o.steps; ++i) {
    if (i == o.warmup) *memory_after_warmup = proc_status_bytes("VmRSS");
    if (i == o.warmup && !o.profile.empty())
      profiler = std::make_unique<torch::autograd::profiler::RecordProfile>(o.profile);
    synchronize(o.device);
    const auto start = std::chrono::steady_clock::now();
    generate(model, prompts, sampling, compat::make_generator(o.seed + static_cast<uint64_t>(i), o.device));
    synchronize(o.device);
    if (i >= o.warmup) times.push_back(seconds_since(start));
  }
  return times;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

// ---- the profile ------------------------------------------------------------------------------------

json self_time_by_op(const json& events) {
  // Per thread, in start order (the longer first on a tie): an event is nested in the one below
  // it on the stack while it starts before that one ends.
  struct Event {
    std::string name;
    double start, duration, self;
  };
  std::map<std::string, std::vector<Event>> threads;
  for (const auto& e : events) {
    if (!e.is_object() || e.value("ph", "") != "X" || !e.contains("dur") || !e.contains("ts")) continue;
    const std::string thread = e.contains("tid") ? e["tid"].dump() : "";
    const double duration = e["dur"].get<double>();
    threads[thread].push_back({e.value("name", "?"), e["ts"].get<double>(), duration, duration});
  }
  std::map<std::string, std::pair<double, int64_t>> by_op;  // microseconds, calls
  for (auto& [thread, list] : threads) {
    std::sort(list.begin(), list.end(), [](const Event& a, const Event& b) {
      return a.start != b.start ? a.start < b.start : a.duration > b.duration;
    });
    std::vector<Event*> stack;
    for (auto& e : list) {
      while (!stack.empty() && e.start >= stack.back()->start + stack.back()->duration) stack.pop_back();
      if (!stack.empty()) stack.back()->self -= e.duration;
      stack.push_back(&e);
    }
    for (const auto& e : list) {
      by_op[e.name].first += std::max(0.0, e.self);
      by_op[e.name].second += 1;
    }
  }
  json out = json::array();
  for (const auto& [op, v] : by_op) out.push_back({{"op", op}, {"self_s", v.first * 1e-6}, {"calls", v.second}});
  std::sort(out.begin(), out.end(), [](const json& a, const json& b) { return a["self_s"] > b["self_s"]; });
  return out;
}

// ---- the benchmark ----------------------------------------------------------------------------------

namespace {

// Options that cannot work, before anything is built: the mode and precision, then whether the
// sequences fit the model.
void check_bench_modes(const BenchOptions& o) {
  if (o.mode != "train" && o.mode != "generate" && o.mode != "load")
    throw std::invalid_argument("--mode: expected train, generate or load, got \"" + o.mode + "\"");
  if (o.precision != "fp32" && o.precision != "bf16")
    throw std::invalid_argument("--precision: expected fp32 or bf16, got \"" + o.precision + "\"");
}

void check_bench_fits(const BenchOptions& o, const TransformerOptions& shape) {
  if (o.mode == "train" && o.context > shape.block_size())
    throw std::invalid_argument("--ctx " + std::to_string(o.context) + " exceeds the model's block_size " +
                                std::to_string(shape.block_size()) + " (raise it with --set block_size=N)");
  if (o.mode == "generate" && o.prompt_length + o.new_tokens > shape.block_size())
    throw std::invalid_argument("--prompt-len + --new-tokens (" + std::to_string(o.prompt_length + o.new_tokens) +
                                ") exceed the model's block_size " + std::to_string(shape.block_size()) +
                                " (raise it with --set block_size=N)");
}

// The peak the achieved rate is measured against, and where it comes from.
struct Peak {
  double flops = 0;  // 0: unknown
  std::string source;
};

Peak bench_peak(const BenchOptions& o, const std::string& device_name, int ranks) {
  Peak peak{o.peak_flops, "--peak-tflops"};
  if (peak.flops <= 0 && o.device.is_cpu()) {
    peak.flops = measured_matmul_flops(o.device, o.precision == "bf16" ? torch::kBFloat16 : torch::kFloat);
    peak.source = std::string("measured 2048^3 ") + (o.precision == "bf16" ? "bf16" : "fp32") + " matrix product";
  } else if (peak.flops <= 0) {
    if (auto datasheet = datasheet_peak_flops(device_name, o.precision)) {
      peak.flops = *datasheet;
      peak.source = "datasheet (" + device_name + ", dense " + (o.precision == "bf16" ? "bf16" : "tf32") + ")";
    } else {
      peak.source = "unknown device '" + device_name + "' (give --peak-tflops)";
    }
  }
  // Every rank of a data-parallel run has the peak of its own threads or device.
  if (peak.flops > 0 && ranks > 1) {
    peak.flops *= ranks;
    peak.source += " x " + std::to_string(ranks) + " ranks";
  }
  return peak;
}

// The 25 ops with the most self time in the profiler's trace (written when its guard went out of
// scope, at the end of the timed loop).
json profile_summary(const BenchOptions& o) {
  std::ifstream in(o.profile);
  const json trace = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (trace.is_discarded()) throw std::runtime_error(o.profile + ": the profiler's trace is not valid JSON");
  json ops = self_time_by_op(trace.is_object() ? trace.value("traceEvents", json::array()) : trace);
  for (auto& op : ops) op["self_s_per_step"] = op["self_s"].get<double>() / static_cast<double>(o.steps);
  if (ops.size() > 25) ops.erase(ops.begin() + 25, ops.end());
  return {{"trace", o.profile}, {"ops", ops}};
}

}  // namespace

json run_bench(const BenchOptions& o) {
  check_bench_modes(o);
  if (o.mode == "load") return run_load_bench(o);
  const TransformerOptions shape = bench_model_options(o);
  check_bench_fits(o, shape);
  // 0 threads: the cores, shared among the processes of this node (nurture launch).
  const int threads = o.threads > 0 ? o.threads : default_cpu_threads();
  set_cpu_threads(threads);
  torch::manual_seed(o.seed);
  if (o.device.is_cuda()) compat::set_cuda_matmul_tf32(true);  // as recipes run (tf32: true)
  Transformer model(shape);
  model->to(o.device);

  int64_t memory_after_warmup = 0;
  const std::vector<double> times = o.mode == "train" ? time_training(model, o, &memory_after_warmup)
                                                      : time_generation(model, o, &memory_after_warmup);
  const int64_t peak_rss = proc_status_bytes("VmHWM");
  const double step = median(times);
  // With several ranks (training in lockstep) the step processes every rank's batch.
  const int ranks = o.mode == "train" ? dist::world_size() : 1;
  const double tokens_per_step =
      static_cast<double>(ranks * o.batch * (o.mode == "train" ? o.context : o.new_tokens));
  const double flops_per_token =
      o.mode == "train" ? train_flops_per_token(shape, o.context)
                        : generate_flops_per_token(shape, static_cast<double>(o.prompt_length) + 0.5 * o.new_tokens);
  const std::string device_name = o.device.is_cuda() ? gpu_name(o.device) : "cpu";
  const Peak peak = bench_peak(o, device_name, ranks);
  const double achieved = tokens_per_step / step * flops_per_token;

  json result = {{"mode", o.mode},
                 {"preset", o.preset},
                 {"model", to_json(shape)},
                 {"parameters", count_parameters(shape)},
                 {"batch", o.batch},
                 {"device", o.device.str()},
                 {"device_name", device_name},
                 {"precision", o.precision},
                 {"threads", o.device.is_cpu() ? torch::get_num_threads() : 0},
                 {"ranks", ranks},
                 {"torch_version", compat::torch_version()},
                 {"warmup_steps", o.warmup},
                 {"timed_steps", o.steps},
                 {"step_time_s", step},
                 {"step_time_min_s", *std::min_element(times.begin(), times.end())},
                 {"step_time_max_s", *std::max_element(times.begin(), times.end())},
                 {"step_times_s", times},
                 {"tokens_per_step", tokens_per_step},
                 {"tokens_per_s", tokens_per_step / step},
                 {"flops_per_token", flops_per_token},
                 {"achieved_flops", achieved},
                 {"peak_flops", peak.flops > 0 ? json(peak.flops) : json(nullptr)},
                 {"peak_flops_source", peak.source},
                 {"mfu", peak.flops > 0 ? json(achieved / peak.flops) : json(nullptr)},
                 {"peak_rss_bytes", peak_rss},
                 {"rss_after_warmup_bytes", memory_after_warmup}};
  if (!o.profile.empty()) result["profile"] = profile_summary(o);
  if (o.mode == "train") result["context"] = o.context;
  if (o.mode == "generate") {
    result["prompt_length"] = o.prompt_length;
    result["new_tokens"] = o.new_tokens;
  }
  return result;
}

// ---- output ------------------------------------------------------------------------------------------

static std::string mib(int64_t bytes) { return fixed(static_cast<double>(bytes) / (1 << 20), 0) + " MiB"; }

std::string format_bench(const json& r) {
  if (r["mode"] == "load") return format_load_bench(r);
  std::ostringstream out;
  const json& m = r["model"];
  out << "[bench] " << r["preset"].get<std::string>() << ": " << human_count(r["parameters"].get<double>())
      << " parameters (" << m["n_layer"] << " layers, " << m["n_head"] << " heads, width " << m["n_embd"]
      << ", vocab " << m["vocab_size"] << ", block " << m["block_size"] << ")\n";
  out << "[bench] " << r["mode"].get<std::string>() << ": batch " << r["batch"];
  if (r["mode"] == "train")
    out << " x " << r["context"] << " tokens";
  else
    out << ", prompts of " << r["prompt_length"] << " + " << r["new_tokens"] << " new tokens";
  out << ", " << r["device"].get<std::string>() << " " << r["precision"].get<std::string>();
  if (r["device"] == "cpu") out << ", " << r["threads"] << " threads";
  if (r["ranks"].get<int>() > 1) out << " x " << r["ranks"] << " ranks";
  else out << " (" << r["device_name"].get<std::string>() << ")";
  out << ", LibTorch " << r["torch_version"].get<std::string>() << "\n";
  out << "[bench] step " << fixed(1e3 * r["step_time_s"].get<double>(), 1) << " ms median of "
      << r["timed_steps"] << " after " << r["warmup_steps"] << " warm-up (min "
      << fixed(1e3 * r["step_time_min_s"].get<double>(), 1) << ", max "
      << fixed(1e3 * r["step_time_max_s"].get<double>(), 1) << ") -> "
      << human_count(r["tokens_per_s"].get<double>()) << " tok/s\n";
  out << "[bench] " << fixed(r["achieved_flops"].get<double>() / 1e9, 1) << " GFLOP/s ("
      << fixed(r["flops_per_token"].get<double>() / 1e6, 2) << " MFLOP/token)";
  if (!r["mfu"].is_null())
    out << ", MFU " << fixed(100 * r["mfu"].get<double>(), 1) << "% of "
        << fixed(r["peak_flops"].get<double>() / 1e9, 1) << " GFLOP/s, " << r["peak_flops_source"].get<std::string>();
  else
    out << ", MFU unknown: " << r["peak_flops_source"].get<std::string>();
  out << "\n[bench] memory: peak RSS " << mib(r["peak_rss_bytes"].get<int64_t>()) << " (RSS after warm-up "
      << mib(r["rss_after_warmup_bytes"].get<int64_t>()) << ")\n";
  if (r.contains("profile")) {
    const double step = r["step_time_s"].get<double>();
    out << "[bench] profile (" << r["profile"]["trace"].get<std::string>()
        << ", open it in chrome://tracing or Perfetto; timings above include the profiler's overhead):\n"
        << "[bench]   self ms/step   share   calls/step  op\n";
    const double steps = r["timed_steps"].get<double>();
    int shown = 0;
    for (const auto& op : r["profile"]["ops"]) {
      if (++shown > 15) break;
      const double per_step = op["self_s_per_step"].get<double>();
      out << "[bench]   " << std::setw(12) << fixed(1e3 * per_step, 2) << "  " << std::setw(5)
          << fixed(100 * per_step / step, 1) << "%  " << std::setw(11) << fixed(op["calls"].get<double>() / steps, 0)
          << "  " << op["op"].get<std::string>() << "\n";
    }
  }
  return out.str();
}

}  // namespace nurture
