// Log-prob recomputation on a rollout's sequences, for the policy (π_old, with its entropy) and
// the frozen reference (π_ref): forward passes like the update's (not the sampler's KV-cache
// log-probs), so the first ratio π/π_old of an update is 1.
//
// Letters: B rows, P prompt positions, N response positions, T = P + N, V vocab, C channels.
#pragma once
#include <torch/torch.h>

#include <cstdint>

#include "modules/model/transformer.h"
#include "pipelines/rl/rollout.h"

namespace nurture::rl {

// Logits of the positions that predict each response token, plus the one after the last:
// tokens: [B, T] -> [B, N + 1, V], divided by the sampling temperature. The first N rows are the
// distributions the response tokens were drawn from.
torch::Tensor response_logits(Transformer& model, const torch::Tensor& tokens, const torch::Tensor& attention_mask,
                              int64_t prompt_length, int64_t response_length, double temperature);

// tokens: [B, T], logits from response_logits -> [B, N]
torch::Tensor response_logprobs(const torch::Tensor& logits, const torch::Tensor& tokens, int64_t prompt_length,
                                int64_t response_length);

// The rollout's rows chosen by `rows` ([b] int64): what one minibatch forward pass reads.
struct RolloutRows {
  torch::Tensor rows, tokens, attention_mask, response_mask;
};
RolloutRows select_rows(const Rollout& r, const torch::Tensor& rows);

// log π(token) of every response token of the rollout under `model`, in chunks of `chunk` rows,
// without gradients; 0 where response_mask is 0. With `entropy`, also the entropy of each
// response position's distribution. -> [B, N]
torch::Tensor rollout_logprobs(Transformer& model, const Rollout& r, int64_t chunk, double temperature,
                               torch::Tensor* entropy = nullptr);

}  // namespace nurture::rl
