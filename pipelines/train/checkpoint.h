// Checkpoints that resume a stage exactly and survive crashes: every checkpoint is its own
// directory <stage>/checkpoints/step-00000120/ holding one <name>.pt per module and optimizer,
// rng.pt (the global generators), state.json (step, data position, pipeline extras) and
// manifest.json (sizes and SHA-256 of all of them, written last; see manifest.h).
//
// Writing goes to step-N.tmp/, each file flushed to disk, then a rename: a crash or a second
// signal leaves at worst a .tmp directory, which is ignored. The newest `keep` checkpoints are
// kept. Loading takes the newest checkpoint whose files match its manifest; a damaged newer one
// is reported and skipped.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace nurture {

// Everything besides tensors that a resumed run needs to continue exactly.
struct TrainingState {
  int64_t step = 0;           // optimizer steps done
  int64_t data_position = 0;  // examples / windows consumed (the pipeline's data cursor)
  int64_t tokens = 0;         // tokens processed
  nlohmann::json extra = nlohmann::json::object();  // pipeline-specific (e.g. PPO's β)

  nlohmann::json to_json() const;
  static TrainingState from_json(const nlohmann::json& j, const std::string& source);
};

using NamedModules = std::vector<std::pair<std::string, torch::nn::Module*>>;
using NamedOptimizers = std::vector<std::pair<std::string, torch::optim::Optimizer*>>;

// <stage_dir>/checkpoints
std::filesystem::path checkpoints_dir(const std::filesystem::path& stage_dir);
// The complete-looking checkpoint directories (step-N, no .tmp), newest first.
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& stage_dir);

// Writes the checkpoint of state.step (main process only) and removes all but the newest `keep`.
// Returns its directory.
std::filesystem::path save_checkpoint(const std::filesystem::path& stage_dir, const NamedModules& modules,
                                      const NamedOptimizers& optimizers, const TrainingState& state,
                                      int64_t keep = 2);

// Loads the newest intact checkpoint; false when the stage has none. Damaged newer checkpoints
// are named in a warning from `component`. No intact one, or one that does not fit the models
// (another configuration), is a std::runtime_error naming the directory and how to start over.
bool load_checkpoint(const std::filesystem::path& stage_dir, const NamedModules& modules,
                     const NamedOptimizers& optimizers, TrainingState& state, const std::string& component);

}  // namespace nurture
