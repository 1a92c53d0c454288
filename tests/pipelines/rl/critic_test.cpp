// The critic: on the backbone of a language model with its value head zeroed, V = 0 on every
// response position; its values are the value model's at the positions before each response token,
// in any chunking; one update on its clipped loss moves V towards the returns.
#include "pipelines/rl/critic.h"

#include <gtest/gtest.h>

#include "pipelines/rl/logprobs.h"
#include "pipelines/train/trainer.h"
#include "tests/test_util.h"
#include "tests/tiny_world.h"

namespace nurture {
namespace {

using namespace nurture::testing;
namespace fs = std::filesystem;

class CriticTest : public Seeded {
 protected:
  void SetUp() override {
    Seeded::SetUp();
    const fs::path dir = scratch_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    const Tokenizer tokenizer = train_tiny_tokenizer(dir, "the red cat sat on the blue mat.\n");
    lm_dir_ = save_random_lm(dir / "lm", preset("llama_micro").block_size(16), tokenizer, /*seed=*/2);
    r_.prompt_length = 2;
    r_.response_length = 3;
    r_.tokens = torch::tensor({5, 6, 7, 8, 9, 10, 11, 12, 13, 0}, torch::kLong).view({2, 5});
    r_.attention_mask = torch::tensor({1, 1, 1, 1, 1, 1, 1, 1, 1, 0}, torch::kLong).view({2, 5});
    r_.response_mask = torch::tensor({1, 1, 1, 1, 1, 0}, torch::kFloat).view({2, 3});
  }
  fs::path lm_dir_;
  rl::Rollout r_;
};

TEST_F(CriticTest, StartsAtZeroAndReadsThePositionBeforeEachResponseToken) {
  rl::Critic critic(lm_dir_, torch::kCPU, torch::kFloat);
  EXPECT_EQ(max_abs(critic.values(r_, 2)), 0.0);
  {
    torch::NoGradGuard no_grad;
    critic.model()->value_head->weight.normal_();
    critic.model()->value_head->bias.fill_(0.5);
  }
  const auto values = critic.values(r_, /*chunk=*/1);
  torch::NoGradGuard no_grad;
  const auto full = critic.model()->forward(r_.tokens, r_.attention_mask);  // [B, T]
  EXPECT_LT(max_abs(values - full.narrow(1, 1, 3) * r_.response_mask), 1e-5);  // float32
  EXPECT_EQ(values[1][2].item<double>(), 0.0);  // off the response mask
  EXPECT_LT(max_abs(critic.values(r_, 2) - values), 1e-5);
}

TEST_F(CriticTest, AnUpdateMovesTheValuesTowardsTheReturns) {
  rl::Critic critic(lm_dir_, torch::kCPU, torch::kFloat);
  TrainingOptions options;
  options.lr = 1e-2;
  critic.setup_optimizer(options);
  r_.values = critic.values(r_, 2);
  r_.returns = torch::ones({2, 3}) * r_.response_mask;
  const rl::RolloutRows all = rl::select_rows(r_, torch::arange(2));
  const ValueLoss before = critic.loss(r_, all, /*value_clip=*/10.0);
  EXPECT_NEAR(before.loss.item<double>(), 0.5, 1e-6);  // ½ · mean (0 − 1)²
  NonFiniteGuard guard("critic", 5);
  critic.trainer().step(before.loss, guard, 0, "none");
  const auto after = critic.values(r_, 2);
  EXPECT_GT(after.sum().item<double>(), 0.0);  // towards the returns of 1
  EXPECT_LT(critic.loss(r_, all, 10.0).loss.item<double>(), 0.5);
}

}  // namespace
}  // namespace nurture
