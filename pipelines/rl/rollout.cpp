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

Rollout sample_rollout(Transformer& policy, const PromptBatch& batch, const SamplingOptions& sampling,
                       const Tokenizer& tokenizer, uint64_t seed, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const auto start = std::chrono::steady_clock::now();
  Generation gen = generate(policy, batch.ids, sampling, compat::make_generator(seed, device));
  Rollout r;
  r.tokens = gen.tokens;
  r.attention_mask = gen.attention_mask;
  r.response_mask = gen.response_mask.to(torch::kFloat);
  r.prompt_length = gen.prompt_length;
  r.response_length = gen.response.size(1);
  r.stopped = gen.stopped;
  r.examples = batch.examples;
  r.new_tokens = gen.response_mask.sum().item<int64_t>();  // (waits for the device)
  r.generation_s = seconds_since(start);
  r.replies = decode_replies(gen, tokenizer);
  return r;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace nurture::rl
