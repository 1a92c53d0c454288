// Tests for pipelines/rl/advantages.h: GAE through the registry against values worked out by hand,
// whitening on one rank, and the registry's unknown-name error.
#include "pipelines/rl/advantages.h"

#include <gmock/gmock.h>

#include "modules/objectives/losses.h"
#include "pipelines/runner/registries.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using testing::f64;
using AdvantagesTest = testing::Seeded;

// rewards [1, 2, 3], values [0.5, 0.5, 0.5], all real:
//   δ_2 = 3 − 0.5 = 2.5;  δ_1 = 2 + γ·0.5 − 0.5;  δ_0 = 1 + γ·0.5 − 0.5;  A_t = δ_t + γλ·A_{t+1}.
rl::AdvantageInput three_tokens(double gamma, double lam) {
  rl::AdvantageInput in;
  in.rewards = torch::tensor({1.0, 2.0, 3.0}, f64()).view({1, 3});
  in.values = torch::full({1, 3}, 0.5, f64());
  in.mask = torch::ones({1, 3}, f64());
  in.scores = torch::tensor({3.0}, f64());
  in.gamma = gamma;
  in.lam = lam;
  return in;
}

TEST_F(AdvantagesTest, GaeIsRegisteredAndMatchesHandComputedValues) {
  const rl::AdvantageEstimator& gae = registries().advantages.get("gae");
  // γ = λ = 1: A = [5.5, 4.5, 2.5], returns A + V = [6, 5, 3].
  rl::Advantages a = gae(three_tokens(1.0, 1.0));
  EXPECT_LT(testing::max_abs(a.advantages - torch::tensor({5.5, 4.5, 2.5}, f64()).view({1, 3})), 1e-12);
  EXPECT_LT(testing::max_abs(a.returns - torch::tensor({6.0, 5.0, 3.0}, f64()).view({1, 3})), 1e-12);
  // γ = 0.9, λ = 0.5: δ = [0.95, 1.95, 2.5]; A_2 = 2.5, A_1 = 1.95 + 0.45·2.5 = 3.075,
  // A_0 = 0.95 + 0.45·3.075 = 2.33375.
  a = gae(three_tokens(0.9, 0.5));
  EXPECT_LT(testing::max_abs(a.advantages - torch::tensor({2.33375, 3.075, 2.5}, f64()).view({1, 3})), 1e-12);
}

TEST_F(AdvantagesTest, GaeSkipsMaskedPositionsAndNeedsValues) {
  rl::AdvantageInput in = three_tokens(1.0, 1.0);
  in.mask = torch::tensor({1.0, 1.0, 0.0}, f64()).view({1, 3});
  in.rewards = in.rewards * in.mask;
  // The reply ends at position 1: δ_1 = 2 − 0.5 = 1.5, δ_0 = 1 + 0.5 − 0.5 = 1, A = [2.5, 1.5, 0].
  const rl::Advantages a = rl::gae_advantages(in);
  EXPECT_LT(testing::max_abs(a.advantages - torch::tensor({2.5, 1.5, 0.0}, f64()).view({1, 3})), 1e-12);
  in.values = torch::Tensor();
  EXPECT_THAT(testing::error_of<c10::Error>([&] { rl::gae_advantages(in); }), ::testing::HasSubstr("needs a critic"));
}

TEST_F(AdvantagesTest, WhitenOverOneRankIsMaskedWhiten) {
  const auto x = torch::randn({4, 5}, f64());
  const auto mask = (torch::rand({4, 5}, f64()) > 0.3).to(torch::kFloat);
  EXPECT_TRUE(torch::equal(rl::whiten_over_ranks(x, mask), masked_whiten(x, mask)));
  // The masked entries have mean 0 and unbiased variance 1.
  const auto w = rl::whiten_over_ranks(x, mask);
  EXPECT_NEAR(masked_mean(w, mask).item<double>(), 0.0, 1e-9);
  EXPECT_NEAR(masked_var(w, mask).item<double>(), 1.0, 1e-6);
}

TEST_F(AdvantagesTest, UnknownEstimatorNamesTheKnownOnes) {
  const std::string message =
      testing::error_of<std::invalid_argument>([] { registries().advantages.get("gea"); });
  EXPECT_THAT(message, ::testing::HasSubstr("unknown advantage estimator 'gea' (known: gae"));
  EXPECT_THAT(message, ::testing::HasSubstr("did you mean 'gae'?"));
}

}  // namespace
}  // namespace nurture
