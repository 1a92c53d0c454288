// Tests for modules/generation/sampling.h: the filters on hand-made distributions, the stop bookkeeping, and
// generate() on tiny random Transformers — cache and no-cache decoding agree, seeds reproduce,
// stop tokens end each row, and the returned log-probs match a full forward pass.
#include "modules/generation/sampling.h"

#include <gmock/gmock.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "modules/core/compat.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using Sampling = testing::Seeded;

constexpr double kInf = std::numeric_limits<double>::infinity();

using testing::f64;

// A tiny float64 model whose weights (but the norms') are scaled up so its next-token distributions are peaked and
// vary with the context (GPT-2 init makes every logit nearly 0).
Transformer tiny_model(bool llama_style, double dropout = 0.0) {
  auto options = TransformerOptions()
                     .vocab_size(32)
                     .block_size(32)
                     .n_layer(2)
                     .n_head(2)
                     .n_embd(16)
                     .tie_embeddings(false)
                     .dropout(dropout);
  if (llama_style) options.position(PositionKind::kRope).norm(NormKind::kRMSNorm).mlp(MlpKind::kSwiGLU).bias(false).n_kv_head(1);
  Transformer model(options);
  model->to(torch::kDouble);
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    if (p.key().find("ln_") == std::string::npos) p.value().normal_(0.0, 0.5);  // norms stay 1, 0
  }
  return model;
}

// Prompts of different lengths, so the batch is left-padded.
std::vector<std::vector<int64_t>> prompts() {
  return {{5, 17, 3, 30, 8}, {2, 9}, {11, 4, 4, 25, 1, 19, 7}};
}

// ---- Building blocks -----------------------------------------------------------------------------

TEST_F(Sampling, LeftPad) {
  torch::Tensor mask;
  auto padded = left_pad({{1, 2, 3}, {4}}, 9, &mask);
  EXPECT_TRUE(torch::equal(padded, torch::tensor({1, 2, 3, 9, 9, 4}, torch::kLong).view({2, 3})));
  EXPECT_TRUE(torch::equal(mask, torch::tensor({1, 1, 1, 0, 0, 1}, torch::kLong).view({2, 3})));
}

// Which entries survived filtering (the rest must be exactly −inf, the kept exactly unchanged).
std::vector<int64_t> kept(const torch::Tensor& filtered, const torch::Tensor& logits) {
  std::vector<int64_t> out;
  for (int64_t v = 0; v < filtered.size(1); ++v) {
    const double f = filtered[0][v].item<double>();
    if (f == -kInf && logits[0][v].item<double>() != -kInf) continue;
    EXPECT_EQ(f, logits[0][v].item<double>()) << "kept entry " << v << " changed";
    out.push_back(v);
  }
  return out;
}

TEST_F(Sampling, TopPKeepsSmallestSetReachingP) {
  // Probabilities 0.1, 0.4, 0.2, 0.3: in decreasing order ids 1, 3, 2, 0 with 0, 0.4, 0.7, 0.9
  // of mass before each.
  auto logits = torch::tensor({0.1, 0.4, 0.2, 0.3}, f64()).log().view({1, 4});
  using Ids = std::vector<int64_t>;
  EXPECT_EQ(kept(filter_logits(logits, 0, 0.35), logits), (Ids{1}));
  EXPECT_EQ(kept(filter_logits(logits, 0, 0.5), logits), (Ids{1, 3}));
  EXPECT_EQ(kept(filter_logits(logits, 0, 0.75), logits), (Ids{1, 2, 3}));
  EXPECT_EQ(kept(filter_logits(logits, 0, 0.95), logits), (Ids{0, 1, 2, 3}));
  EXPECT_EQ(kept(filter_logits(logits, 0, 1.0), logits), (Ids{0, 1, 2, 3}));
  // Rows are filtered independently.
  auto two = torch::cat({logits, logits.flip({1})});
  auto f = filter_logits(two, 0, 0.5);
  EXPECT_EQ(kept(f.slice(0, 1, 2), two.slice(0, 1, 2)), (Ids{0, 2}));
}

