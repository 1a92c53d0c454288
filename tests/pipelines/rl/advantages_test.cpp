// Tests for pipelines/rl/advantages.h: GAE and the critic-free estimators (grpo with each scaling,
// rloo, reinforce_baseline) through the registry against values worked out by hand, whitening on
// one rank, and the registry's unknown-name error.
#include "pipelines/rl/advantages.h"

#include <gmock/gmock.h>

#include <cmath>
#include <vector>

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

// Two groups of G = 4, two response tokens each (the second reply of each group has one):
// scores [1, 0, 0, 1 | 1, 1, 1, 1]. The first group's mean is 0.5, its unbiased std √(1/3); the
// second's rewards are all equal, so its advantages are 0 whatever the estimator.
rl::AdvantageInput two_groups(rl::RewardScaling scale = rl::RewardScaling::group) {
  rl::AdvantageInput in;
  in.scores = torch::tensor({1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0}, f64());
  in.mask = torch::ones({8, 2}, f64());
  in.mask[1][1] = 0;
  in.mask[5][1] = 0;
  in.group_size = 4;
  in.scale = scale;
  return in;
}

// Each reply's advantage on its real tokens, 0 on the rest.
torch::Tensor per_token(const std::vector<double>& per_reply, const torch::Tensor& mask) {
  return torch::tensor(per_reply, f64()).unsqueeze(1) * mask;
}

TEST_F(AdvantagesTest, GrpoDividesByTheGroupsTheBatchsOrNoStd) {
  const auto& grpo = registries().advantages.get("grpo");
  const rl::AdvantageInput in = two_groups();
  const double a = 0.5 / (std::sqrt(1.0 / 3.0) + 1e-4);
  EXPECT_LT(testing::max_abs(grpo(in).advantages - per_token({a, -a, -a, a, 0, 0, 0, 0}, in.mask)), 1e-12);
  EXPECT_FALSE(grpo(in).returns.defined());
  // batch: the std of all 8 scores (mean 0.75): √((6·0.0625 + 2·0.5625)/7) = √(1.5/7).
  const double b = 0.5 / (std::sqrt(1.5 / 7.0) + 1e-4);
  EXPECT_LT(testing::max_abs(grpo(two_groups(rl::RewardScaling::batch)).advantages -
                             per_token({b, -b, -b, b, 0, 0, 0, 0}, in.mask)),
            1e-12);
  // none (Dr. GRPO): the centred scores themselves.
  EXPECT_LT(testing::max_abs(grpo(two_groups(rl::RewardScaling::none)).advantages -
                             per_token({0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0}, in.mask)),
            1e-12);
  EXPECT_EQ(rl::parse_reward_scaling("batch"), rl::RewardScaling::batch);
  EXPECT_THROW(rl::parse_reward_scaling("rank"), std::invalid_argument);
}

// rloo: r_i − mean of the other three: 1 − 1/3 = 2/3 for a 1, 0 − 2/3 for a 0.
TEST_F(AdvantagesTest, RlooLeavesOneOut) {
  const rl::AdvantageInput in = two_groups();
  const double t = 2.0 / 3.0;
  EXPECT_LT(testing::max_abs(registries().advantages.get("rloo")(in).advantages -
                             per_token({t, -t, -t, t, 0, 0, 0, 0}, in.mask)),
            1e-12);
  rl::AdvantageInput one = in;
  one.group_size = 1;
  EXPECT_THAT(testing::error_of<c10::Error>([&] { rl::rloo_advantages(one); }),
              ::testing::HasSubstr("needs group_size >= 2"));
}

// reinforce_baseline: r − group mean (±0.5, or 0) on every real token, then whitened over the 14
// real tokens. The replies' lengths differ, so the tokens' mean is not 0 but (2 − 1 − 2 + 2)·0.5/14
// = 1/28, and the equal-score group gets a small advantage too (as OpenRLHF's token whitening does).
TEST_F(AdvantagesTest, ReinforceBaselineWhitensTheCentredScoresOverTokens) {
  const rl::AdvantageInput in = two_groups();
  const std::vector<double> centred = {0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0};
  const double mean = 1.0 / 28.0;
  double square = 0;
  for (int i = 0; i < 8; ++i) square += (i == 1 || i == 5 ? 1 : 2) * (centred[i] - mean) * (centred[i] - mean);
  const double std = std::sqrt(square / 13 + 1e-8);
  std::vector<double> expected;
  for (double c : centred) expected.push_back((c - mean) / std);
  const auto got = registries().advantages.get("reinforce_baseline")(in).advantages;
  EXPECT_LT(testing::max_abs(got - per_token(expected, in.mask)), 1e-12);
  EXPECT_NEAR(masked_mean(got, in.mask).item<double>(), 0.0, 1e-12);
}

TEST_F(AdvantagesTest, GroupsMustDivideTheRollout) {
  rl::AdvantageInput in = two_groups();
  in.group_size = 3;
  EXPECT_THAT(testing::error_of<c10::Error>([&] { rl::grpo_advantages(in); }),
              ::testing::HasSubstr("group_size 3 does not divide the rollout's 8 rows"));
}

TEST_F(AdvantagesTest, UnknownEstimatorNamesTheKnownOnes) {
  const std::string message =
      testing::error_of<std::invalid_argument>([] { registries().advantages.get("gea"); });
  EXPECT_THAT(message, ::testing::HasSubstr("unknown advantage estimator 'gea' (known: gae"));
  EXPECT_THAT(message, ::testing::HasSubstr("did you mean 'gae'?"));
}

}  // namespace
}  // namespace nurture
