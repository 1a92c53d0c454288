// Tests for pipelines/rl/kl.h: the estimators, the adaptive controller and the per-token rewards,
// against numbers worked out by hand.
#include "pipelines/rl/kl.h"

#include <gmock/gmock.h>

#include <cmath>

#include "tests/test_util.h"

namespace nurture {
namespace {

using testing::f64;

TEST(KlController, EstimatorsOnKnownLogProbs) {
  const auto logprobs = torch::tensor({std::log(0.5), std::log(0.25)}, f64()).view({1, 2});
  const auto ref = torch::tensor({std::log(0.25), std::log(0.25)}, f64()).view({1, 2});
  const auto mask = torch::tensor({1.0, 0.0}, f64()).view({1, 2});
  // k1 = log π − log π_ref = log 2; k3 = (r − 1) − log r with r = 0.5: −0.5 + log 2.
  const auto k1 = rl::KlController({0.1, rl::KlEstimator::k1}).per_token(logprobs, ref, mask);
  EXPECT_NEAR(k1[0][0].item<double>(), std::log(2.0), 1e-12);
  EXPECT_EQ(k1[0][1].item<double>(), 0.0);  // masked
  const auto k3 = rl::KlController({0.1, rl::KlEstimator::k3}).per_token(logprobs, ref, mask);
  EXPECT_NEAR(k3[0][0].item<double>(), -0.5 + std::log(2.0), 1e-12);
  EXPECT_EQ(rl::parse_kl_estimator("k3"), rl::KlEstimator::k3);
  EXPECT_THAT(testing::error_of<std::invalid_argument>([] { rl::parse_kl_estimator("k2"); }),
              ::testing::HasSubstr("unknown KL estimator 'k2' (known: k1, k3)"));
}

TEST(KlController, AdaptiveBetaFollowsTheProportionalController) {
  // KL 9 against target 6: error clip(0.5, ±0.2) = 0.2, β ← 0.1·(1 + 0.2·64/100) = 0.1128.
  rl::KlController kl({0.1, rl::KlEstimator::k1, /*adaptive=*/true, /*target=*/6.0, /*horizon=*/100});
  kl.update(9.0, 64);
  EXPECT_NEAR(kl.beta(), 0.1128, 1e-15);
  // KL 5.4: error −0.1, β ← 0.1128·(1 − 0.1·0.5).
  kl.update(5.4, 50);
  EXPECT_NEAR(kl.beta(), 0.1128 * 0.95, 1e-15);
  rl::KlController fixed({0.1, rl::KlEstimator::k1, /*adaptive=*/false});
  fixed.update(100.0, 64);
  EXPECT_EQ(fixed.beta(), 0.1);
  EXPECT_EQ(fixed.describe(), "β 0.1000 (k1, fixed)");
  EXPECT_EQ(kl.describe(), "β 0.1000 (k1, adaptive to 6.00)");
}

TEST(KlController, RewardsAreThePenaltyPlusTheScoreAtTheLastToken) {
  const auto kl = torch::tensor({1.0, 2.0, 0.0, 4.0, 0.0, 0.0}, f64()).view({2, 3});
  const auto mask = torch::tensor({1.0, 1.0, 0.0, 1.0, 0.0, 0.0}, f64()).view({2, 3});
  const auto scores = torch::tensor({10.0, -1.0}, f64());
  // Row 0 ends at position 1, row 1 at position 0; β = 0.5.
  const auto expected = torch::tensor({-0.5, -1.0 + 10.0, 0.0, -2.0 - 1.0, 0.0, 0.0}, f64()).view({2, 3});
  EXPECT_TRUE(torch::allclose(rl::kl_penalized_rewards(kl, scores, mask, 0.5), expected));
}

}  // namespace
}  // namespace nurture
