// The numbers of an on-policy iteration on a rollout made by hand, against values worked out
// below: per-reply reward = score − β·Σ_t KL_t, per-token means over the response mask only.
#include "pipelines/rl/metrics.h"

#include <gtest/gtest.h>

#include <cmath>

#include "pipelines/runtime/stop.h"

namespace nurture {
namespace {

rl::Rollout two_replies() {
  rl::Rollout r;
  r.tokens = torch::zeros({2, 5}, torch::kLong);
  r.response_mask = torch::tensor({1, 1, 1, 1, 1, 0}, torch::kFloat).view({2, 3});
  r.kl = torch::tensor({0.1, 0.2, 0.3, 0.4, 0.5, 0.0}, torch::kFloat).view({2, 3});  // Σ: 0.6, 0.9
  r.scores = torch::tensor({1.0, 3.0}, torch::kFloat);
  r.stopped = torch::tensor({true, false});
  r.entropy = torch::tensor({1, 2, 3, 4, 5, 99}, torch::kFloat).view({2, 3});  // 99 is masked out
  return r;
}

TEST(IterationMetrics, KnownValuesOfAHandMadeRollout) {
  rl::Rollout r = two_replies();
  r.values = torch::tensor({1, 1, 1, 2, 2, 50}, torch::kFloat).view({2, 3});
  r.returns = torch::tensor({0, 0, 0, 0, 5, 50}, torch::kFloat).view({2, 3});
  const rl::IterationMetrics m = rl::iteration_metrics(r, rl::UpdateStats{}, /*beta=*/0.5, "test iteration 1");
  const auto& j = m.metrics;
  // rewards: 1 − 0.5·0.6 = 0.7 and 3 − 0.5·0.9 = 2.55
  EXPECT_NEAR(j["reward_mean"].get<double>(), 1.625, 1e-6);
  EXPECT_NEAR(j["reward_std"].get<double>(), 0.925, 1e-6);
  EXPECT_NEAR(j["score_mean"].get<double>(), 2.0, 1e-6);
  EXPECT_NEAR(j["score_std"].get<double>(), 1.0, 1e-6);
  EXPECT_NEAR(j["kl"].get<double>(), 0.75, 1e-6);
  EXPECT_EQ(j["kl_coef"].get<double>(), 0.5);
  EXPECT_NEAR(j["entropy"].get<double>(), 3.0, 1e-6);  // (1 + 2 + 3 + 4 + 5) / 5
  EXPECT_NEAR(j["response_length"].get<double>(), 2.5, 1e-9);
  EXPECT_NEAR(j["stopped_fraction"].get<double>(), 0.5, 1e-9);
  EXPECT_NEAR(j["value_mean"].get<double>(), 7.0 / 5, 1e-6);
  EXPECT_NEAR(j["return_mean"].get<double>(), 1.0, 1e-6);
  EXPECT_EQ(j["policy_loss"].get<double>(), 0.0);  // no update was added
  EXPECT_FALSE(m.stop);
}

// A critic-free rollout has no value numbers; a stop request on any rank comes back with them.
TEST(IterationMetrics, NoCriticNoValuesAndTheStopRequestTravelsAlong) {
  request_stop();
  const rl::IterationMetrics m = rl::iteration_metrics(two_replies(), rl::UpdateStats{}, 0.0, "test iteration 2");
  clear_stop_request();
  EXPECT_TRUE(m.stop);
  EXPECT_FALSE(m.metrics.contains("value_mean"));
  EXPECT_FALSE(m.metrics.contains("return_mean"));
  EXPECT_NEAR(m.metrics["reward_mean"].get<double>(), 2.0, 1e-6);  // β = 0: the score
}

}  // namespace
}  // namespace nurture