TEST_F(Sampling, TopKKeepsKLargestWithTies) {
  auto logits = torch::tensor({3.0, 1.0, 2.0, 0.0, 2.0}, f64()).view({1, 5});
  using Ids = std::vector<int64_t>;
  EXPECT_EQ(kept(filter_logits(logits, 1, 1.0), logits), (Ids{0}));
  EXPECT_EQ(kept(filter_logits(logits, 2, 1.0), logits), (Ids{0, 2, 4}));  // tie at the 2nd
  EXPECT_EQ(kept(filter_logits(logits, 4, 1.0), logits), (Ids{0, 1, 2, 4}));
  EXPECT_EQ(kept(filter_logits(logits, 0, 1.0), logits), (Ids{0, 1, 2, 3, 4}));
  EXPECT_EQ(kept(filter_logits(logits, 9, 1.0), logits), (Ids{0, 1, 2, 3, 4}));
}

TEST_F(Sampling, TopPAppliesToTheTopKRenormalisedDistribution) {
  // After top-2: ids 1 and 3 with probabilities 4/7 and 3/7.
  auto logits = torch::tensor({0.1, 0.4, 0.2, 0.3}, f64()).log().view({1, 4});
  using Ids = std::vector<int64_t>;
  EXPECT_EQ(kept(filter_logits(logits, 2, 0.55), logits), (Ids{1}));
  EXPECT_EQ(kept(filter_logits(logits, 2, 0.6), logits), (Ids{1, 3}));
}

TEST_F(Sampling, FilterRejectsBadArguments) {
  auto logits = torch::zeros({1, 4});
  EXPECT_THROW(filter_logits(logits, -1, 1.0), c10::Error);
  EXPECT_THROW(filter_logits(logits, 0, 0.0), c10::Error);
  EXPECT_THROW(filter_logits(logits, 0, 1.5), c10::Error);
  EXPECT_THROW(filter_logits(torch::zeros({4}), 0, 1.0), c10::Error);
}

TEST_F(Sampling, SampleTokenGreedyAndLogprobConvention) {
  auto logits = torch::tensor({0.5, 2.0, -1.0, 1.0, 3.0, 0.0}, f64()).view({2, 3});
  auto greedy = sample_token(logits, 0.0, 0, 1.0);
  EXPECT_TRUE(torch::equal(greedy.token, torch::tensor({1, 1}, torch::kLong)));
  auto raw = torch::log_softmax(logits, -1);
  EXPECT_NEAR(greedy.logprob[0].item<double>(), raw[0][1].item<double>(), 1e-12);
  EXPECT_NEAR(greedy.logprob[1].item<double>(), raw[1][1].item<double>(), 1e-12);

  // top_k = 1 leaves only the argmax; its log-prob is under the temperature-scaled distribution.
  auto gen = compat::make_generator(3, torch::kCPU);
  auto top1 = sample_token(logits, 0.7, 1, 1.0, gen);
  EXPECT_TRUE(torch::equal(top1.token, greedy.token));
  auto scaled = torch::log_softmax(logits / 0.7, -1);
  EXPECT_NEAR(top1.logprob[0].item<double>(), scaled[0][1].item<double>(), 1e-12);
  EXPECT_NEAR(top1.logprob[1].item<double>(), scaled[1][1].item<double>(), 1e-12);
}

// Rows of the embedding beyond the tokenizer (vocab_limit) are never drawn, greedy or sampled,
// while the log-prob stays the full distribution's (as the training forward computes it).
TEST_F(Sampling, IdsFromTheVocabLimitOnAreNeverDrawn) {
  auto logits = torch::tensor({0.5, 2.0, 9.0, 1.0, 3.0, 8.0}, f64()).view({2, 3});
  auto greedy = sample_token(logits, 0.0, 0, 1.0, c10::nullopt, /*vocab_limit=*/2);
  EXPECT_TRUE(torch::equal(greedy.token, torch::tensor({1, 1}, torch::kLong)));
  EXPECT_NEAR(greedy.logprob[0].item<double>(), torch::log_softmax(logits, -1)[0][1].item<double>(), 1e-12);
  EXPECT_TRUE(torch::equal(sample_token(logits, 0.0, 0, 1.0).token, torch::tensor({2, 2}, torch::kLong)));
  auto gen = compat::make_generator(5, torch::kCPU);
  for (int i = 0; i < 200; ++i)
    EXPECT_LT(sample_token(logits, 1.0, 0, 1.0, gen, 2).token.max().item<int64_t>(), 2);
}

