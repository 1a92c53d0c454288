// Rollout sampling (see rollout.h).
#include "pipelines/rl/rollout.h"

#include <algorithm>

#include "modules/core/compat.h"

namespace nurture::rl {

uint64_t derive_seed(uint64_t seed, uint64_t a, uint64_t b) {
  uint64_t x = seed ^ (a * 0x9E3779B97F4A7C15ULL) ^ (b * 0xC2B2AE3D27D4EB4FULL);
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

uint64_t rollout_seed(uint64_t seed, int rank, int64_t iteration) {
  const uint64_t rank_seed = seed ^ (static_cast<uint64_t>(rank) * 0xD1B54A32D192ED03ULL);
  return derive_seed(rank_seed, static_cast<uint64_t>(iteration));
}

SamplingOptions ReplySampling::options(const Tokenizer& tokenizer, const ChatTemplate& chat_template) const {
  return SamplingOptions()
      .max_new_tokens(max_new_tokens)
      .temperature(temperature)
      .top_k(temperature > 0 ? top_k : 0)
      .top_p(temperature > 0 ? top_p : 1.0)
      .stop_ids(chat_template.stop_ids(tokenizer))
      .pad_id(std::max<int64_t>(tokenizer.pad_id(), 0))
      .vocab_limit(tokenizer.vocab_size());
}

ReplySampling ReplySampling::greedy() const {
  ReplySampling g = *this;
  g.temperature = 0.0;
  return g;
}

namespace {

Rollout rollout_of(const Generation& gen, const PromptBatch& batch, const Tokenizer& tokenizer,
                   std::chrono::steady_clock::time_point start) {
  Rollout r;
  r.tokens = gen.tokens;
  r.attention_mask = gen.attention_mask;
  r.response_mask = gen.response_mask.to(torch::kFloat);
  r.prompt_length = gen.prompt_length;
  r.response_length = gen.response.size(1);
  r.stopped = gen.stopped;
  r.examples = batch.examples;
  r.sample_logprobs = gen.logprobs;
  r.new_tokens = gen.response_mask.sum().item<int64_t>();  // (waits for the device)
  r.generation_s = seconds_since(start);
  r.replies = decode_replies(gen, tokenizer);
  return r;
}

}  // namespace

Rollout sample_rollout(Transformer& policy, const PromptBatch& batch, const SamplingOptions& sampling,
                       const Tokenizer& tokenizer, uint64_t seed, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const auto start = std::chrono::steady_clock::now();
  return rollout_of(generate(policy, batch.ids, sampling, compat::make_generator(seed, device)), batch, tokenizer,
                    start);
}

Rollout sample_rollout(Transformer& policy, const PromptBatch& batch, const SamplingOptions& sampling,
                       const Tokenizer& tokenizer, const std::vector<uint64_t>& row_seeds,
                       const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const auto start = std::chrono::steady_clock::now();
  std::vector<at::Generator> generators;
  for (uint64_t seed : row_seeds) generators.push_back(compat::make_generator(seed, device));
  return rollout_of(generate(policy, batch.ids, sampling, generators), batch, tokenizer, start);
}

Rollout concat_rollout_rows(const std::vector<const Rollout*>& parts, const std::vector<std::vector<int64_t>>& rows) {
  TORCH_CHECK(parts.size() == rows.size() && !parts.empty(), "concat_rollout_rows: one row list per part");
  int64_t P = 0, N = 0, B = 0;
  for (size_t k = 0; k < parts.size(); ++k) {
    P = std::max(P, parts[k]->prompt_length);
    N = std::max(N, parts[k]->response_length);
    B += static_cast<int64_t>(rows[k].size());
  }
  const Rollout& first = *parts.front();
  Rollout r;
  r.prompt_length = P;
  r.response_length = N;
  r.tokens = torch::zeros({B, P + N}, first.tokens.options());  // pad id 0, masked out
  r.attention_mask = torch::zeros({B, P + N}, first.attention_mask.options());
  r.response_mask = torch::zeros({B, N}, first.response_mask.options());
  r.sample_logprobs = torch::zeros({B, N}, first.sample_logprobs.options());
  r.stopped = torch::zeros({B}, first.stopped.options());
  int64_t out = 0;
  for (size_t k = 0; k < parts.size(); ++k) {
    const Rollout& part = *parts[k];
    const int64_t p = part.prompt_length, n = part.response_length;
    for (int64_t row : rows[k]) {
      // The prompt keeps its right end at column P; the reply starts at column P.
      r.tokens[out].narrow(0, P - p, p + n).copy_(part.tokens[row]);
      r.attention_mask[out].narrow(0, P - p, p + n).copy_(part.attention_mask[row]);
      r.response_mask[out].narrow(0, 0, n).copy_(part.response_mask[row]);
      r.sample_logprobs[out].narrow(0, 0, n).copy_(part.sample_logprobs[row]);
      r.stopped[out].copy_(part.stopped[row]);
      r.replies.push_back(part.replies.at(static_cast<size_t>(row)));
      r.examples.push_back(part.examples.at(static_cast<size_t>(row)));
      ++out;
    }
  }
  r.new_tokens = static_cast<int64_t>(r.response_mask.sum().item<double>());
  return r;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace nurture::rl
