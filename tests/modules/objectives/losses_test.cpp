// Tests for modules/objectives/losses.h: every loss against numbers worked out independently — by hand
// (a two-token vocabulary where log-softmax can be written out), by references written with
// plain loops in double, and by finite differences for gradients.
#include "modules/objectives/losses.h"

#include <gmock/gmock.h>

#include <cmath>
#include <limits>
#include <vector>

#include "tests/test_util.h"

namespace nurture {
namespace {

using Losses = testing::Seeded;

constexpr double kLog2 = 0.6931471805599453;
// log(1 + e^-1): −log σ(1), also −log softmax([1, 0])[0].
constexpr double kSoftplusMinus1 = 0.31326168751822286;
constexpr double kSoftplus1 = 1.3132616875182228;  // log(1 + e)

using testing::f64;

double value(const torch::Tensor& t) { return t.item<double>(); }

// A [1, 3, 2] batch over a two-token vocabulary:
//   logits[0] = [0, 0] predicts tokens[1] = 1: log p = −log 2
//   logits[1] = [1, 0] predicts tokens[2] = 0: log p = 1 − log(1 + e) = −log(1 + e^-1)
//   logits[2] predicts nothing (no token after the last).
torch::Tensor two_token_logits() {
  return torch::tensor({0.0, 0.0, 1.0, 0.0, 5.0, -5.0}, f64()).view({1, 3, 2});
}
torch::Tensor two_token_tokens() { return torch::tensor({0, 1, 0}, torch::kLong).view({1, 3}); }

// ---- Language modelling --------------------------------------------------------------------------

TEST_F(Losses, LmLossTwoTokenVocabByHand) {
  auto logits = two_token_logits();
  auto tokens = two_token_tokens();

  auto all = lm_loss(logits, tokens);
  EXPECT_NEAR(value(all.sum), kLog2 + kSoftplusMinus1, 1e-12);
  EXPECT_EQ(value(all.count), 2.0);
  EXPECT_NEAR(value(all.mean()), (kLog2 + kSoftplusMinus1) / 2, 1e-12);

  // The mask is on the target positions; mask[:, 0] (no prediction targets it) is ignored.
  auto last = lm_loss(logits, tokens, torch::tensor({1, 0, 1}).view({1, 3}));
  EXPECT_NEAR(value(last.sum), kSoftplusMinus1, 1e-12);
  EXPECT_EQ(value(last.count), 1.0);
  auto first = lm_loss(logits, tokens, torch::tensor({0.0, 1.0, 0.0}).view({1, 3}));
  EXPECT_NEAR(value(first.sum), kLog2, 1e-12);
  EXPECT_EQ(value(first.count), 1.0);

  auto none = lm_loss(logits, tokens, torch::zeros({1, 3}, torch::kBool));
  EXPECT_EQ(value(none.sum), 0.0);
  EXPECT_EQ(value(none.mean()), 0.0);  // not NaN
}

TEST_F(Losses, LmLossComputesInFloat32ForBf16Logits) {
  auto logits = two_token_logits().to(torch::kBFloat16);
  auto loss = lm_loss(logits, two_token_tokens());
  EXPECT_EQ(loss.sum.scalar_type(), torch::kFloat);
  // bf16 represents 0, 1, 5, −5 exactly, so only float32 rounding remains.
  EXPECT_NEAR(value(loss.sum), kLog2 + kSoftplusMinus1, 1e-6);
}

TEST_F(Losses, LmLossMatchesCrossEntropyOfShiftedBatch) {
  auto logits = torch::randn({3, 5, 11});
  auto tokens = torch::randint(11, {3, 5}, torch::kLong);
  auto reference = torch::nn::functional::cross_entropy(
      logits.slice(1, 0, 4).reshape({-1, 11}), tokens.slice(1, 1).reshape({-1}));
  EXPECT_NEAR(value(lm_loss(logits, tokens).mean()), value(reference), 1e-5);
}

TEST_F(Losses, LmLossGradientMatchesFiniteDifferences) {
  auto logits = torch::randn({2, 4, 5}, f64()).requires_grad_();
  auto tokens = torch::randint(5, {2, 4}, torch::kLong);
  auto mask = torch::tensor({1, 1, 0, 1, 0, 1, 1, 0}).view({2, 4});
  lm_loss(logits, tokens, mask).mean().backward();
  auto grad = logits.grad();

  auto x = logits.detach().clone();
  auto flat = x.view({-1});
  const double eps = 1e-6;
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double saved = flat[i].item<double>();
    flat[i] = saved + eps;
    const double plus = value(lm_loss(x, tokens, mask).mean());
    flat[i] = saved - eps;
    const double minus = value(lm_loss(x, tokens, mask).mean());
    flat[i] = saved;
    EXPECT_NEAR(grad.view({-1})[i].item<double>(), (plus - minus) / (2 * eps), 1e-8) << "at " << i;
  }
  // Logits at the last position predict nothing and masked targets contribute nothing.
  EXPECT_EQ(value(grad.select(1, 3).abs().sum()), 0.0);
  EXPECT_EQ(value(grad[0][1].abs().sum()), 0.0);  // predicts tokens[0][2], masked
}

TEST_F(Losses, TokenLogprobsMatchesLoopReference) {
  auto logits = torch::randn({2, 4, 6}, f64());
  auto tokens = torch::randint(6, {2, 4}, torch::kLong);
  auto got = token_logprobs(logits, tokens);
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{2, 3}));
  auto l = logits.accessor<double, 3>();
  auto tok = tokens.accessor<int64_t, 2>();
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t t = 0; t < 3; ++t) {
      double z = 0;
      for (int64_t v = 0; v < 6; ++v) z += std::exp(l[b][t][v]);
      const double expected = l[b][t][tok[b][t + 1]] - std::log(z);
      EXPECT_NEAR(got[b][t].item<double>(), expected, 1e-12);
    }
  }
}