TEST_F(Sampling, SampleTokenFrequenciesFollowTheFilteredDistribution) {
  const int64_t n = 40000;
  auto logits = torch::tensor({0.1, 0.4, 0.2, 0.3}, f64()).log().view({1, 4}).expand({n, 4});
  auto gen = compat::make_generator(11, torch::kCPU);
  auto all = sample_token(logits, 1.0, 0, 1.0, gen).token;
  auto freq = torch::bincount(all, {}, 4).to(torch::kDouble) / n;
  std::vector<double> expected = {0.1, 0.4, 0.2, 0.3};
  for (int v = 0; v < 4; ++v) EXPECT_NEAR(freq[v].item<double>(), expected[v], 0.01) << v;
  // Nucleus 0.5 keeps ids 1 and 3, renormalised to 4/7 and 3/7.
  auto nucleus = sample_token(logits, 1.0, 0, 0.5, gen).token;
  freq = torch::bincount(nucleus, {}, 4).to(torch::kDouble) / n;
  EXPECT_EQ(freq[0].item<double>(), 0.0);
  EXPECT_EQ(freq[2].item<double>(), 0.0);
  EXPECT_NEAR(freq[1].item<double>(), 4.0 / 7, 0.01);
}

TEST_F(Sampling, ApplyStopBookkeeping) {
  auto sampled = torch::tensor({5, 7, 9, 7}, torch::kLong);
  auto finished = torch::tensor({false, false, true, true});
  auto stop_ids = torch::tensor({7, 8}, torch::kLong);
  auto u = apply_stop(sampled, finished, stop_ids, 0);
  EXPECT_TRUE(torch::equal(u.token, torch::tensor({5, 7, 0, 0}, torch::kLong)));
  EXPECT_TRUE(torch::equal(u.valid, torch::tensor({true, true, false, false})));
  EXPECT_TRUE(torch::equal(u.finished, torch::tensor({false, true, true, true})));
  auto none = apply_stop(sampled, finished, torch::zeros({0}, torch::kLong), 0);
  EXPECT_TRUE(torch::equal(none.finished, finished));
}

// ---- generate ------------------------------------------------------------------------------------

