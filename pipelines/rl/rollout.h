// Rollout sampling: the replies of one iteration, drawn with the KV cache from a per-rank,
// per-iteration seed (so that a resumed run draws the same replies without saved generator
// state), and the record every later step of the iteration fills in (log-probs, values, scores,
// advantages).
//
// Letters: B rollout rows, P prompt positions (left-padded), N response positions, T = P + N.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "modules/generation/sampling.h"
#include "modules/model/transformer.h"
#include "modules/text/chat_template.h"
#include "modules/text/tokenizer.h"
#include "pipelines/rl/prompts.h"

namespace nurture::rl {

// A well-mixed seed for (seed, a, b): each iteration's sampling and each epoch's shuffle draw from
// their own generator.
uint64_t derive_seed(uint64_t seed, uint64_t a, uint64_t b = 0);

// The sampling seed of `iteration` on `rank`: every rank draws its own replies.
uint64_t rollout_seed(uint64_t seed, int rank, int64_t iteration);

// How replies are drawn: the chat template's stop tokens end them; temperature 0 is greedy (and
// switches top-k / top-p off).
struct ReplySampling {
  int64_t max_new_tokens = 64;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;

  SamplingOptions options(const Tokenizer& tokenizer, const ChatTemplate& chat_template) const;
  ReplySampling greedy() const;
};

// Everything one iteration learns from; [B, N] tensors are 0 where response_mask is 0. The
// sampler fills the first block; the other fields are left to the stage's steps.
struct Rollout {
  torch::Tensor tokens;          // [B, T] int64: left-padded prompts, then the replies
  torch::Tensor attention_mask;  // [B, T] int64
  torch::Tensor response_mask;   // [B, N] float32
  int64_t prompt_length = 0;     // P
  int64_t response_length = 0;   // N
  torch::Tensor stopped;         // [B] bool
  std::vector<Reply> replies;    // decoded, without their stop tokens
  std::vector<const PromptExample*> examples;  // the prompt of each row
  int64_t new_tokens = 0;        // Σ response_mask
  double generation_s = 0;       // sampling the replies (KV cache)
  torch::Tensor sample_logprobs;  // [B, N] log-prob of each token when it was drawn (logits / temperature)

  torch::Tensor logprobs;        // [B, N] log π_old(token), with logits / temperature
  torch::Tensor ref_logprobs;    // [B, N] log π_ref(token)
  torch::Tensor values;          // [B, N] V(state before each response token)
  torch::Tensor entropy;         // [B, N] entropy of π_old at each response position
  torch::Tensor kl;              // [B, N] the penalty's per-token KL estimate
  torch::Tensor scores;          // [B] the score of each reply
  torch::Tensor rewards;         // [B, N] per-token rewards (KL penalty, score at the last token)
  torch::Tensor advantages;      // [B, N]
  torch::Tensor returns;         // [B, N] value targets
  double scoring_s = 0;          // log-probs, values and rewards
};

// Samples one reply per row of `batch` from `policy` with a generator seeded by `seed`.
Rollout sample_rollout(Transformer& policy, const PromptBatch& batch, const SamplingOptions& sampling,
                       const Tokenizer& tokenizer, uint64_t seed, const torch::Device& device);
// The same, row i drawn from a generator of its own seeded by row_seeds[i]: its reply then depends
// on that seed alone, not on the rows it was batched with.
Rollout sample_rollout(Transformer& policy, const PromptBatch& batch, const SamplingOptions& sampling,
                       const Tokenizer& tokenizer, const std::vector<uint64_t>& row_seeds,
                       const torch::Device& device);

// Rows `rows[k]` of `parts[k]`, in that order, as one rollout of the sampler's fields (tokens and
// masks padded again: prompts on the left, replies on the right; sample_logprobs kept).
Rollout concat_rollout_rows(const std::vector<const Rollout*>& parts, const std::vector<std::vector<int64_t>>& rows);

double seconds_since(std::chrono::steady_clock::time_point start);

}  // namespace nurture::rl