TEST_F(Losses, EntropyByHand) {
  auto logits = torch::tensor({0.0, 0.0, 1.0, 0.0}, f64()).view({1, 2, 2});
  auto h = entropy_from_logits(logits);
  ASSERT_EQ(h.sizes(), (std::vector<int64_t>{1, 2}));
  const double p = 1.0 / (1.0 + std::exp(-1.0));  // softmax([1, 0])[0]
  EXPECT_NEAR(h[0][0].item<double>(), kLog2, 1e-12);
  EXPECT_NEAR(h[0][1].item<double>(), -(p * std::log(p) + (1 - p) * std::log(1 - p)), 1e-12);
  // Uniform over V has entropy log V.
  EXPECT_NEAR(value(entropy_from_logits(torch::full({1, 1, 7}, 3.0))[0][0]), std::log(7.0), 1e-6);
}

TEST_F(Losses, SequenceLogprobSumsMaskedTargets) {
  auto logits = two_token_logits().repeat({2, 1, 1});
  auto tokens = two_token_tokens().repeat({2, 1});
  auto mask = torch::tensor({1, 1, 1, 1, 0, 1}).view({2, 3});
  auto got = sequence_logprob(logits, tokens, mask);
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{2}));
  EXPECT_NEAR(got[0].item<double>(), -kLog2 - kSoftplusMinus1, 1e-12);
  EXPECT_NEAR(got[1].item<double>(), -kSoftplusMinus1, 1e-12);
  EXPECT_NEAR(value(sequence_logprob(logits, tokens)[1]), -kLog2 - kSoftplusMinus1, 1e-12);
}

TEST_F(Losses, LmShapeErrorsAreChecked) {
  EXPECT_THROW(lm_loss(torch::randn({2, 3}), torch::zeros({2, 3}, torch::kLong)), c10::Error);
  EXPECT_THROW(lm_loss(torch::randn({2, 3, 4}), torch::zeros({2, 4}, torch::kLong)), c10::Error);
  EXPECT_THROW(lm_loss(torch::randn({2, 3, 4}), torch::zeros({2, 3})), c10::Error);
  EXPECT_THROW(lm_loss(torch::randn({2, 3, 4}), torch::zeros({2, 3}, torch::kLong),
                       torch::ones({2, 2})),
               c10::Error);
}

// ---- Bradley–Terry -------------------------------------------------------------------------------

