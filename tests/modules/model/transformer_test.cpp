// Tests of the Transformer: KV-cache decoding against the full forward, causality, padding
// invariance, gradients by finite differences, attention kernels against a plain reference,
// parameter counts of the presets, initialisation and the option plumbing.
#include "modules/model/transformer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>

#include "modules/core/compat.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;

class TransformerTest : public testing::Seeded {};

// Tiny configurations, small enough for float64 and finite differences.
TransformerOptions tiny_gpt2() {
  return preset("gpt2_tiny").vocab_size(97).block_size(32).n_layer(2).n_head(4).n_embd(32);
}
TransformerOptions tiny_llama() {  // rope, rmsnorm, swiglu, grouped-query attention, untied
  return preset("llama_micro").vocab_size(97).block_size(32).n_layer(2).n_head(4).n_kv_head(2).n_embd(32);
}

Transformer make_double(const TransformerOptions& options) {
  Transformer model(options);
  model->to(torch::kDouble);
  model->eval();
  return model;
}

using testing::error_of;
using testing::max_abs;

// A batch of sequences of different lengths, LEFT-padded (pad id 0) to the longest.
struct Padded {
  torch::Tensor idx, mask;  // [B, T] int64
};
Padded left_pad_rows(const std::vector<torch::Tensor>& rows) {
  int64_t T = 0;
  for (const auto& r : rows) T = std::max(T, r.size(0));
  auto idx = torch::zeros({static_cast<int64_t>(rows.size()), T}, torch::kLong);
  auto mask = torch::zeros_like(idx);
  for (size_t b = 0; b < rows.size(); ++b) {
    const int64_t n = rows[b].size(0);
    idx[b].narrow(0, T - n, n).copy_(rows[b]);
    mask[b].narrow(0, T - n, n).fill_(1);
  }
  return {idx, mask};
}
Padded right_pad_rows(const std::vector<torch::Tensor>& rows) {
  int64_t T = 0;
  for (const auto& r : rows) T = std::max(T, r.size(0));
  auto idx = torch::zeros({static_cast<int64_t>(rows.size()), T}, torch::kLong);
  auto mask = torch::zeros_like(idx);
  for (size_t b = 0; b < rows.size(); ++b) {
    const int64_t n = rows[b].size(0);
    idx[b].narrow(0, 0, n).copy_(rows[b]);
    mask[b].narrow(0, 0, n).fill_(1);
  }
  return {idx, mask};
}

// ---------------------------------------------------------------------------------------------
// KV cache
// ---------------------------------------------------------------------------------------------

// Prefill a left-padded batch, then decode one token at a time; every logit at a real position
// must match the full forward over the whole sequence.
double kv_cache_max_relative_diff(const TransformerOptions& options) {
  torch::NoGradGuard no_grad;
  auto model = make_double(options);
  const int64_t V = options.vocab_size(), steps = 6;
  auto prompts = left_pad_rows({torch::randint(1, V, {5}), torch::randint(1, V, {2}), torch::randint(1, V, {8})});
  const int64_t B = prompts.idx.size(0), P = prompts.idx.size(1), T = P + steps;
  auto idx = torch::cat({prompts.idx, torch::randint(1, V, {B, steps})}, 1);         // [B, T]
  auto mask = torch::cat({prompts.mask, torch::ones({B, steps}, torch::kLong)}, 1);  // [B, T]
  auto full = model->forward(idx, mask);                                             // [B, T, V]

  auto cache = model->make_cache(B, T);
  std::vector<torch::Tensor> pieces = {model->forward(prompts.idx, prompts.mask, &cache)};
  EXPECT_EQ(cache.length(), P);
  for (int64_t t = P; t < T; ++t) {
    pieces.push_back(model->forward(idx.narrow(1, t, 1), mask.narrow(1, 0, t + 1), &cache));
  }
  EXPECT_EQ(cache.length(), T);
  auto incremental = torch::cat(pieces, 1);  // [B, T, V]
  auto real = mask.to(torch::kBool).unsqueeze(-1).expand_as(full);
  auto diff = (incremental - full).masked_select(real);
  return max_abs(diff) / max_abs(full.masked_select(real));
}

TEST_F(TransformerTest, KvCacheDecodingMatchesFullForwardGpt2) {
  const double diff = kv_cache_max_relative_diff(tiny_gpt2());
  std::cout << "[kv-cache] gpt2-style, float64, left padding: max relative diff " << diff << std::endl;
  EXPECT_LE(diff, 1e-6);
}

