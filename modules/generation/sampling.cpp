// Batched generation with the KV cache (see sampling.h for the conventions callers rely on).
#include "modules/generation/sampling.h"

#include <algorithm>
#include <limits>
#include <string>

namespace nurture {
namespace {

// Puts the model in eval mode for the duration of a generate() call, restoring the flag after.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(Transformer& model) : model_(model), was_training_(model->is_training()) {
    model_->eval();
  }
  ~EvalModeGuard() { model_->train(was_training_); }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  Transformer& model_;
  bool was_training_;
};

void check_sampling_args(double temperature, int64_t top_k, double top_p) {
  TORCH_CHECK(temperature >= 0, "temperature must be >= 0 (0 = greedy), got ", temperature);
  TORCH_CHECK(top_k >= 0, "top_k must be >= 0 (0 = off), got ", top_k);
  TORCH_CHECK(top_p > 0 && top_p <= 1, "top_p must be in (0, 1] (1 = off), got ", top_p);
}

void check_generate_args(const TransformerOptions& model_options,
                         const std::vector<std::vector<int64_t>>& prompts,
                         const SamplingOptions& options) {
  check_sampling_args(options.temperature(), options.top_k(), options.top_p());
  TORCH_CHECK(options.max_new_tokens() >= 0, "max_new_tokens must be >= 0, got ",
              options.max_new_tokens());
  const int64_t vocab = model_options.vocab_size();
  TORCH_CHECK(options.pad_id() >= 0 && options.pad_id() < vocab, "pad_id ", options.pad_id(),
              " is outside the model's vocabulary [0, ", vocab, ")");
  TORCH_CHECK(!prompts.empty(), "generate needs at least one prompt");
  for (size_t i = 0; i < prompts.size(); ++i) {
    TORCH_CHECK(!prompts[i].empty(), "prompt ", i,
                " is empty: generation needs at least one token of context (e.g. BOS)");
    TORCH_CHECK(static_cast<int64_t>(prompts[i].size()) <= model_options.block_size(), "prompt ",
                i, " has ", prompts[i].size(), " tokens, more than the model's block_size ",
                model_options.block_size());
    for (int64_t id : prompts[i]) {
      TORCH_CHECK(id >= 0 && id < vocab, "prompt ", i, " holds token id ", id,
                  " outside the model's vocabulary [0, ", vocab, ")");
    }
  }
}

}  // namespace

// ---- Building blocks -----------------------------------------------------------------------------

// -> [B, P] int64, *mask [B, P] int64
torch::Tensor left_pad(const std::vector<std::vector<int64_t>>& sequences, int64_t pad_id,
                       torch::Tensor* mask) {
  TORCH_CHECK(!sequences.empty(), "left_pad needs at least one sequence");
  size_t longest = 0;
  for (const auto& s : sequences) longest = std::max(longest, s.size());
  const auto b = static_cast<int64_t>(sequences.size());
  const auto p = static_cast<int64_t>(longest);
  auto out = torch::full({b, p}, pad_id, torch::kLong);
  auto m = torch::zeros({b, p}, torch::kLong);
  auto out_a = out.accessor<int64_t, 2>();
  auto m_a = m.accessor<int64_t, 2>();
  for (int64_t i = 0; i < b; ++i) {
    const auto& s = sequences[static_cast<size_t>(i)];
    const int64_t offset = p - static_cast<int64_t>(s.size());
    for (size_t j = 0; j < s.size(); ++j) {
      out_a[i][offset + static_cast<int64_t>(j)] = s[j];
      m_a[i][offset + static_cast<int64_t>(j)] = 1;
    }
  }
  if (mask != nullptr) *mask = m;
  return out;
}

// logits: [B, V] -> [B, V]
torch::Tensor filter_logits(const torch::Tensor& logits, int64_t top_k, double top_p) {
  TORCH_CHECK(logits.dim() == 2, "filter_logits expects logits [B, V], got ", logits.sizes());
  check_sampling_args(1.0, top_k, top_p);
  const double neg_inf = -std::numeric_limits<double>::infinity();
  auto out = logits;
  const int64_t vocab = logits.size(1);
  if (top_k > 0 && top_k < vocab) {
    auto kth = std::get<0>(out.topk(top_k, -1)).narrow(-1, top_k - 1, 1);  // [B, 1]
    out = out.masked_fill(out < kth, neg_inf);
  }
  if (top_p < 1.0) {
    auto sorted = out.sort(-1, /*descending=*/true);
    const auto& sorted_logits = std::get<0>(sorted);  // [B, V]
    const auto& order = std::get<1>(sorted);          // [B, V]
    auto probs = torch::softmax(sorted_logits, -1);
    auto before = probs.cumsum(-1) - probs;  // mass of the more likely tokens; exactly 0 first
    auto remove_sorted = before >= top_p;
    auto remove = remove_sorted.scatter(-1, order, remove_sorted);
    out = out.masked_fill(remove, neg_inf);
  }
  return out;
}