TEST_F(Losses, BradleyTerryByHand) {
  auto one = bradley_terry_loss(torch::tensor({1.0}, f64()), torch::tensor({0.0}, f64()));
  EXPECT_NEAR(value(one.loss), kSoftplusMinus1, 1e-12);
  EXPECT_EQ(value(one.accuracy), 1.0);
  EXPECT_EQ(value(one.margin), 1.0);

  auto chosen = torch::tensor({1.0, 2.0}, f64()).requires_grad_();
  auto rejected = torch::tensor({0.0, 3.0}, f64());
  auto two = bradley_terry_loss(chosen, rejected);  // differences 1 and −1
  EXPECT_NEAR(value(two.loss), (kSoftplusMinus1 + kSoftplus1) / 2, 1e-12);
  EXPECT_EQ(value(two.accuracy), 0.5);
  EXPECT_EQ(value(two.margin), 0.0);
  two.loss.backward();
  // d/dc −log σ(c − r) / B = −σ(r − c) / B
  EXPECT_NEAR(chosen.grad()[0].item<double>(), -1.0 / (1.0 + std::exp(1.0)) / 2, 1e-12);
  EXPECT_NEAR(chosen.grad()[1].item<double>(), -1.0 / (1.0 + std::exp(-1.0)) / 2, 1e-12);
}

// ---- Masked statistics ---------------------------------------------------------------------------

TEST_F(Losses, MaskedMeanAndVarByHand) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto x = torch::tensor({1.0, 2.0, 3.0, 4.0, 5.0, nan}, f64()).view({2, 3});
  auto mask = torch::tensor({1, 0, 1, 0, 1, 0}).view({2, 3});
  EXPECT_EQ(value(masked_mean(x, mask)), 3.0);  // (1 + 3 + 5) / 3; the NaN is masked out
  auto rows = masked_mean(x, mask, 1);
  EXPECT_EQ(rows[0].item<double>(), 2.0);
  EXPECT_EQ(rows[1].item<double>(), 5.0);
  EXPECT_EQ(value(masked_mean(x, torch::zeros({2, 3}))), 0.0);  // empty mask: 0, not NaN
  // Deviations −2, 0, 2: unbiased 8 / 2, biased 8 / 3.
  EXPECT_NEAR(value(masked_var(x, mask)), 4.0, 1e-12);
  EXPECT_NEAR(value(masked_var(x, mask, /*unbiased=*/false)), 8.0 / 3.0, 1e-12);
  EXPECT_EQ(value(masked_var(x, torch::tensor({1, 0, 0, 0, 0, 0}).view({2, 3}))), 0.0);
}

TEST_F(Losses, MaskedWhitenNormalisesMaskedEntriesAndLeavesTheRest) {
  auto x = torch::randn({4, 7}, f64()) * 3 + 2;
  auto mask = torch::rand({4, 7}) > 0.3;
  auto w = masked_whiten(x, mask);
  EXPECT_NEAR(value(masked_mean(w, mask)), 0.0, 1e-9);
  EXPECT_NEAR(value(masked_var(w, mask)), 1.0, 1e-6);
  EXPECT_TRUE(torch::equal(w.masked_select(~mask), x.masked_select(~mask)));

  auto scaled = masked_whiten(x, mask, /*shift_mean=*/false);
  EXPECT_NEAR(value(masked_mean(scaled, mask)), value(masked_mean(x, mask)), 1e-9);
  EXPECT_NEAR(value(masked_var(scaled, mask)), 1.0, 1e-6);
  EXPECT_TRUE(torch::equal(scaled.masked_select(~mask), x.masked_select(~mask)));
}

// ---- PPO -----------------------------------------------------------------------------------------