TEST_F(TransformerTest, KvCacheDecodingMatchesFullForwardLlama) {
  const double diff = kv_cache_max_relative_diff(tiny_llama());
  std::cout << "[kv-cache] llama-style (rope, rmsnorm, swiglu, gqa), float64, left padding: "
            << "max relative diff " << diff << std::endl;
  EXPECT_LE(diff, 1e-6);
}

// head_dim is an option of its own (Qwen3, Gemma: H * D differs from C): the projections take
// their shapes from it, the parameter count follows, and cached decoding still matches.
TEST_F(TransformerTest, HeadDimIsIndependentOfTheWidth) {
  const auto options = tiny_llama().head_dim(12);  // H 4 x D 12 = 48, C 32
  Transformer model(options);
  const auto& attn = *model->h->ptr<BlockImpl>(0)->attn;
  EXPECT_EQ(attn.c_attn->weight.sizes(), torch::IntArrayRef({(4 + 2 * 2) * 12, 32}));
  EXPECT_EQ(attn.c_proj->weight.sizes(), torch::IntArrayRef({32, 48}));
  int64_t numel = 0;
  for (const auto& p : model->parameters()) numel += p.numel();
  EXPECT_EQ(count_parameters(options), numel);
  EXPECT_LE(kv_cache_max_relative_diff(options), 1e-6);
  EXPECT_EQ(options_from_json(to_json(options), "test").head_dim(), 12);
  EXPECT_NO_THROW(validate(TransformerOptions().n_embd(100).n_head(3).head_dim(32)));  // C % H != 0 is fine
  EXPECT_THAT(error_of<std::invalid_argument>([] { validate(tiny_llama().head_dim(7)); }),
              HasSubstr("head dimension (7) must be even"));
}

TEST_F(TransformerTest, KvCacheWithoutMaskAndRowSelection) {
  torch::NoGradGuard no_grad;
  auto model = make_double(tiny_llama());
  auto idx = torch::randint(0, 97, {2, 9});
  auto full = model->forward(idx);
  auto cache = model->make_cache(2, 9);
  auto first = model->forward(idx.narrow(1, 0, 4), {}, &cache);
  auto chunk = model->forward(idx.narrow(1, 4, 3), {}, &cache);  // several tokens after a cache
  EXPECT_LE(max_abs(torch::cat({first, chunk}, 1) - full.narrow(1, 0, 7)), 1e-10);
  // Keep row 1 only: its continuation matches the full forward's row 1.
  cache.select_rows(torch::tensor({1}, torch::kLong));
  EXPECT_EQ(cache.batch_size(), 1);
  auto next = model->forward(idx.narrow(0, 1, 1).narrow(1, 7, 2), {}, &cache);
  EXPECT_LE(max_abs(next - full.narrow(0, 1, 1).narrow(1, 7, 2)), 1e-10);
  cache.reset();
  EXPECT_EQ(cache.length(), 0);
  EXPECT_EQ(cache.max_length(), 9);
  EXPECT_THROW(model->make_cache(1, 33), c10::Error);  // beyond block_size
}

// ---------------------------------------------------------------------------------------------
// Causality and padding
// ---------------------------------------------------------------------------------------------

TEST_F(TransformerTest, ChangingAFutureTokenLeavesEarlierLogitsUnchanged) {
  torch::NoGradGuard no_grad;
  for (const auto& options : {tiny_gpt2(), tiny_llama()}) {
    auto model = make_double(options);
    auto idx = torch::randint(0, 97, {2, 10});
    auto changed = idx.clone();
    changed.select(1, 6).add_(1).remainder_(97);
    auto a = model->forward(idx), b = model->forward(changed);
    EXPECT_TRUE(torch::equal(a.narrow(1, 0, 6), b.narrow(1, 0, 6))) << options.position();
    EXPECT_GT(max_abs(a.narrow(1, 6, 4) - b.narrow(1, 6, 4)), 1e-6);
    // The same with an explicit (all-ones) mask, which takes the masked attention path.
    auto ones = torch::ones({2, 10}, torch::kLong);
    auto am = model->forward(idx, ones), bm = model->forward(changed, ones);
    EXPECT_TRUE(torch::equal(am.narrow(1, 0, 6), bm.narrow(1, 0, 6)));
    EXPECT_LE(max_abs(am - a), 1e-12);
  }
}

