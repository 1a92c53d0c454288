// Batched autoregressive generation with the KV cache: left-pad the prompts, prefill them in one
// call, then decode one token per step for every row (greedy, temperature, top-k, top-p), each
// row stopping on its own at a stop token. Used by `nurture generate`, evaluation and the PPO
// rollout, which is why the log-probs of the sampled tokens come back with them.
//
// Letters: B batch (prompts), P longest prompt, N generated positions, V vocab.
//
// Conventions the callers rely on:
//  * Log-probs are those of the distribution the token was drawn from BEFORE top-k/top-p
//    filtering: log_softmax(logits / temperature) (temperature 0, greedy, uses the raw logits).
//    A PPO pipeline reproduces them by dividing its policy logits by the same temperature before
//    token_logprobs (as TRL and OpenRLHF do); with temperature 1 they are the raw model's.
//  * A row stops at the first generated token in stop_ids; that token is part of the response
//    (response_mask 1, stopped = true). After it the row holds pad_id with masks 0 and log-prob 0.
//    Rows that reach max_new_tokens have stopped = false.
//  * N is the number of decoding steps the batch needed: max_new_tokens (clamped so P + N fits in
//    block_size), or fewer when every row stopped earlier.
//  * Host synchronisation: none per token except the "has every row stopped?" check, made every
//    kStopCheckInterval steps, and one read at the end to trim the all-padding columns. (Sampling
//    uses torch::multinomial, which in LibTorch 2.x validates the probabilities asynchronously;
//    older versions read that check back on every call.)
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "modules/model/transformer.h"
#include "modules/text/tokenizer.h"

namespace nurture {

struct SamplingOptions {
  TORCH_ARG(int64_t, max_new_tokens) = 64;
  TORCH_ARG(double, temperature) = 1.0;  // 0 = greedy (argmax)
  TORCH_ARG(int64_t, top_k) = 0;         // 0 = off; keep the k largest logits (ties at the k-th kept)
  TORCH_ARG(double, top_p) = 1.0;        // 1 = off; keep the smallest set with probability ≥ top_p
  TORCH_ARG(std::vector<int64_t>, stop_ids) = {};  // e.g. <|im_end|>, <|endoftext|>
  TORCH_ARG(int64_t, pad_id) = 0;
  TORCH_ARG(bool, use_cache) = true;  // false: recompute the whole sequence every step (tests)
  // > 0: ids from this one on are never drawn (a checkpoint's embedding rows beyond its
  // tokenizer, padded to a round size, have no token to decode to). Their probability still
  // counts in the reported log-probs, as in the training forward.
  TORCH_ARG(int64_t, vocab_limit) = 0;
};

// The "all rows stopped?" check reads one value back from the device this often (in steps).
inline constexpr int64_t kStopCheckInterval = 4;

struct Generation {
  torch::Tensor tokens;          // [B, P + N] int64: left-padded prompts, then the responses
  torch::Tensor attention_mask;  // [B, P + N] int64: 1 on prompt and response tokens, 0 on padding
  torch::Tensor response;        // [B, N] int64: generated tokens, pad_id after a stop
  torch::Tensor response_mask;   // [B, N] int64: 1 on generated tokens up to and including the stop
  torch::Tensor logprobs;        // [B, N] float32 (float64 for a float64 model), 0 where masked
  torch::Tensor stopped;         // [B] bool: produced a stop token
  int64_t prompt_length = 0;     // P
};

// Generates a continuation of every prompt. Runs under NoGradGuard with the model in eval mode
// (its training flag is restored afterwards, also on error). `generator` makes sampling
// reproducible (compat::make_generator(seed, device)); without one the global generator is used.
// Throws if a prompt is empty or longer than block_size, or an option is out of range.
Generation generate(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                    const SamplingOptions& options,
                    c10::optional<at::Generator> generator = c10::nullopt);
// The same, the reply to prompts[i] drawn from row_generators[i]: a reply then depends on its own
// seed only, not on the prompts it was batched with (so that ranks sampling their share of a batch
// draw what one rank sampling all of it would, up to rounding).
Generation generate(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                    const SamplingOptions& options, const std::vector<at::Generator>& row_generators);

// ---- Replies ---------------------------------------------------------------------------------------

// The generated ids of each row without its stop token: the first Σ response_mask − stopped
// tokens of the row. What `nurture chat` shows and what rewards and evaluation read.
std::vector<std::vector<int64_t>> reply_ids(const Generation& generation);

// A decoded reply, and whether it ended its turn (its stop token came within max_new_tokens).
struct Reply {
  std::string text;
  bool stopped = false;
  int64_t tokens = 0;  // its generated ids without the stop token
};

// reply_ids of every row, decoded.
std::vector<Reply> decode_replies(const Generation& generation, const Tokenizer& tokenizer);

// ---- Building blocks (exposed for tests and other decoders) --------------------------------------

// Left-pads `sequences` to the longest with pad_id. Writes the int64 mask (1 real, 0 pad) to
// *mask when given. -> [B, P] int64 on the CPU
torch::Tensor left_pad(const std::vector<std::vector<int64_t>>& sequences, int64_t pad_id,
                       torch::Tensor* mask = nullptr);

// Top-k, then top-p (nucleus) filtering: removed entries become −inf, kept ones are unchanged.
// top-k keeps every logit ≥ the k-th largest; top-p keeps, in order of decreasing probability
// under softmax of the top-k-filtered logits, each token whose predecessors' total is < top_p
// (so the most likely token is always kept). top_k 0 / top_p 1 switch them off.
// logits: [B, V] -> [B, V]
torch::Tensor filter_logits(const torch::Tensor& logits, int64_t top_k, double top_p);

struct SampledToken {
  torch::Tensor token;    // [B] int64
  torch::Tensor logprob;  // [B] log_softmax(logits / temperature) at token (see top of file)
};

// Draws one token per row: argmax when temperature is 0, else from softmax(filter_logits(
// logits / temperature)), among ids below vocab_limit when it is > 0. Computed in float32
// (float64 logits stay float64).
// logits: [B, V] -> SampledToken
SampledToken sample_token(const torch::Tensor& logits, double temperature, int64_t top_k,
                          double top_p, c10::optional<at::Generator> generator = c10::nullopt,
                          int64_t vocab_limit = 0);
// The same, row i drawing from row_generators[i] (one per row).
SampledToken sample_token(const torch::Tensor& logits, double temperature, int64_t top_k, double top_p,
                          const std::vector<at::Generator>& row_generators, int64_t vocab_limit = 0);

struct StopUpdate {
  torch::Tensor token;     // [B] int64: the sampled token, pad_id in rows already finished
  torch::Tensor valid;     // [B] bool: the token belongs to the response (row not finished before)
  torch::Tensor finished;  // [B] bool: finished after this token (a stop id was just produced)
};

// The per-step stop bookkeeping of generate().
// sampled: [B] int64, finished: [B] bool (before this step), stop_ids: [S] int64 -> StopUpdate
StopUpdate apply_stop(const torch::Tensor& sampled, const torch::Tensor& finished,
                      const torch::Tensor& stop_ids, int64_t pad_id);

}  // namespace nurture
