// `nurture bench`: how fast the real training step (forward, backward, clipping, AdamW — the
// Trainer's own step()) or batched KV-cache generation runs for one model shape. Reports the
// median step time after warm-up, tokens/s, MFU, peak memory and the threads or device used.
//
// MFU counts flops as llm.c does: training 6·N + 6·L·C·T per token (N parameters, L layers,
// C width, T context); generation 2·N + 2·L·C·S per new token (S the positions it attends to).
// The peak is the measured matrix-product rate on CPU (a large sgemm at the same threads) and the
// datasheet's dense rate on known GPUs; --peak-tflops overrides both.
//
// --mode load (bench_load.cpp) writes a random model of the shape (in --precision) as a Hugging
// Face directory and as nurture's model.pt, then loads each on the CPU and reports the seconds and
// the peak RSS above what the process held before: safetensors are memory-mapped and converted
// tensor by tensor, so that peak should be the model plus at most one tensor.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "modules/model/transformer.h"

namespace nurture {

struct BenchOptions {
  std::string preset = "llama_micro";
  std::vector<std::pair<std::string, std::string>> overrides;  // model option -> value
  std::string mode = "train";        // "train" | "generate" | "load"
  int64_t batch = 8;
  int64_t context = 256;             // train: tokens per row
  int64_t steps = 20;                // timed steps (train) or generations (generate)
  int64_t warmup = 3;                // untimed steps first
  int64_t prompt_length = 128;       // generate: prompt tokens per row
  int64_t new_tokens = 256;          // generate: tokens generated per row (no early stop)
  torch::Device device = torch::kCPU;
  std::string precision = "fp32";    // "fp32" | "bf16" (autocast, as recipes do)
  int threads = 0;                   // CPU intra-op threads; 0 = all cores
  double peak_flops = 0;             // 0 = measured (CPU) / datasheet (GPU)
  uint64_t seed = 0;
  std::string profile;               // a path: profile the timed steps (chrome trace) and summarise
};

// The model the bench builds: the preset, then each override (TransformerOptions keys).
TransformerOptions bench_model_options(const BenchOptions& options);

// Flops per token, as llm.c counts them (see the top of this file).
double train_flops_per_token(const TransformerOptions& model, int64_t context);
double generate_flops_per_token(const TransformerOptions& model, double mean_positions);

// The rate of a 2048³ matrix product (fp32, or bf16) at the current thread setting, best of a
// few tries: the attainable CPU peak MFU is measured against.
double measured_matmul_flops(const torch::Device& device, torch::ScalarType dtype);
// The dense peak of a GPU by its name (H100, H200, A100, L4, ...), or nothing when unknown.
std::optional<double> datasheet_peak_flops(const std::string& device_name, const std::string& precision);

// Self time per operator over the events of a chrome trace (LibTorch's profiler), as
// [{"op", "self_s", "calls"}...], largest first: an op's time less the ops it called.
nlohmann::json self_time_by_op(const nlohmann::json& trace_events);

// A field of /proc/self/status in bytes (VmRSS: now, VmHWM: the peak so far); 0 when unreadable.
int64_t proc_status_bytes(const std::string& field);

// --mode load: the result (keys in bench_load.cpp) and its `[bench] ...` lines.
nlohmann::json run_load_bench(const BenchOptions& options);
std::string format_load_bench(const nlohmann::json& result);

// Runs the benchmark. The result holds every figure (see the keys in bench.cpp) for --json.
nlohmann::json run_bench(const BenchOptions& options);
// The result as readable `[bench] ...` lines.
std::string format_bench(const nlohmann::json& result);

}  // namespace nurture