TEST_F(TransformerTest, PaddedLogitsEqualUnpaddedLogits) {
  torch::NoGradGuard no_grad;
  for (const auto& options : {tiny_gpt2(), tiny_llama()}) {
    auto model = make_double(options);
    std::vector<torch::Tensor> rows = {torch::randint(1, 97, {7}), torch::randint(1, 97, {3}),
                                       torch::randint(1, 97, {5})};
    for (const bool left : {true, false}) {
      auto batch = left ? left_pad_rows(rows) : right_pad_rows(rows);
      auto logits = model->forward(batch.idx, batch.mask);  // [B, T, V]
      ASSERT_FALSE(logits.isnan().any().item<bool>());      // padding rows stay finite too
      const int64_t T = batch.idx.size(1);
      for (size_t b = 0; b < rows.size(); ++b) {
        const int64_t n = rows[b].size(0);
        auto alone = model->forward(rows[b].unsqueeze(0)).squeeze(0);  // [n, V]
        auto padded = logits[static_cast<int64_t>(b)].narrow(0, left ? T - n : 0, n);
        EXPECT_LE(max_abs(padded - alone), 1e-10)
            << options.position() << (left ? " left" : " right") << " padding, row " << b;
      }
    }
  }
}

// Packing: documents numbered 1, 2, 3 in one row (then padding) give each document the logits it
// gets alone, for learned (gpt2) and rotary (llama) positions.
TEST_F(TransformerTest, PackedDocumentsEqualDocumentsAlone) {
  torch::NoGradGuard no_grad;
  for (const auto& options : {tiny_gpt2(), tiny_llama()}) {
    auto model = make_double(options);
    std::vector<torch::Tensor> docs = {torch::randint(1, 97, {6}), torch::randint(1, 97, {4}),
                                       torch::randint(1, 97, {9})};
    auto idx = torch::zeros({1, 22}, torch::kLong);
    auto segments = torch::zeros({1, 22}, torch::kLong);
    int64_t at = 0;
    for (size_t d = 0; d < docs.size(); ++d) {
      const int64_t n = docs[d].size(0);
      idx[0].narrow(0, at, n).copy_(docs[d]);
      segments[0].narrow(0, at, n).fill_(static_cast<int64_t>(d) + 1);
      at += n;
    }
    auto packed = model->forward(idx, segments).squeeze(0);  // [22, V]
    ASSERT_FALSE(packed.isnan().any().item<bool>());
    at = 0;
    for (size_t d = 0; d < docs.size(); ++d) {
      const int64_t n = docs[d].size(0);
      auto alone = model->forward(docs[d].unsqueeze(0)).squeeze(0);
      EXPECT_LE(max_abs(packed.narrow(0, at, n) - alone), 1e-10) << options.position() << ", document " << d;
      at += n;
    }
    // The same row read as one document (a 0/1 mask) is not the same: the test can tell.
    auto unpacked = model->forward(idx, (segments != 0).to(torch::kLong)).squeeze(0);
    EXPECT_GT(max_abs(unpacked.narrow(0, 6, 4) - packed.narrow(0, 6, 4)), 1e-3) << options.position();
  }
}

