// Tests for pipelines/rl/policy_update.h: the clipped policy loss of a real model at ratios set by
// hand, and the seeded minibatches.
#include "pipelines/rl/policy_update.h"

#include <gmock/gmock.h>

#include <cmath>
#include <set>

#include "tests/test_util.h"

namespace nurture {
namespace {

using testing::f64;
using PolicyUpdateTest = testing::Seeded;

Transformer tiny_policy() {
  Transformer model(TransformerOptions().vocab_size(16).block_size(16).n_layer(1).n_head(2).n_embd(8));
  model->to(torch::kDouble);
  model->eval();
  return model;
}

// Two rows: a 2-token prompt, then 3 response tokens (the second row's last one is padding).
rl::Rollout two_rows() {
  rl::Rollout r;
  r.tokens = torch::tensor({1, 2, 3, 4, 5, 6, 7, 8, 9, 0}, torch::kLong).view({2, 5});
  r.attention_mask = torch::tensor({1, 1, 1, 1, 1, 1, 1, 1, 1, 0}, torch::kLong).view({2, 5});
  r.response_mask = torch::tensor({1, 1, 1, 1, 1, 0}, torch::kFloat64).view({2, 3});
  r.prompt_length = 2;
  r.response_length = 3;
  return r;
}

TEST_F(PolicyUpdateTest, ClippedLossAtKnownRatios) {
  Transformer policy = tiny_policy();
  rl::Rollout r = two_rows();
  const auto logprobs = rl::rollout_logprobs(policy, r, /*chunk=*/1, /*temperature=*/1.0);
  // π_old = π / ρ with ρ chosen per token; advantages ±1.
  const auto ratio = torch::tensor({1.5, 0.5, 1.1, 0.7, 1.0, 1.0}, f64()).view({2, 3});
  r.logprobs = (logprobs - ratio.log()) * r.response_mask;
  r.advantages = torch::tensor({1.0, -1.0, 1.0, -1.0, 2.0, 0.0}, f64()).view({2, 3});
  const auto mb = rl::select_rows(r, torch::tensor({0, 1}, torch::kLong));
  const PolicyLoss loss = rl::clipped_policy_loss(policy, r, mb, 1.0, 0.2);
  // max(−A·ρ, −A·clip(ρ, 0.8, 1.2)) per token:
  //   A=1, ρ=1.5: max(−1.5, −1.2) = −1.2 (clipped);  A=−1, ρ=0.5: max(0.5, 0.8) = 0.8 (clipped);
  //   A=1, ρ=1.1: −1.1;  A=−1, ρ=0.7: max(0.7, 0.8) = 0.8 (clipped);  A=2, ρ=1: −2.
  EXPECT_NEAR(loss.loss.item<double>(), (-1.2 + 0.8 - 1.1 + 0.8 - 2.0) / 5.0, 1e-9);
  EXPECT_NEAR(loss.clip_fraction.item<double>(), 3.0 / 5.0, 1e-9);
  EXPECT_TRUE(loss.loss.requires_grad());
}

TEST_F(PolicyUpdateTest, MinibatchesCoverEveryRowOncePerEpochInASeededOrder) {
  std::vector<std::vector<int64_t>> first, again;
  auto collect = [](std::vector<std::vector<int64_t>>& out) {
    return [&out](const torch::Tensor& rows) {
      out.emplace_back(rows.data_ptr<int64_t>(), rows.data_ptr<int64_t>() + rows.numel());
    };
  };
  rl::for_each_minibatch(10, 4, 2, /*seed=*/5, /*iteration=*/3, torch::kCPU, collect(first));
  rl::for_each_minibatch(10, 4, 2, 5, 3, torch::kCPU, collect(again));
  EXPECT_EQ(first, again);
  ASSERT_EQ(first.size(), 6u);  // 4 + 4 + 2 rows, twice
  EXPECT_EQ(first[2].size(), 2u);
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::set<int64_t> seen;
    for (int k = 0; k < 3; ++k) seen.insert(first[epoch * 3 + k].begin(), first[epoch * 3 + k].end());
    EXPECT_EQ(seen.size(), 10u);
  }
  std::vector<std::vector<int64_t>> other;
  rl::for_each_minibatch(10, 4, 2, 5, 4, torch::kCPU, collect(other));
  EXPECT_NE(first, other);  // another iteration shuffles differently
}

}  // namespace
}  // namespace nurture