namespace {

// One draw per row of probs [B, V]: from `generator` (or the global one), or row i from rows[i].
torch::Tensor draw_tokens(const torch::Tensor& probs, const c10::optional<at::Generator>& generator,
                          const std::vector<at::Generator>* rows) {
  if (rows == nullptr) return torch::multinomial(probs, 1, /*replacement=*/false, generator).squeeze(-1);
  TORCH_CHECK(static_cast<int64_t>(rows->size()) == probs.size(0), "sample_token: ", rows->size(),
              " row generators for ", probs.size(0), " rows");
  std::vector<torch::Tensor> tokens;
  for (int64_t i = 0; i < probs.size(0); ++i)
    tokens.push_back(torch::multinomial(probs.narrow(0, i, 1), 1, /*replacement=*/false, (*rows)[static_cast<size_t>(i)]));
  return torch::cat(tokens).squeeze(-1);
}

// logits: [B, V] -> SampledToken
SampledToken sample_with(const torch::Tensor& logits, double temperature, int64_t top_k, double top_p,
                         const c10::optional<at::Generator>& generator, const std::vector<at::Generator>* rows,
                         int64_t vocab_limit) {
  TORCH_CHECK(logits.dim() == 2, "sample_token expects logits [B, V], got ", logits.sizes());
  check_sampling_args(temperature, top_k, top_p);
  auto x = logits.to(logits.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat);
  // What may be drawn: the ids a tokenizer has.
  auto drawable = [&](const torch::Tensor& t) {
    if (vocab_limit <= 0 || vocab_limit >= t.size(1)) return t;
    auto limited = t.clone();
    limited.narrow(1, vocab_limit, t.size(1) - vocab_limit).fill_(-std::numeric_limits<double>::infinity());
    return limited;
  };
  if (temperature == 0) {
    auto token = drawable(x).argmax(-1);  // [B]
    auto logprob = torch::log_softmax(x, -1).gather(-1, token.unsqueeze(-1)).squeeze(-1);
    return {token, logprob};
  }
  auto scaled = x / temperature;
  auto probs = torch::softmax(filter_logits(drawable(scaled), top_k, top_p), -1);
  auto token = draw_tokens(probs, generator, rows);  // [B]
  auto logprob = torch::log_softmax(scaled, -1).gather(-1, token.unsqueeze(-1)).squeeze(-1);
  return {token, logprob};
}

}  // namespace

SampledToken sample_token(const torch::Tensor& logits, double temperature, int64_t top_k,
                          double top_p, c10::optional<at::Generator> generator, int64_t vocab_limit) {
  return sample_with(logits, temperature, top_k, top_p, generator, nullptr, vocab_limit);
}

SampledToken sample_token(const torch::Tensor& logits, double temperature, int64_t top_k, double top_p,
                          const std::vector<at::Generator>& row_generators, int64_t vocab_limit) {
  return sample_with(logits, temperature, top_k, top_p, c10::nullopt, &row_generators, vocab_limit);
}

// sampled: [B], finished: [B] bool, stop_ids: [S] -> StopUpdate
StopUpdate apply_stop(const torch::Tensor& sampled, const torch::Tensor& finished,
                      const torch::Tensor& stop_ids, int64_t pad_id) {
  TORCH_CHECK(sampled.dim() == 1 && finished.sizes() == sampled.sizes(),
              "apply_stop expects sampled [B] and finished [B], got ", sampled.sizes(), " and ",
              finished.sizes());
  auto valid = finished.logical_not();
  auto token = sampled.masked_fill(finished, pad_id);
  auto is_stop = stop_ids.numel() > 0
                     ? (sampled.unsqueeze(1) == stop_ids.to(sampled.device()).unsqueeze(0)).any(1)
                     : torch::zeros_like(finished);
  return {token, valid, finished.logical_or(valid.logical_and(is_stop))};
}

// ---- generate ------------------------------------------------------------------------------------