// precision bf16: inside the guard the matrix products run in bfloat16 (logits come out bf16, close
// to fp32's); after it, fp32 again. Weights are never converted.
TEST_F(TransformerTest, AutocastGuardComputesInBf16AndRestores) {
  torch::NoGradGuard no_grad;
  Transformer model(tiny_llama());
  model->eval();
  auto idx = torch::randint(1, 97, {2, 12});
  auto fp32 = model->forward(idx);
  torch::Tensor bf16;
  {
    compat::AutocastGuard autocast(torch::kCPU, torch::kBFloat16);
    bf16 = model->forward(idx);
  }
  EXPECT_EQ(bf16.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(model->parameters().front().scalar_type(), torch::kFloat);
  const double scale = max_abs(fp32);
  EXPECT_LE(max_abs(bf16.to(torch::kFloat) - fp32), 0.05 * scale);
  EXPECT_GT(max_abs(bf16.to(torch::kFloat) - fp32), 0.0);  // it did compute in lower precision
  EXPECT_EQ(model->forward(idx).scalar_type(), torch::kFloat);
  { compat::AutocastGuard off(torch::kCPU, torch::kFloat); EXPECT_EQ(model->forward(idx).scalar_type(), torch::kFloat); }
}

TEST_F(TransformerTest, FullyPaddedRowGivesNoNaNAndNoGradientNaN) {
  auto model = make_double(tiny_llama());
  auto idx = torch::randint(0, 97, {2, 6});
  auto mask = torch::ones({2, 6}, torch::kLong);
  mask[1].zero_();
  auto logits = model->forward(idx, mask);
  EXPECT_FALSE(logits.isnan().any().item<bool>());
  logits.narrow(0, 0, 1).sum().backward();
  for (const auto& p : model->parameters()) {
    EXPECT_FALSE(p.grad().defined() && p.grad().isnan().any().item<bool>());
  }
}

// ---------------------------------------------------------------------------------------------
// Gradients by central differences
// ---------------------------------------------------------------------------------------------

TEST_F(TransformerTest, GradientsMatchFiniteDifferences) {
  double worst = 0;
  for (auto options : {tiny_gpt2(), tiny_llama()}) {
    options.vocab_size(11).block_size(8).n_layer(1).n_embd(8).n_head(2);
    if (options.position() == PositionKind::kRope) options.n_kv_head(1).mlp_hidden(12);
    auto model = make_double(options);
    auto idx = torch::randint(0, 11, {2, 5});
    auto mask = torch::tensor({{0, 1, 1, 1, 1}, {1, 1, 1, 1, 1}}, torch::kLong);
    auto weights = torch::randn({2, 5, 11}, torch::kDouble);
    auto loss_fn = [&] { return (model->forward(idx, mask) * weights).sum(); };

    model->zero_grad();
    loss_fn().backward();
    auto params = model->named_parameters();
    const std::vector<std::pair<std::string, std::vector<int64_t>>> probes = {
        {"wte.weight", {3, 2}},
        {"h.0.attn.c_attn.weight", {5, 1}},
        {"h.0.attn.c_attn.weight", {13, 7}},
        {"h.0.attn.c_proj.weight", {2, 6}},
        {"h.0.mlp.c_fc.weight", {4, 3}},
        {"h.0.mlp.c_proj.weight", {0, 3}},
        {"h.0.ln_1.weight", {2}},
        {"ln_f.weight", {5}}};
    const double eps = 1e-5;
    for (const auto& [name, index] : probes) {
      auto param = params[name];
      auto entry = param.data();
      auto grad = param.grad();
      for (auto i : index) {
        entry = entry[i];
        grad = grad[i];
      }
      const double analytic = grad.item<double>();
      const double original = entry.item<double>();
      torch::NoGradGuard no_grad;
      entry.fill_(original + eps);
      const double plus = loss_fn().item<double>();
      entry.fill_(original - eps);
      const double minus = loss_fn().item<double>();
      entry.fill_(original);
      const double numeric = (plus - minus) / (2 * eps);
      const double rel =
          std::abs(analytic - numeric) / std::max({std::abs(analytic), std::abs(numeric), 1e-3});
      worst = std::max(worst, rel);
      EXPECT_LE(rel, 1e-6) << options.position() << " " << name << " analytic " << analytic << " numeric "
                           << numeric;
    }
  }
  std::cout << "[grad-check] float64 central differences: max relative error " << worst << std::endl;
}

// ---------------------------------------------------------------------------------------------
// Attention kernels
// ---------------------------------------------------------------------------------------------

// Reference attention, one query row at a time: softmax over the allowed keys only.
torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const torch::Tensor& allowed) {  // allowed: [B, T, S] bool
  auto out = torch::zeros_like(q);
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), S = k.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < T; ++i) {
        std::vector<double> scores;
        std::vector<int64_t> keys;
        for (int64_t j = 0; j < S; ++j) {
          if (!allowed[b][i][j].item<bool>()) continue;
          scores.push_back((q[b][h][i] * k[b][h][j]).sum().item<double>() * scale);
          keys.push_back(j);
        }
        if (keys.empty()) continue;
        const double top = *std::max_element(scores.begin(), scores.end());
        double total = 0;
        for (auto& s : scores) total += (s = std::exp(s - top));
        for (size_t n = 0; n < keys.size(); ++n) out[b][h][i] += (scores[n] / total) * v[b][h][keys[n]];
      }
    }
  }
  return out;
}