TEST_F(Losses, PpoPolicyLossOnConstructedRatios) {
  // ε = 0.2. Per token (ratio, advantage) -> max(−Aρ, −A clip(ρ)), clipped term chosen?
  //   (1.5, +1) -> max(−1.5, −1.2) = −1.2  clipped
  //   (0.5, +1) -> max(−0.5, −0.8) = −0.5
  //   (0.5, −1) -> max( 0.5,  0.8) =  0.8  clipped
  //   (1.5, −1) -> max( 1.5,  1.2) =  1.5
  //   (1.1, +2) -> max(−2.2, −2.2) = −2.2  (inside the range)
  //   (3.0, +5) masked out
  std::vector<double> ratios = {1.5, 0.5, 0.5, 1.5, 1.1, 3.0};
  auto logprobs = torch::tensor(ratios, f64()).log().view({2, 3}).requires_grad_();
  auto old_logprobs = torch::zeros({2, 3}, f64());
  auto advantages = torch::tensor({1.0, 1.0, -1.0, -1.0, 2.0, 5.0}, f64()).view({2, 3});
  auto mask = torch::tensor({1, 1, 1, 1, 1, 0}).view({2, 3});
  auto out = ppo_policy_loss(logprobs, old_logprobs, advantages, mask, 0.2);

  EXPECT_NEAR(value(out.loss), (-1.2 - 0.5 + 0.8 + 1.5 - 2.2) / 5, 1e-12);
  EXPECT_NEAR(value(out.clip_fraction), 2.0 / 5, 1e-12);
  double kl = 0;
  for (int i = 0; i < 5; ++i) kl += 0.5 * std::log(ratios[i]) * std::log(ratios[i]);
  EXPECT_NEAR(value(out.approx_kl), kl / 5, 1e-12);

  // d/dlogp of −Aρ is −Aρ where unclipped, 0 where the clipped term won.
  out.loss.backward();
  auto g = logprobs.grad().view({-1});
  std::vector<double> expected = {0.0, -0.5 / 5, 0.0, 1.5 / 5, -2.2 / 5, 0.0};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(g[i].item<double>(), expected[i], 1e-12) << i;
}

TEST_F(Losses, PpoValueLossOnConstructedValues) {
  // clip 0.2, old value 0.5 everywhere, so v_clipped ∈ [0.3, 0.7].
  //   v=1.0, R=1.0: (0)², (0.7−1)² = 0.09          -> 0.09 clipped
  //   v=0.6, R=0.0: 0.36, 0.36                      -> 0.36
  //   v=0.0, R=0.0: 0, (0.3)² = 0.09                -> 0.09 clipped
  //   v=1.0, R=0.0: 1, (0.7)² = 0.49                -> 1
  //   v=9.0, R=0.0: masked out
  auto values = torch::tensor({1.0, 0.6, 0.0, 1.0, 9.0}, f64()).view({1, 5});
  auto old_values = torch::full({1, 5}, 0.5, f64());
  auto returns = torch::tensor({1.0, 0.0, 0.0, 0.0, 0.0}, f64()).view({1, 5});
  auto mask = torch::tensor({1, 1, 1, 1, 0}).view({1, 5});
  auto out = ppo_value_loss(values, old_values, returns, mask, 0.2);
  EXPECT_NEAR(value(out.loss), 0.5 * (0.09 + 0.36 + 0.09 + 1.0) / 4, 1e-12);
  EXPECT_NEAR(value(out.clip_fraction), 0.5, 1e-12);
}

TEST_F(Losses, KlEstimatorsByHand) {
  auto logp = torch::tensor({std::log(0.5), std::log(0.25), std::log(0.3)}, f64());
  auto ref = torch::tensor({std::log(0.25), std::log(0.5), std::log(0.3)}, f64());
  auto k1 = kl_k1(logp, ref);
  EXPECT_NEAR(k1[0].item<double>(), kLog2, 1e-12);
  EXPECT_NEAR(k1[1].item<double>(), -kLog2, 1e-12);
  auto k3 = kl_k3(logp, ref);
  EXPECT_NEAR(k3[0].item<double>(), (0.5 - 1) + kLog2, 1e-12);  // r = 1/2
  EXPECT_NEAR(k3[1].item<double>(), (2.0 - 1) - kLog2, 1e-12);  // r = 2
  EXPECT_EQ(k3[2].item<double>(), 0.0);
  EXPECT_GE(value(kl_k3(torch::randn({64}, f64()) * 3, torch::randn({64}, f64()) * 3).min()), 0.0);
}