namespace {

Generation generate_with(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                         const SamplingOptions& options, const c10::optional<at::Generator>& generator,
                         const std::vector<at::Generator>* row_generators) {
  const TransformerOptions& model_options = model->options;
  check_generate_args(model_options, prompts, options);
  torch::NoGradGuard no_grad;
  EvalModeGuard eval_mode(model);
  const auto device = model->wte->weight.device();
  const auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(device);

  // The whole sequence lives in preallocated buffers: [prompt | response], masks alike.
  torch::Tensor prompt_mask;
  auto prompt = left_pad(prompts, options.pad_id(), &prompt_mask);  // [B, P]
  const int64_t batch = prompt.size(0);
  const int64_t prompt_len = prompt.size(1);
  const int64_t max_new =
      std::min(options.max_new_tokens(), model_options.block_size() - prompt_len);
  auto tokens = torch::full({batch, prompt_len + max_new}, options.pad_id(), long_opts);
  auto mask = torch::zeros({batch, prompt_len + max_new}, long_opts);
  tokens.narrow(1, 0, prompt_len).copy_(prompt);
  mask.narrow(1, 0, prompt_len).copy_(prompt_mask);
  auto stop_ids = torch::tensor(options.stop_ids(), torch::kLong).to(device);
  auto finished = torch::zeros({batch}, long_opts.dtype(torch::kBool));

  KVCache cache;
  if (options.use_cache() && max_new > 0) cache = model->make_cache(batch, prompt_len + max_new);

  // Logits for the position after the first `length` tokens. With the cache: the prompt once
  // (prefill), then only the newest token. -> [B, V]
  auto next_logits = [&](int64_t length) {
    torch::Tensor hidden;  // [B, T, C]
    if (options.use_cache()) {
      auto input = cache.length() == 0 ? tokens.narrow(1, 0, length)
                                       : tokens.narrow(1, cache.length(), length - cache.length());
      hidden = model->hidden_states(input, mask.narrow(1, 0, length), &cache);
    } else {
      hidden = model->hidden_states(tokens.narrow(1, 0, length), mask.narrow(1, 0, length));
    }
    return model->lm_head(hidden.narrow(1, hidden.size(1) - 1, 1)).squeeze(1);
  };

  std::vector<torch::Tensor> logprobs;  // one [B] per step
  int64_t steps = 0;
  while (steps < max_new) {
    auto sampled = sample_with(next_logits(prompt_len + steps), options.temperature(), options.top_k(),
                               options.top_p(), generator, row_generators, options.vocab_limit());
    auto update = apply_stop(sampled.token, finished, stop_ids, options.pad_id());
    tokens.select(1, prompt_len + steps).copy_(update.token);
    mask.select(1, prompt_len + steps).copy_(update.valid);
    logprobs.push_back(sampled.logprob.masked_fill(update.valid.logical_not(), 0));
    finished = update.finished;
    ++steps;
    // The only per-step host read, every kStopCheckInterval steps.
    if (steps % kStopCheckInterval == 0 && steps < max_new && finished.all().item<bool>()) break;
  }

  // Drop the columns after every row's end (at most kStopCheckInterval − 1 of them).
  int64_t n = 0;
  if (steps > 0) n = mask.narrow(1, prompt_len, steps).sum(1).max().item<int64_t>();

  Generation out;
  out.prompt_length = prompt_len;
  out.tokens = tokens.narrow(1, 0, prompt_len + n).contiguous();
  out.attention_mask = mask.narrow(1, 0, prompt_len + n).contiguous();
  out.response = tokens.narrow(1, prompt_len, n).contiguous();
  out.response_mask = mask.narrow(1, prompt_len, n).contiguous();
  if (steps > 0) {
    out.logprobs = torch::stack(logprobs, 1).narrow(1, 0, n).contiguous();
  } else {
    const auto dtype = model->wte->weight.scalar_type() == torch::kDouble ? torch::kDouble
                                                                            : torch::kFloat;
    out.logprobs = torch::zeros({batch, 0}, torch::TensorOptions().dtype(dtype).device(device));
  }
  out.stopped = finished;
  return out;
}

}  // namespace

Generation generate(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                    const SamplingOptions& options, c10::optional<at::Generator> generator) {
  return generate_with(model, prompts, options, generator, nullptr);
}

Generation generate(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                    const SamplingOptions& options, const std::vector<at::Generator>& row_generators) {
  TORCH_CHECK(row_generators.size() == prompts.size(), "generate: ", row_generators.size(),
              " row generators for ", prompts.size(), " prompts");
  return generate_with(model, prompts, options, c10::nullopt, &row_generators);
}

// ---- replies ----------------------------------------------------------------------------------------

std::vector<std::vector<int64_t>> reply_ids(const Generation& generation) {
  const auto tokens = generation.response.to(torch::kCPU, torch::kLong).contiguous();
  const auto lengths = generation.response_mask.sum(1).to(torch::kCPU, torch::kLong);
  const auto stopped = generation.stopped.to(torch::kCPU);
  std::vector<std::vector<int64_t>> out;
  for (int64_t i = 0; i < tokens.size(0); ++i) {
    const int64_t length = lengths[i].item<int64_t>() - (stopped[i].item<bool>() ? 1 : 0);
    const int64_t* row = tokens[i].data_ptr<int64_t>();
    out.emplace_back(row, row + std::max<int64_t>(length, 0));
  }
  return out;
}

std::vector<Reply> decode_replies(const Generation& generation, const Tokenizer& tokenizer) {
  const auto stopped = generation.stopped.to(torch::kCPU);
  std::vector<Reply> out;
  int64_t i = 0;
  for (const auto& ids : reply_ids(generation)) {
    out.push_back({tokenizer.decode(ids), stopped[i].item<bool>(), static_cast<int64_t>(ids.size())});
    ++i;
  }
  return out;
}

}  // namespace nurture