TEST_F(TransformerTest, ExplicitAttentionMatchesReference) {
  const int64_t B = 2, H = 3, T = 4, S = 6, D = 5;
  auto q = torch::randn({B, H, T, D}, torch::kDouble);
  auto k = torch::randn({B, H, S, D}, torch::kDouble);
  auto v = torch::randn({B, H, S, D}, torch::kDouble);
  auto allowed = torch::rand({B, T, S}) > 0.4;
  allowed[0][2].fill_(false);  // a row with nothing to attend to: zeros, not NaN
  auto got = explicit_attention(q, k, v, allowed.unsqueeze(1), 0.0, false);
  EXPECT_LE(max_abs(got - reference_attention(q, k, v, allowed)), 1e-12);
  EXPECT_FALSE(got.isnan().any().item<bool>());

  // is_causal alone (T == S).
  auto kc = k.narrow(2, 0, T), vc = v.narrow(2, 0, T);
  auto causal = torch::ones({T, T}, torch::kBool).tril().expand({B, T, T});
  EXPECT_LE(max_abs(explicit_attention(q, kc, vc, {}, 0.0, true) - reference_attention(q, kc, vc, causal)),
            1e-12);
}

TEST_F(TransformerTest, ExplicitAttentionMatchesSdpa) {
  if (!compat::kHasSdpa) GTEST_SKIP() << "LibTorch " << compat::torch_version() << " has no sdpa";
  const int64_t B = 2, H = 3, T = 5, D = 8;
  auto q = torch::randn({B, H, T, D}, torch::kDouble);
  auto k = torch::randn({B, H, T, D}, torch::kDouble);
  auto v = torch::randn({B, H, T, D}, torch::kDouble);
  EXPECT_LE(max_abs(explicit_attention(q, k, v, {}, 0.0, true) - compat::sdpa(q, k, v, {}, 0.0, true)),
            1e-10);
  auto allowed = (torch::rand({B, 1, T, T}) > 0.3).logical_or(torch::eye(T, torch::kBool));
  EXPECT_LE(
      max_abs(explicit_attention(q, k, v, allowed, 0.0, false) - compat::sdpa(q, k, v, allowed, 0.0, false)),
      1e-10);
}

// ---------------------------------------------------------------------------------------------
// Parameter counts and initialisation
// ---------------------------------------------------------------------------------------------

int64_t numel_of(torch::nn::Module& module) {
  int64_t total = 0;
  for (const auto& p : module.parameters()) total += p.numel();
  return total;
}

TEST_F(TransformerTest, PresetParameterCounts) {
  Transformer gpt2(preset("gpt2_124m"));
  EXPECT_EQ(numel_of(*gpt2), 124439808);
  EXPECT_EQ(count_parameters(preset("gpt2_124m")), 124439808);
  EXPECT_EQ(count_parameters(preset("gpt2_350m")), 354823168);
  EXPECT_EQ(count_parameters(preset("llama_1b")), 1100048384);
  for (const auto& name : preset_names()) {
    std::cout << "[preset] " << name << " " << count_parameters(preset(name)) << " parameters" << std::endl;
  }
}

TEST_F(TransformerTest, CountParametersMatchesConstructedModels) {
  std::vector<TransformerOptions> configs = {tiny_gpt2(), tiny_llama(), preset("gpt2_tiny"),
                                             preset("llama_micro")};
  configs.push_back(tiny_gpt2().tie_embeddings(false));
  configs.push_back(tiny_gpt2().bias(false));
  configs.push_back(tiny_gpt2().position(PositionKind::kRope).n_kv_head(1));
  configs.push_back(tiny_llama().tie_embeddings(true).bias(true));
  configs.push_back(tiny_llama().norm(NormKind::kLayerNorm).mlp(MlpKind::kGelu).position(PositionKind::kLearned).mlp_hidden(40));
  configs.push_back(tiny_llama().n_kv_head(4).mlp_hidden(0));
  configs.push_back(tiny_llama().qkv_bias(true));                // Qwen2
  configs.push_back(tiny_llama().qk_norm(true).head_dim(12));    // Qwen3
  for (const auto& options : configs) {
    Transformer model(options);
    EXPECT_EQ(count_parameters(options), numel_of(*model)) << to_json(options).dump();
  }
  EXPECT_EQ(resolved_mlp_hidden(preset("llama_1b").mlp_hidden(0)), 5632);
  EXPECT_EQ(resolved_mlp_hidden(preset("llama_tiny")), 768);
  EXPECT_EQ(resolved_mlp_hidden(preset("gpt2_124m")), 3072);
}