TEST_F(Losses, KlEstimatorsAreUnbiasedForTheExactKl) {
  // Σ_x p(x) k(x) over a whole discrete distribution is the expectation under p exactly, so both
  // estimators must equal KL(p ‖ q) computed by a loop.
  auto logp = torch::log_softmax(torch::randn({7}, f64()), 0);
  auto logq = torch::log_softmax(torch::randn({7}, f64()), 0);
  double kl = 0;
  for (int64_t i = 0; i < 7; ++i) {
    const double p = std::exp(logp[i].item<double>());
    kl += p * (logp[i].item<double>() - logq[i].item<double>());
  }
  auto p = logp.exp();
  EXPECT_NEAR(value((p * kl_k1(logp, logq)).sum()), kl, 1e-12);
  EXPECT_NEAR(value((p * kl_k3(logp, logq)).sum()), kl, 1e-12);
}

// The definition, one row at a time in double: walk the masked positions backwards.
void gae_reference(const std::vector<double>& r, const std::vector<double>& v,
                   const std::vector<int>& m, double gamma, double lambda,
                   std::vector<double>& adv, std::vector<double>& ret) {
  const size_t n = r.size();
  adv.assign(n, 0.0);
  ret.assign(n, 0.0);
  double next_value = 0, next_adv = 0;
  for (size_t i = n; i-- > 0;) {
    if (!m[i]) continue;
    const double delta = r[i] + gamma * next_value - v[i];
    adv[i] = delta + gamma * lambda * next_adv;
    ret[i] = adv[i] + v[i];
    next_value = v[i];
    next_adv = adv[i];
  }
}

TEST_F(Losses, GaeByHandUndiscounted) {
  // γ = λ = 1: the return is the sum of future rewards, 1 everywhere; advantage = 1 − 0.5.
  auto rewards = torch::tensor({0.0, 0.0, 1.0}, f64()).view({1, 3});
  auto values = torch::full({1, 3}, 0.5, f64());
  auto out = gae(rewards, values, torch::ones({1, 3}), 1.0, 1.0);
  EXPECT_TRUE(torch::allclose(out.advantages, torch::full({1, 3}, 0.5, f64())));
  EXPECT_TRUE(torch::allclose(out.returns, torch::ones({1, 3}, f64())));
}

TEST_F(Losses, GaeMatchesLoopReference) {
  const double gamma = 0.9, lambda = 0.95;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // Row 0: full. Row 1: a response of 4, right-padded. Row 2: left pad and a hole.
  std::vector<std::vector<int>> masks = {
      {1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 0, 0}, {0, 1, 1, 0, 1, 1}};
  auto rewards = torch::randn({3, 6}, f64());
  auto values = torch::randn({3, 6}, f64());
  auto mask = torch::zeros({3, 6}, torch::kLong);
  for (int b = 0; b < 3; ++b)
    for (int t = 0; t < 6; ++t) {
      mask[b][t] = masks[b][t];
      if (!masks[b][t]) {  // garbage under the mask must not matter
        rewards[b][t] = nan;
        values[b][t] = 1e6;
      }
    }
  auto out = gae(rewards, values, mask, gamma, lambda);
  for (int b = 0; b < 3; ++b) {
    std::vector<double> r(6), v(6), adv, ret;
    for (int t = 0; t < 6; ++t) {
      r[t] = rewards[b][t].item<double>();
      v[t] = values[b][t].item<double>();
    }
    gae_reference(r, v, masks[b], gamma, lambda, adv, ret);
    for (int t = 0; t < 6; ++t) {
      EXPECT_NEAR(out.advantages[b][t].item<double>(), adv[t], 1e-12) << b << "," << t;
      EXPECT_NEAR(out.returns[b][t].item<double>(), ret[t], 1e-12) << b << "," << t;
    }
  }
}

// ---- GRPO and its variants ------------------------------------------------------------------------

