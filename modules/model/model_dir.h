// A model directory is self-contained, everything needed to run or fine-tune the model. It is a
// Hugging Face directory (modules/model/hf_format.h: config.json with model_type, safetensors
// weights) whenever the model's shape is a Hugging Face architecture and its kind "lm" or
// "reward", and otherwise nurture's own:
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
#include "modules/model/hf_format.h"
#include "modules/model/transformer.h"

namespace nurture {

inline constexpr const char* kModelFormat = "nurture-model";
inline constexpr int kModelFormatVersion = 1;

// kAuto: Hugging Face's when hf_model_type_of(options) names an architecture and the kind is "lm"
// or "reward" (with a score bias of 0, as nurture trains it: older reward models with a bias keep
// nurture's format), else nurture's.
enum class ModelFormat { kAuto, kNurture, kHuggingFace };

// Writes the model into `dir` (created if needed). kind: "lm" | "reward" | "value". Nurture's
// format: config.json and model.pt; Hugging Face's: see save_hf_model.
// `hf` is used for Hugging Face's format (dtype, sharding, special token ids).
void save_model(const std::filesystem::path& dir, torch::nn::Module& model, const TransformerOptions& options,
                const std::string& kind, ModelFormat format = ModelFormat::kNurture, const HfSaveOptions& hf = {});

// The format of an existing, valid model directory (kNurture or kHuggingFace).
ModelFormat model_format_of(const std::filesystem::path& dir);

TransformerOptions read_model_config(const std::filesystem::path& dir);
std::string read_model_kind(const std::filesystem::path& dir);

// Loads `file` (a model.pt) into `module`: every parameter and buffer name must be present with
// the same shape and no unexpected names may remain, else std::runtime_error naming the file and
// the parameter. With a `prefix` ("transformer."), only the file's tensors under it are read and
// matched, with the prefix stripped (e.g. a reward model's backbone into a Transformer).
void load_weights(torch::nn::Module& module, const std::filesystem::path& file, const torch::Device& device,
                  const std::string& prefix = "");

// Builds the model from config.json and loads its weights (model.pt, or a Hugging Face
// directory's safetensors) on `device`, in `dtype` (without one: the stored weights' dtype). A
// Hugging Face checkpoint is converted tensor by tensor as it is copied in (bf16 weights into an
// fp32 model: no bf16 copy of the model on the way).
// load_transformer:  kind "lm" (or the backbone of "reward" / "value").
// load_reward_model: kind "reward"; or "lm" -> backbone loaded, score head freshly initialised.
// load_value_model:  kind "value"; or "lm" / "reward" -> backbone loaded, value head fresh.
Transformer load_transformer(const std::filesystem::path& dir, const torch::Device& device,
                             c10::optional<torch::ScalarType> dtype = c10::nullopt);
RewardModel load_reward_model(const std::filesystem::path& dir, const torch::Device& device,
                              c10::optional<torch::ScalarType> dtype = c10::nullopt);
ValueModel load_value_model(const std::filesystem::path& dir, const torch::Device& device,
                            c10::optional<torch::ScalarType> dtype = c10::nullopt);

}  // namespace nurture