TEST_F(Sampling, GreedyWithAndWithoutCacheAgree) {
  for (bool llama_style : {false, true}) {
    auto model = tiny_model(llama_style);
    auto options = SamplingOptions().max_new_tokens(10).temperature(0.0);
    auto cached = generate(model, prompts(), options);
    auto uncached = generate(model, prompts(), SamplingOptions(options).use_cache(false));
    EXPECT_EQ(cached.prompt_length, 7);
    ASSERT_EQ(cached.response.sizes(), (std::vector<int64_t>{3, 10}));
    EXPECT_TRUE(torch::equal(cached.tokens, uncached.tokens)) << "llama_style " << llama_style;
    EXPECT_TRUE(torch::allclose(cached.logprobs, uncached.logprobs, 1e-9, 1e-9));
    EXPECT_TRUE(torch::equal(cached.response_mask, torch::ones({3, 10}, torch::kLong)));
    EXPECT_FALSE(cached.stopped.any().item<bool>());
    // The generated text is not degenerate (the test would be weak if every token were equal).
    auto ids = cached.response.flatten();
    std::set<int64_t> distinct(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
    EXPECT_GT(distinct.size(), 3u);
  }
}

TEST_F(Sampling, LogprobsMatchFullForward) {
  auto model = tiny_model(/*llama_style=*/true);
  for (double temperature : {0.0, 1.0, 0.8}) {
    auto options = SamplingOptions().max_new_tokens(12).temperature(temperature).top_k(10).top_p(
        0.9);
    auto gen = generate(model, prompts(), options.stop_ids({3, 4}),
                        compat::make_generator(5, torch::kCPU));
    torch::NoGradGuard no_grad;
    auto logits = model->forward(gen.tokens, gen.attention_mask);  // [B, P+N, V]
    if (temperature > 0) logits = logits / temperature;
    const int64_t p = gen.prompt_length, n = gen.response.size(1);
    auto expected = torch::log_softmax(logits.narrow(1, p - 1, n), -1)
                        .gather(-1, gen.response.unsqueeze(-1))
                        .squeeze(-1);  // [B, N]
    auto m = gen.response_mask.to(torch::kBool);
    EXPECT_LE((gen.logprobs - expected).masked_select(m).abs().max().item<double>(), 1e-6)
        << "temperature " << temperature;
    EXPECT_EQ(gen.logprobs.masked_select(~m).abs().sum().item<double>(), 0.0);
  }
}

TEST_F(Sampling, SeedsReproduce) {
  auto model = tiny_model(/*llama_style=*/false);
  auto options = SamplingOptions().max_new_tokens(12).temperature(1.0);
  auto a = generate(model, prompts(), options, compat::make_generator(42, torch::kCPU));
  torch::randn({100});  // the global generator moving on must not matter
  auto b = generate(model, prompts(), options, compat::make_generator(42, torch::kCPU));
  auto c = generate(model, prompts(), options, compat::make_generator(43, torch::kCPU));
  EXPECT_TRUE(torch::equal(a.tokens, b.tokens));
  EXPECT_TRUE(torch::equal(a.logprobs, b.logprobs));
  EXPECT_FALSE(torch::equal(a.response, c.response));
}

// With a generator per row, a row's reply depends on its seed alone: the same prompt with the same
// seed gives the same reply (tokens and log-probs, up to the rounding of other batch shapes)
// alone, in a batch, or in another row of another batch.
TEST_F(Sampling, RowGeneratorsMakeARowsReplyIndependentOfItsBatch) {
  auto model = tiny_model(/*llama_style=*/true);
  auto options = SamplingOptions().max_new_tokens(10).temperature(1.0);
  auto gens = [](std::vector<uint64_t> seeds) {
    std::vector<at::Generator> out;
    for (uint64_t s : seeds) out.push_back(compat::make_generator(s, torch::kCPU));
    return out;
  };
  const auto p = prompts();
  auto batch = generate(model, p, options, gens({11, 12, 13}));
  auto alone = generate(model, {p[1]}, options, gens({12}));
  auto other = generate(model, {p[2], p[1]}, options, gens({13, 12}));
  auto reply = [](const Generation& g, int64_t row) { return reply_ids(g).at(static_cast<size_t>(row)); };
  EXPECT_EQ(reply(batch, 1), reply(alone, 0));
  EXPECT_EQ(reply(batch, 1), reply(other, 1));
  EXPECT_EQ(reply(batch, 2), reply(other, 0));
  const int64_t n = alone.response_mask.sum().item<int64_t>();
  EXPECT_LT(testing::max_abs(batch.logprobs[1].narrow(0, 0, n) - alone.logprobs[0].narrow(0, 0, n)), 1e-10);
  // Another seed for the row draws another reply; a wrong number of generators is an error.
  EXPECT_NE(reply(generate(model, {p[1]}, options, gens({99})), 0), reply(alone, 0));
  EXPECT_THAT(testing::error_of<c10::Error>([&] { generate(model, p, options, gens({1, 2})); }),
              ::testing::HasSubstr("2 row generators for 3 prompts"));
}

TEST_F(Sampling, TopK1EqualsGreedy) {
  auto model = tiny_model(/*llama_style=*/false);
  auto greedy = generate(model, prompts(), SamplingOptions().max_new_tokens(10).temperature(0.0));
  auto top1 = generate(model, prompts(), SamplingOptions().max_new_tokens(10).top_k(1),
                       compat::make_generator(1, torch::kCPU));
  EXPECT_TRUE(torch::equal(greedy.tokens, top1.tokens));
}

TEST_F(Sampling, StopTokenEndsEachRow) {
  auto model = tiny_model(/*llama_style=*/false);
  const int64_t steps = 12, pad = 31;
  auto options = SamplingOptions().max_new_tokens(steps).temperature(0.0).pad_id(pad);
  auto free_run = generate(model, prompts(), options);
  const int64_t stop = free_run.response[0][2].item<int64_t>();
  auto gen = generate(model, prompts(), SamplingOptions(options).stop_ids({stop}));

  // Expected: each row's free run up to and including its first `stop`, then padding.
  const int64_t batch = 3;
  std::vector<int64_t> lengths(batch, steps);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < steps; ++t) {
      if (free_run.response[b][t].item<int64_t>() == stop) {
        lengths[b] = t + 1;
        break;
      }
    }
  }
  const int64_t n = *std::max_element(lengths.begin(), lengths.end());
  ASSERT_EQ(gen.response.sizes(), (std::vector<int64_t>{batch, n}));
  EXPECT_LE(lengths[0], 3);
  for (int64_t b = 0; b < batch; ++b) {
    EXPECT_EQ(gen.stopped[b].item<bool>(), lengths[b] < steps || free_run.response[b][steps - 1]
                                                                       .item<int64_t>() == stop);
    for (int64_t t = 0; t < n; ++t) {
      const bool real = t < lengths[b];
      EXPECT_EQ(gen.response_mask[b][t].item<int64_t>(), real ? 1 : 0) << b << "," << t;
      EXPECT_EQ(gen.response[b][t].item<int64_t>(),
                real ? free_run.response[b][t].item<int64_t>() : pad)
          << b << "," << t;
    }
  }
  EXPECT_TRUE(torch::equal(gen.tokens.narrow(1, 0, gen.prompt_length),
                           free_run.tokens.narrow(1, 0, gen.prompt_length)));
  EXPECT_TRUE(torch::equal(gen.attention_mask.narrow(1, gen.prompt_length, n), gen.response_mask));
}

