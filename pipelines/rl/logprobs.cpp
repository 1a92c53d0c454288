// Log-prob recomputation for policy and reference (see logprobs.h).
#include "pipelines/rl/logprobs.h"

#include <algorithm>
#include <vector>

#include "modules/objectives/losses.h"

namespace nurture::rl {

torch::Tensor response_logits(Transformer& model, const torch::Tensor& tokens, const torch::Tensor& attention_mask,
                              int64_t prompt_length, int64_t response_length, double temperature) {
  auto hidden = model->hidden_states(tokens, attention_mask);  // [B, T, C]
  // contiguous(): LibTorch 2.x's matmul multiplies a strided slice one way when the weight
  // requires grad (the policy) and another when not (the frozen reference), which rounds
  // differently; a contiguous slice takes one path for both, so π = π_ref bit for bit.
  auto response = hidden.narrow(1, prompt_length - 1, response_length + 1).contiguous();  // [B, N+1, C]
  auto logits = model->lm_head(response);                                                  // [B, N+1, V]
  return temperature == 1.0 ? logits : logits / temperature;
}

torch::Tensor response_logprobs(const torch::Tensor& logits, const torch::Tensor& tokens, int64_t prompt_length,
                                int64_t response_length) {
  return token_logprobs(logits, tokens.narrow(1, prompt_length - 1, response_length + 1));
}

RolloutRows select_rows(const Rollout& r, const torch::Tensor& rows) {
  return {rows, r.tokens.index_select(0, rows), r.attention_mask.index_select(0, rows),
          r.response_mask.index_select(0, rows)};
}

torch::Tensor rollout_logprobs(Transformer& model, const Rollout& r, int64_t chunk, double temperature,
                               torch::Tensor* entropy) {
  torch::NoGradGuard no_grad;
  const int64_t B = r.tokens.size(0), P = r.prompt_length, N = r.response_length;
  std::vector<torch::Tensor> logprobs, entropies;
  for (int64_t start = 0; start < B; start += chunk) {
    const int64_t b = std::min(chunk, B - start);
    auto tokens = r.tokens.narrow(0, start, b);
    auto logits = response_logits(model, tokens, r.attention_mask.narrow(0, start, b), P, N, temperature);
    logprobs.push_back(response_logprobs(logits, tokens, P, N));
    if (entropy) entropies.push_back(entropy_from_logits(logits.narrow(1, 0, N)));
  }
  if (entropy) *entropy = torch::cat(entropies) * r.response_mask;
  return torch::cat(logprobs) * r.response_mask;
}

}  // namespace nurture::rl
