// Scalar heads on a Transformer backbone: a reward model (one score per sequence, read at its last
// real token) and a value model (one value per token, for PPO). The backbone is registered as
// "transformer", so its parameters are "transformer.<name>" and an "lm" checkpoint loads into it.
#pragma once

#include <torch/torch.h>

#include "modules/model/transformer.h"

namespace nurture {

// Index of the last real (mask != 0) position of each row; works for left and right padding.
// attention_mask: [B, T] (any dtype) or undefined (= all real, index T-1) -> [B] int64.
// A row with no real token gives 0.
torch::Tensor last_token_index(const torch::Tensor& attention_mask, int64_t batch, int64_t length,
                               const torch::Device& device);

// score(hidden state at the last real token).
class RewardModelImpl : public torch::nn::Cloneable<RewardModelImpl> {
 public:
  explicit RewardModelImpl(TransformerOptions options);
  void reset() override;
  void reset_parameters();  // backbone: GPT-2 init; score: normal(0, 1/sqrt(C+1)), bias 0
  // idx: [B, T] int64, attention_mask: [B, T] or undefined -> scores [B]
  torch::Tensor forward(const torch::Tensor& idx, const torch::Tensor& attention_mask = {});
  // Copies every backbone parameter (names and shapes checked) from a language model.
  void load_backbone(const Transformer& source);

  TransformerOptions options;
  Transformer transformer{nullptr};
  // Linear(C, 1); its bias is frozen at 0 (requires_grad false): Hugging Face's and TRL's score
  // head has none, and a pairwise loss cannot train one.
  torch::nn::Linear score{nullptr};
};
TORCH_MODULE(RewardModel);

// value_head(hidden state) at every position.
class ValueModelImpl : public torch::nn::Cloneable<ValueModelImpl> {
 public:
  explicit ValueModelImpl(TransformerOptions options);
  void reset() override;
  void reset_parameters();  // backbone: GPT-2 init; value_head: normal(0, 1/sqrt(C+1)), bias 0
  // idx: [B, T] int64, attention_mask: [B, T] or undefined -> values [B, T]
  torch::Tensor forward(const torch::Tensor& idx, const torch::Tensor& attention_mask = {});
  void load_backbone(const Transformer& source);

  TransformerOptions options;
  Transformer transformer{nullptr};
  torch::nn::Linear value_head{nullptr};  // Linear(C, 1)
};
TORCH_MODULE(ValueModel);

// Copies parameters of `source` into the same-named parameters of `target` (no grad); every
// name of target must exist in source with the same shape, else std::runtime_error naming it.
void copy_parameters(torch::nn::Module& target, const torch::nn::Module& source);

}  // namespace nurture
