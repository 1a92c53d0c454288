// What every lifecycle stage is. A recipe's stage names its `pipeline:`; the pipeline is a Stage
// implementation, registered (pipelines/stages/stages.h) as a StageEntry with a Schema of its
// settings, so recipes are validated before any stage runs, and with what it produces (an lm, a
// tokenizer, ...), so that later stages can ask for a kind rather than for pipeline names. Its
// run() executes one stage into its own directory and returns the stage's final metrics.
#pragma once
#include <torch/types.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pipelines/recipe/kind.h"
#include "pipelines/recipe/schema.h"

namespace nurture {

// Run-wide settings, resolved once by the runner.
struct RunSettings {
  torch::Device device = torch::kCPU;
  int64_t seed = 0;
  int threads = 1;
  std::string precision = "fp32";   // "fp32" | "bf16" (autocast around every stage) | "fp64"
  bool tf32 = true;                 // CUDA fp32 matrix products in TensorFloat-32
  std::filesystem::path output_dir;
  int64_t bucket_mb = 25;           // gradient all-reduce bucket size (distributed)

  // What matrix products and attention compute in (bf16: autocast; weights stay fp32).
  torch::ScalarType compute_dtype() const {
    return precision == "bf16" ? torch::kBFloat16 : precision == "fp64" ? torch::kDouble : torch::kFloat;
  }
  // What the weights are stored and trained in: float64 for fp64 (numerical checks), else float32.
  torch::ScalarType param_dtype() const { return precision == "fp64" ? torch::kDouble : torch::kFloat; }
};

struct StageContext {
  std::string name;                 // the stage's name in the recipe
  std::string pipeline;             // its pipeline
  std::filesystem::path dir;        // <output_dir>/<name>: everything the stage writes
  Settings settings;                // its validated settings, defaults filled in
  RunSettings run;
  std::map<std::string, std::filesystem::path> stage_dirs;  // earlier stages' directories

  // The directory a stage reference names: an earlier stage's output, or a directory path.
  std::filesystem::path resolve_ref(const std::string& key) const;
  // The same for one value `ref` of the setting `key` (items of a list of stages).
  std::filesystem::path resolve_ref(const std::string& key, const std::string& ref) const;
};

class Stage {
 public:
  virtual ~Stage() = default;
  // Runs the stage to completion, writing into ctx.dir; returns the metrics for summary.json.
  virtual nlohmann::json run(const StageContext& ctx) = 0;
};

struct StageEntry {
  std::string help;                                      // one line for `nurture run --help`
  std::function<std::shared_ptr<const Schema>()> schema;  // its settings
  std::function<std::unique_ptr<Stage>()> create;
  // True when every rank runs the stage, each on its share of the data (training stages). A
  // stage that is not runs on rank 0 alone while the other ranks wait for it.
  bool data_parallel = false;
  // What later stages can read from the stage's directory: `init_from`, eval's `models` and the
  // like accept a stage whose pipeline produces the kind they need (pipelines/recipe/kind.h).
  std::vector<Kind> produces;
};

}  // namespace nurture