TEST_F(Sampling, StopsEarlyWhenEveryRowStopped) {
  auto model = tiny_model(/*llama_style=*/false);
  std::vector<int64_t> every_id(32);
  for (int64_t i = 0; i < 32; ++i) every_id[i] = i;
  auto gen = generate(model, prompts(), SamplingOptions().max_new_tokens(20).stop_ids(every_id));
  ASSERT_EQ(gen.response.sizes(), (std::vector<int64_t>{3, 1}));
  EXPECT_TRUE(gen.stopped.all().item<bool>());
  EXPECT_TRUE(torch::equal(gen.response_mask, torch::ones({3, 1}, torch::kLong)));
  ASSERT_EQ(gen.tokens.size(1), gen.prompt_length + 1);
}

TEST_F(Sampling, RunsInEvalModeAndRestoresTraining) {
  auto model = tiny_model(/*llama_style=*/false, /*dropout=*/0.5);
  model->train();
  auto options = SamplingOptions().max_new_tokens(8).temperature(0.0);
  auto a = generate(model, prompts(), options);
  auto b = generate(model, prompts(), SamplingOptions(options).use_cache(false));
  EXPECT_TRUE(torch::equal(a.tokens, b.tokens));  // dropout would make them differ
  EXPECT_TRUE(model->is_training());
  model->eval();
  generate(model, prompts(), options);
  EXPECT_FALSE(model->is_training());
}

TEST_F(Sampling, KeepsWithinBlockSize) {
  auto model = tiny_model(/*llama_style=*/false);
  std::vector<int64_t> long_prompt(30, 3);
  auto gen = generate(model, {long_prompt, {1}}, SamplingOptions().max_new_tokens(10));
  EXPECT_EQ(gen.response.size(1), 2);
  EXPECT_EQ(gen.tokens.size(1), 32);
  std::vector<int64_t> too_long(33, 3);
  EXPECT_THROW(generate(model, {too_long}, SamplingOptions()), c10::Error);
  EXPECT_THROW(generate(model, {{1, 2}, {}}, SamplingOptions()), c10::Error);
  EXPECT_THROW(generate(model, {{1, 32}}, SamplingOptions()), c10::Error);
  EXPECT_THROW(generate(model, {{1}}, SamplingOptions().temperature(-1)), c10::Error);
}

}  // namespace
}  // namespace nurture