// The frequencies of Llama 3.1's scaling, worked out by hand for D 8, theta 10000, factor 8,
// context 64, low 1, high 4: inv_freq = 1, 0.1, 0.01, 0.001 with wavelengths 2π/f = 6.3, 62.8,
// 628, 6283. The first is below context/high = 16 (kept); the second between 16 and 64, blended
// with smooth = (64/62.83 - 1)/3 = 0.00620; the last two above 64 (divided by 8).
TEST_F(TransformerTest, RopeScalingFrequencies) {
  auto options = tiny_llama().n_embd(32).n_head(4).rope_theta(10000.0);
  const auto plain = rope_frequencies(options, torch::kDouble);
  EXPECT_TRUE(torch::allclose(plain, torch::tensor({1.0, 0.1, 0.01, 0.001}, torch::kDouble), 0, 1e-15));
  options.rope_scaling(RopeScaling::kLinear).rope_factor(4.0);
  EXPECT_TRUE(torch::allclose(rope_frequencies(options, torch::kDouble), plain / 4.0, 0, 1e-15));
  options.rope_scaling(RopeScaling::kLlama3).rope_factor(8.0).rope_original_context(64).rope_low_freq_factor(1.0)
      .rope_high_freq_factor(4.0);
  const double smooth = (64.0 / (2 * M_PI / 0.1) - 1.0) / 3.0;
  const auto expected = torch::tensor({1.0, (1 - smooth) * 0.1 / 8 + smooth * 0.1, 0.01 / 8, 0.001 / 8}, torch::kDouble);
  EXPECT_TRUE(torch::allclose(rope_frequencies(options, torch::kDouble), expected, 0, 1e-15))
      << rope_frequencies(options, torch::kDouble);
  EXPECT_THAT(error_of<std::invalid_argument>([] { validate(tiny_gpt2().rope_scaling(RopeScaling::kLinear).rope_factor(2)); }),
              HasSubstr("rope_scaling (\"linear\") needs position \"rope\""));
  EXPECT_THAT(error_of<std::invalid_argument>([&] { validate(options.rope_high_freq_factor(0.5)); }),
              HasSubstr("rope_high_freq_factor (0.5"));
}

// Qwen3's q/k norms: RMSNorm over each head's D channels, before RoPE, recomputed here in plain ops.
TEST_F(TransformerTest, QkNormNormalisesEachHeadBeforeRope) {
  torch::NoGradGuard no_grad;
  const auto options = tiny_llama().qk_norm(true).head_dim(12).n_kv_head(2).n_layer(1);
  Transformer model(options);
  auto* attn = model->h->ptr<BlockImpl>(0)->attn.get();
  attn->q_norm->weight.uniform_(0.5, 1.5);
  attn->k_norm->weight.uniform_(0.5, 1.5);
  const auto x = torch::randn({2, 5, options.n_embd()});
  const int64_t H = options.n_head(), KVH = 2, D = 12;
  auto qkv = attn->c_attn(x);
  auto rms = [&](const torch::Tensor& t, const torch::Tensor& w) { return t * torch::rsqrt(t.pow(2).mean(-1, true) + options.norm_eps()) * w; };
  auto q = rms(qkv.narrow(2, 0, H * D).reshape({2, 5, H, D}), attn->q_norm->weight).transpose(1, 2);
  auto k = rms(qkv.narrow(2, H * D, KVH * D).reshape({2, 5, KVH, D}), attn->k_norm->weight).transpose(1, 2);
  auto v = qkv.narrow(2, (H + KVH) * D, KVH * D).reshape({2, 5, KVH, D}).transpose(1, 2);
  auto positions = torch::arange(5, torch::kLong).unsqueeze(0).expand({2, 5});
  auto angles = positions.to(torch::kFloat).unsqueeze(-1) * rope_frequencies(options, torch::kFloat);
  auto emb = torch::cat({angles, angles}, -1);
  auto rope = [&](const torch::Tensor& t) {
    auto rotated = torch::cat({-t.narrow(-1, D / 2, D / 2), t.narrow(-1, 0, D / 2)}, -1);
    return t * emb.cos().unsqueeze(1) + rotated * emb.sin().unsqueeze(1);
  };
  auto y = explicit_attention(rope(q), rope(k).repeat_interleave(H / KVH, 1), v.repeat_interleave(H / KVH, 1), {}, 0.0, true);
  const auto expected = attn->c_proj(y.transpose(1, 2).reshape({2, 5, H * D}));
  const auto ours = attn->forward(x, emb.cos(), emb.sin(), {}, true, nullptr);
  EXPECT_TRUE(torch::allclose(ours, expected, 1e-5, 1e-6));
}