// Two replies, ε_low = 0.2, ε_high = 0.28 (clip range [0.8, 1.28]); per token (ρ, A) -> −min(ρA, clip(ρ)A):
//   reply 0: (1.5, +1) -> −1.28 held high;  (0.7, −1) -> 0.8 held low;  (2.0, +3) masked
//   reply 1: (1.1, +1) -> −1.1;  (0.5, +2) -> −1.0 (ρ low but A > 0: not held);
//            (1.3, −1) -> 1.3 (ρ high but A < 0: not held)
// Sums: reply 0 −0.48 over 2 tokens, reply 1 −0.8 over 3; 5 tokens in all.
struct ClipCase {
  torch::Tensor logprobs, old_logprobs, advantages, mask;
};
ClipCase clip_case() {
  ClipCase c;
  c.logprobs = torch::tensor({1.5, 0.7, 2.0, 1.1, 0.5, 1.3}, f64()).log().view({2, 3}).requires_grad_();
  c.old_logprobs = torch::zeros({2, 3}, f64());
  c.advantages = torch::tensor({1.0, -1.0, 3.0, 1.0, 2.0, -1.0}, f64()).view({2, 3});
  c.mask = torch::tensor({1, 1, 0, 1, 1, 1}).view({2, 3});
  return c;
}

GroupPolicyLoss clip_case_loss(const ClipCase& c, PolicyLossType type, double beta = 0.0,
                               const torch::Tensor& ref = torch::Tensor(), double tokens_per_rank = 0) {
  GroupPolicyLossOptions o;
  o.epsilon_low = 0.2;
  o.epsilon_high = 0.28;
  o.type = type;
  o.beta = beta;
  o.max_new_tokens = 4;
  o.tokens_per_rank = tokens_per_rank;
  return group_policy_loss(c.logprobs, c.old_logprobs, c.advantages, c.mask, ref, o);
}

TEST_F(Losses, GroupPolicyLossOfEveryTypeByHand) {
  const ClipCase c = clip_case();
  EXPECT_NEAR(value(clip_case_loss(c, PolicyLossType::grpo).loss), (-0.48 / 2 + -0.8 / 3) / 2, 1e-12);
  EXPECT_NEAR(value(clip_case_loss(c, PolicyLossType::bnpo).loss), -1.28 / 5, 1e-12);
  // dapo divides by the minibatch's tokens of every rank per rank: here this rank alone (5), then
  // as one of 2 ranks whose minibatches hold 5 + 15 tokens.
  EXPECT_NEAR(value(clip_case_loss(c, PolicyLossType::dapo, 0, {}, 5.0).loss), -1.28 / 5, 1e-12);
  EXPECT_NEAR(value(clip_case_loss(c, PolicyLossType::dapo, 0, {}, 10.0).loss), -1.28 / 10, 1e-12);
  // dr_grpo: replies × max_new_tokens = 2 × 4.
  EXPECT_NEAR(value(clip_case_loss(c, PolicyLossType::dr_grpo).loss), -1.28 / 8, 1e-12);
  const GroupPolicyLoss l = clip_case_loss(c, PolicyLossType::bnpo);
  EXPECT_NEAR(value(l.clip_low_fraction), 1.0 / 5, 1e-12);
  EXPECT_NEAR(value(l.clip_high_fraction), 1.0 / 5, 1e-12);
  EXPECT_FALSE(l.kl.defined());  // no reference, no KL
  EXPECT_THAT(testing::error_of<c10::Error>([&] { clip_case_loss(c, PolicyLossType::dapo); }),
              ::testing::HasSubstr("the dapo loss needs the minibatch's tokens per rank"));
  EXPECT_THROW(parse_policy_loss_type("ppo"), std::invalid_argument);
  EXPECT_EQ(parse_policy_loss_type("dr_grpo"), PolicyLossType::dr_grpo);
}

