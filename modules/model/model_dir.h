// A model directory is self-contained, everything needed to run or fine-tune the model:
//   config.json      {"format": "nurture-model", "version": 1, "kind": "lm" | "reward" | "value",
//                     "transformer": {...every TransformerOptions key...}}
//   model.pt         named parameters and buffers, written with torch::serialize::OutputArchive
//                    in the same nested layout as torch::save(module) (one archive per child),
//                    so torch::load(module, "model.pt") also reads it
//   tokenizer.model  the SentencePiece model, written by the tokenizer's own code (not here)
// Files are written to a temporary name in the directory and renamed, so a crash never leaves a
// half-written file under the real name. Every failure is a std::runtime_error naming the path.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>

#include "modules/model/heads.h"
#include "modules/model/transformer.h"

namespace nurture {

inline constexpr const char* kModelFormat = "nurture-model";
inline constexpr int kModelFormatVersion = 1;

// Writes config.json and model.pt into `dir` (created if needed). kind: "lm" | "reward" | "value".
void save_model(const std::filesystem::path& dir, torch::nn::Module& model, const TransformerOptions& options,
                const std::string& kind);

TransformerOptions read_model_config(const std::filesystem::path& dir);
std::string read_model_kind(const std::filesystem::path& dir);

// Loads `file` (a model.pt) into `module`: every parameter and buffer name must be present with
// the same shape and no unexpected names may remain, else std::runtime_error naming the file and
// the parameter. With a `prefix` ("transformer."), only the file's tensors under it are read and
// matched, with the prefix stripped (e.g. a reward model's backbone into a Transformer).
void load_weights(torch::nn::Module& module, const std::filesystem::path& file, const torch::Device& device,
                  const std::string& prefix = "");

// Builds the model from config.json and loads model.pt on `device`.
// load_transformer:  kind "lm" (or the backbone of "reward" / "value").
// load_reward_model: kind "reward"; or "lm" -> backbone loaded, score head freshly initialised.
// load_value_model:  kind "value"; or "lm" / "reward" -> backbone loaded, value head fresh.
Transformer load_transformer(const std::filesystem::path& dir, const torch::Device& device);
RewardModel load_reward_model(const std::filesystem::path& dir, const torch::Device& device);
ValueModel load_value_model(const std::filesystem::path& dir, const torch::Device& device);

}  // namespace nurture