TEST_F(TransformerTest, InitialisationFollowsGpt2) {
  const auto options = TransformerOptions().vocab_size(1000).block_size(64).n_layer(4).n_head(4).n_embd(256);
  Transformer model(options);
  auto params = model->named_parameters();
  auto std_of = [&](const std::string& name) { return params[name].std().item<double>(); };
  const double residual = 0.02 / std::sqrt(2.0 * 4);
  EXPECT_NEAR(std_of("h.2.attn.c_proj.weight"), residual, 0.03 * residual);
  EXPECT_NEAR(std_of("h.1.mlp.c_proj.weight"), residual, 0.03 * residual);
  EXPECT_NEAR(std_of("h.1.attn.c_attn.weight"), 0.02, 0.03 * 0.02);
  EXPECT_NEAR(std_of("wte.weight"), 0.02, 0.03 * 0.02);
  EXPECT_NEAR(std_of("wpe.weight"), 0.02, 0.03 * 0.02);
  EXPECT_EQ(max_abs(params["h.0.mlp.c_fc.bias"]), 0.0);
  EXPECT_TRUE(torch::equal(params["h.3.ln_2.weight"], torch::ones({256})));
  // reset_parameters draws again.
  auto before = params["h.0.attn.c_attn.weight"].clone();
  model->reset_parameters();
  EXPECT_FALSE(torch::equal(before, params["h.0.attn.c_attn.weight"]));
  EXPECT_NEAR(std_of("h.2.attn.c_proj.weight"), residual, 0.03 * residual);
}