// β = 0.1 against a reference half as likely everywhere (r = π_ref/π = 1/2): k3 = (r − 1) − log r
// = log 2 − 0.5 on every token, and d k3/d log π = 1 − r = 0.5. The bnpo gradient is −Aρ/5 where
// the ratio is not held, 0 where it is, plus β·0.5/5 on every real token.
TEST_F(Losses, GroupPolicyLossAddsTheK3KlAndItsGradient) {
  const ClipCase c = clip_case();
  const auto ref = (c.logprobs.detach() - kLog2);
  GroupPolicyLoss l = clip_case_loss(c, PolicyLossType::bnpo, 0.1, ref);
  const double k3 = kLog2 - 0.5;
  EXPECT_NEAR(value(l.kl), k3, 1e-12);
  EXPECT_NEAR(value(l.loss), -1.28 / 5 + 0.1 * k3, 1e-12);
  l.loss.backward();
  const auto g = c.logprobs.grad().view({-1});
  const std::vector<double> expected = {0.01, 0.01, 0.0, -1.1 / 5 + 0.01, -1.0 / 5 + 0.01, 1.3 / 5 + 0.01};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(g[i].item<double>(), expected[i], 1e-12) << i;
  EXPECT_THAT(testing::error_of<c10::Error>([&] { clip_case_loss(c, PolicyLossType::bnpo, 0.1); }),
              ::testing::HasSubstr("needs the reference's log-probs"));
}

// With π_old = π (a first pass over fresh samples) the ratio is 1 everywhere: nothing is held,
// and the loss is −(token mean of A).
TEST_F(Losses, GroupPolicyLossAtRatioOneIsMinusTheMeanAdvantage) {
  const auto logp = torch::randn({3, 4}, f64());
  const auto adv = torch::randn({3, 4}, f64());
  const auto mask = torch::ones({3, 4}, f64());
  GroupPolicyLossOptions o;
  o.type = PolicyLossType::bnpo;
  const GroupPolicyLoss l = group_policy_loss(logp, logp, adv, mask, torch::Tensor(), o);
  EXPECT_NEAR(value(l.loss), -value(adv.mean()), 1e-12);
  EXPECT_EQ(value(l.clip_low_fraction), 0.0);
  EXPECT_EQ(value(l.clip_high_fraction), 0.0);
}

// ---- DPO -----------------------------------------------------------------------------------------

TEST_F(Losses, DpoByHand) {
  // Pair 0: log-ratios +1 (chosen) and −1 (rejected): z = β·2 = 0.2.
  // Pair 1: log-ratios −1 and +1: z = −0.2.
  auto pc = torch::tensor({-1.0, -5.0}, f64()).requires_grad_();
  auto pr = torch::tensor({-3.0, -5.0}, f64());
  auto rc = torch::tensor({-2.0, -4.0}, f64());
  auto rr = torch::tensor({-2.0, -6.0}, f64());
  auto out = dpo_loss(pc, pr, rc, rr, 0.1);
  const double l0 = 0.5981388693815918;  // log(1 + e^-0.2)
  const double l1 = 0.7981388693815918;  // log(1 + e^0.2)
  EXPECT_NEAR(value(out.loss), (l0 + l1) / 2, 1e-12);
  EXPECT_NEAR(out.chosen_rewards[0].item<double>(), 0.1, 1e-12);
  EXPECT_NEAR(out.chosen_rewards[1].item<double>(), -0.1, 1e-12);
  EXPECT_NEAR(out.rejected_rewards[0].item<double>(), -0.1, 1e-12);
  EXPECT_NEAR(out.rejected_rewards[1].item<double>(), 0.1, 1e-12);
  EXPECT_EQ(value(out.accuracy), 0.5);
  EXPECT_NEAR(value(out.margin), 0.0, 1e-12);
  out.loss.backward();
  // d/dpc −log σ(z) / B = −β σ(−z) / B
  EXPECT_NEAR(pc.grad()[0].item<double>(), -0.1 / (1 + std::exp(0.2)) / 2, 1e-12);
  EXPECT_NEAR(pc.grad()[1].item<double>(), -0.1 / (1 + std::exp(-0.2)) / 2, 1e-12);

  auto first = [](const torch::Tensor& t) { return t.slice(0, 0, 1); };
  auto smoothed = dpo_loss(first(pc.detach()), first(pr), first(rc), first(rr), 0.1, 0.1);
  EXPECT_NEAR(value(smoothed.loss), 0.9 * l0 + 0.1 * l1, 1e-12);
  EXPECT_EQ(value(smoothed.accuracy), 1.0);
  EXPECT_NEAR(value(smoothed.margin), 0.2, 1e-12);
}

}  // namespace
}  // namespace nurture
