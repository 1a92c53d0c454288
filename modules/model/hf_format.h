// Hugging Face model directories, read and written as nurture models: config.json <-> options for
// each architecture nurture runs, the weight-name table between the two layouts, and the weights
// in safetensors (model.safetensors, or shards listed by model.safetensors.index.json).
//
// One Transformer runs them all; an architecture is a small converter (CTranslate2's loaders,
// torchtune's convert_weights), selected by config.json's model_type:
//   gpt2     LayerNorm, GELU (tanh), learned positions, biases; Conv1D weights stored transposed
//   llama    RMSNorm, SwiGLU, RoPE (default, linear or Llama 3.1's llama3 scaling), grouped-query
//   mistral  llama's shape; a sliding window shorter than the context is refused (nurture attends
//            to the whole context, so it would compute something else)
//   qwen2    llama's shape with q/k/v biases (qkv_bias)
//   qwen3    llama's shape with q/k RMSNorm (qk_norm) and any head_dim
// Both spellings of the configuration are read: transformers 4.x (rope_theta, rope_scaling,
// torch_dtype) and 5.x (rope_parameters, dtype). `*ForCausalLM` is kind "lm";
// `*ForSequenceClassification` with one label (score.weight, as TRL's RewardTrainer writes it)
// is kind "reward" (nurture's score bias, which such a head lacks, is 0).
//
// Weights are copied one tensor at a time from the memory-mapped files into the module, whose
// dtype they take (bf16 and f16 checkpoints load into an fp32 model as fp32): loading costs the
// model's own memory plus the tensor in flight.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "modules/model/transformer.h"

namespace nurture {

// The model types read and written.
const std::vector<std::string>& hf_model_types();

// config.json exists and names a model_type (nurture's own config.json has "format" instead).
bool is_hf_model_dir(const std::filesystem::path& dir);

struct HfModelConfig {
  std::string model_type;  // "llama"
  std::string kind;        // "lm" | "reward"
  TransformerOptions options;
  torch::ScalarType dtype = torch::kFloat32;  // of the stored weights, as config.json says
  int64_t bos_token_id = -1, eos_token_id = -1, pad_token_id = -1;  // -1 = not given
};

// Reads dir/config.json. Anything nurture cannot compute exactly as transformers does (another
// model_type, activation, RoPE type, a sliding window, several labels) is a std::runtime_error
// naming the file and the key: "x/config.json: rope_parameters.rope_type: \"yarn\" is not
// supported (supported: default, linear, llama3)".
HfModelConfig read_hf_config(const std::filesystem::path& dir);

// The architecture whose shape `options` is, or "" with the reason in *why ("GPT-2's layout with
// rotary positions is no Hugging Face architecture").
std::string hf_model_type_of(const TransformerOptions& options, std::string* why = nullptr);

// One tensor of the Hugging Face layout and where it lives in nurture's: rows [begin, begin +
// rows) of nurture's parameter (all rows when rows is -1), transposed for GPT-2's Conv1D.
struct HfWeightSlot {
  std::string nurture;  // "h.0.attn.c_attn.weight", or "transformer.h.0..." for a reward model
  std::string hf;       // "model.layers.0.self_attn.q_proj.weight"
  int64_t begin = 0, rows = -1;
  bool transpose = false;
};

// The whole table for a model of this type, shape and kind ("lm": names of a Transformer;
// "reward": names of a RewardModel, score.weight included).
std::vector<HfWeightSlot> hf_weight_slots(const std::string& model_type, const TransformerOptions& options,
                                          const std::string& kind);

// Loads the directory's weights into `module` in place. `target_kind` is what the module is:
// "lm" (a Transformer) or "reward" (a RewardModel); a Transformer can also take the backbone of
// a reward checkpoint (its score.weight is then unused), and a RewardModel the backbone of an lm
// checkpoint (`backbone_only`: its score stays as it is). Every tensor is checked (present, shape,
// no unexpected name) before any is copied, so a bad directory leaves the module unchanged.
void load_hf_weights(torch::nn::Module& module, const std::filesystem::path& dir, const HfModelConfig& config,
                     const std::string& target_kind, bool backbone_only = false);

struct HfSaveOptions {
  c10::optional<torch::ScalarType> dtype;   // of the weights written; without one the module's
  int64_t shard_bytes = int64_t{5} << 30;     // above this, model-0000i-of-0000N.safetensors + index
  int64_t bos_token_id = -1, eos_token_id = -1, pad_token_id = -1;
};

// Writes config.json, generation_config.json and the weights (kind "lm": a Transformer; "reward":
// a RewardModel whose score bias is 0) so that transformers' from_pretrained loads them. Weight
// files of an earlier save that the new one does not use are removed; config.json comes last.
// Throws std::invalid_argument when hf_model_type_of(options) is "" (naming the reason).
void save_hf_model(const std::filesystem::path& dir, torch::nn::Module& module, const TransformerOptions& options,
                   const std::string& kind, const HfSaveOptions& save = {});

}  // namespace nurture