TEST_F(TransformerTest, ParameterNamesFollowGpt2Layout) {
  Transformer gpt2(tiny_gpt2());
  auto names = gpt2->named_parameters().keys();
  for (const char* name :
       {"wte.weight", "wpe.weight", "h.0.ln_1.weight", "h.0.ln_1.bias", "h.1.attn.c_attn.weight",
        "h.1.attn.c_attn.bias", "h.1.attn.c_proj.weight", "h.1.ln_2.bias", "h.1.mlp.c_fc.weight",
        "h.1.mlp.c_proj.bias", "ln_f.weight", "ln_f.bias"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  }
  EXPECT_EQ(gpt2->named_parameters()["h.0.attn.c_attn.weight"].size(0), 3 * 32);
  Transformer llama(tiny_llama());
  auto lp = llama->named_parameters();
  EXPECT_EQ(lp["h.0.attn.c_attn.weight"].size(0), (4 + 2 * 2) * 8);
  EXPECT_TRUE(lp.contains("h.0.mlp.c_gate.weight"));
  EXPECT_TRUE(lp.contains("lm_head.weight"));
  EXPECT_FALSE(lp.contains("wpe.weight"));
  EXPECT_FALSE(lp.contains("ln_f.bias"));
  EXPECT_FALSE(lp.contains("h.0.attn.c_attn.bias"));
  EXPECT_EQ(llama->buffers().size(), 0u);
}

TEST_F(TransformerTest, CloneIsDeepAndEquivalent) {
  torch::NoGradGuard no_grad;
  auto model = make_double(tiny_llama());
  auto copy = std::dynamic_pointer_cast<TransformerImpl>(model->clone());
  ASSERT_TRUE(copy != nullptr);
  auto idx = torch::randint(0, 97, {2, 6});
  EXPECT_TRUE(torch::equal(model->forward(idx), copy->forward(idx)));
  copy->named_parameters()["h.0.ln_1.weight"].fill_(3.0);
  EXPECT_FALSE(torch::equal(model->forward(idx), copy->forward(idx)));
}

TEST_F(TransformerTest, DropoutOnlyInTraining) {
  torch::NoGradGuard no_grad;
  auto model = make_double(tiny_gpt2().dropout(0.5));
  auto idx = torch::randint(0, 97, {1, 6});
  EXPECT_TRUE(torch::equal(model->forward(idx), model->forward(idx)));
  model->train();
  EXPECT_FALSE(torch::equal(model->forward(idx), model->forward(idx)));
}

// ---------------------------------------------------------------------------------------------
// Options: validation, presets, strings and JSON
// ---------------------------------------------------------------------------------------------

TEST_F(TransformerTest, ValidationNamesTheKey) {
  EXPECT_EQ(error_of<std::invalid_argument>([] { validate(TransformerOptions().n_embd(100).n_head(3)); }),
            "n_embd (100) must be divisible by n_head (3)");
  EXPECT_THAT(error_of<std::invalid_argument>([] { validate(TransformerOptions().n_kv_head(5)); }), HasSubstr("n_kv_head (5)"));
  EXPECT_THAT(error_of<std::invalid_argument>([] { parse_norm("batchnorm"); }), HasSubstr("norm (\"batchnorm\")"));
  EXPECT_THAT(error_of<std::invalid_argument>([] { validate(TransformerOptions().dropout(1.5)); }), HasSubstr("dropout"));
  EXPECT_THAT(error_of<std::invalid_argument>([] { Transformer(TransformerOptions().n_layer(0)); }), HasSubstr("n_layer (0)"));
  for (const auto& name : preset_names()) EXPECT_NO_THROW(validate(preset(name))) << name;
  EXPECT_THAT(error_of<std::invalid_argument>([] { preset("gpt5"); }), HasSubstr("gpt2_124m, gpt2_350m"));
}

TEST_F(TransformerTest, SetOptionParsesAndRejects) {
  auto options = preset("gpt2_124m");
  set_option(options, "n_layer", "6");
  set_option(options, "dropout", "0.1");
  set_option(options, "bias", "false");
  set_option(options, "position", "rope");
  EXPECT_EQ(options.n_layer(), 6);
  EXPECT_DOUBLE_EQ(options.dropout(), 0.1);
  EXPECT_FALSE(options.bias());
  EXPECT_EQ(options.position(), PositionKind::kRope);
  EXPECT_THAT(error_of<std::invalid_argument>([&] { set_option(options, "n_layers", "6"); }), HasSubstr("n_layers"));
  EXPECT_THAT(error_of<std::invalid_argument>([&] { set_option(options, "n_layer", "six"); }),
              HasSubstr("n_layer: expected an integer"));
  EXPECT_THAT(error_of<std::invalid_argument>([&] { set_option(options, "n_layer", "6.5"); }), HasSubstr("n_layer"));
  EXPECT_THAT(error_of<std::invalid_argument>([&] { set_option(options, "bias", "maybe"); }), HasSubstr("bias"));
  EXPECT_THAT(error_of<std::invalid_argument>([&] { set_option(options, "mlp", "relu"); }), HasSubstr("mlp"));
  EXPECT_EQ(transformer_option_fields().size(), to_json(options).size());
}

TEST_F(TransformerTest, JsonRoundTripAndStrictness) {
  const auto options = preset("llama_1b");
  const auto back = options_from_json(to_json(options), "test");
  EXPECT_EQ(to_json(back), to_json(options));
  EXPECT_EQ(count_parameters(back), count_parameters(options));
  EXPECT_THAT(error_of<std::invalid_argument>([] {
                options_from_json({{"n_layers", 2}}, "cfg.json");
              }),
              HasSubstr("cfg.json: unknown model option \"n_layers\""));
  EXPECT_THAT(error_of<std::invalid_argument>([] {
                options_from_json({{"n_layer", "2"}}, "cfg.json");
              }),
              HasSubstr("cfg.json: n_layer: expected an integer"));
  EXPECT_THAT(error_of<std::invalid_argument>([] { options_from_json({{"bias", 1}}, "cfg.json"); }), HasSubstr("cfg.json: bias"));
  EXPECT_THAT(error_of<std::invalid_argument>([] {
                options_from_json({{"n_embd", 100}, {"n_head", 3}}, "cfg.json");
              }),
              HasSubstr("cfg.json: n_embd (100)"));
  EXPECT_EQ(options_from_json({{"rope_theta", 500000}}, "x").rope_theta(), 500000.0);  // int for a float
}

}  // namespace
}  // namespace nurture
