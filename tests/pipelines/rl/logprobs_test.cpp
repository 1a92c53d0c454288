// Log-prob recomputation on a rollout: the log-probability of every response token equals the
// full forward pass's log-softmax at the position before it (divided by the temperature), in any
// chunking, 0 off the response mask; the entropy with it.
#include "pipelines/rl/logprobs.h"

#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace nurture {
namespace {

using namespace nurture::testing;

class LogprobsTest : public Seeded {
 protected:
  // Two rows: a left-padded prompt of 2 then 3 reply tokens, the second reply one token shorter.
  void SetUp() override {
    Seeded::SetUp();
    model_ = Transformer(preset("llama_micro").vocab_size(40).block_size(16));
    model_->to(torch::kDouble);
    model_->eval();
    r_.prompt_length = 3;
    r_.response_length = 3;
    r_.tokens = torch::tensor({0, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 0}, torch::kLong).view({2, 6});
    r_.attention_mask = torch::tensor({0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0}, torch::kLong).view({2, 6});
    r_.response_mask = torch::tensor({1, 1, 1, 1, 1, 0}, torch::kDouble).view({2, 3});
  }
  Transformer model_{nullptr};
  rl::Rollout r_;
};

TEST_F(LogprobsTest, EachResponseTokenIsScoredByThePositionBeforeIt) {
  const double temperature = 0.7;
  torch::NoGradGuard no_grad;
  const auto full = torch::log_softmax(model_->forward(r_.tokens, r_.attention_mask) / temperature, -1);  // [B, T, V]
  torch::Tensor entropy;
  const auto logprobs = rl::rollout_logprobs(model_, r_, /*chunk=*/2, temperature, &entropy);
  ASSERT_EQ(logprobs.sizes(), (std::vector<int64_t>{2, 3}));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < 3; ++i) {
      const double masked = r_.response_mask[b][i].item<double>();
      const auto dist = full[b][r_.prompt_length - 1 + i];
      const double expected = dist[r_.tokens[b][r_.prompt_length + i].item<int64_t>()].item<double>() * masked;
      EXPECT_NEAR(logprobs[b][i].item<double>(), expected, 1e-10) << b << "," << i;
      const double h = -(dist.exp() * dist).sum().item<double>() * masked;
      EXPECT_NEAR(entropy[b][i].item<double>(), h, 1e-10) << b << "," << i;
    }
  EXPECT_EQ(logprobs[1][2].item<double>(), 0.0);
}

TEST_F(LogprobsTest, ChunksAndSelectedRowsGiveTheSameNumbers) {
  const auto whole = rl::rollout_logprobs(model_, r_, 2, 1.0);
  EXPECT_LT(max_abs(rl::rollout_logprobs(model_, r_, 1, 1.0) - whole), 1e-12);
  const rl::RolloutRows second = rl::select_rows(r_, torch::tensor({1}, torch::kLong));
  EXPECT_TRUE(second.tokens.equal(r_.tokens.narrow(0, 1, 1)));
  torch::NoGradGuard no_grad;
  const auto logits = rl::response_logits(model_, second.tokens, second.attention_mask, 3, 3, 1.0);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{1, 4, 40}));  // N + 1 positions
  const auto one = rl::response_logprobs(logits, second.tokens, 3, 3) * second.response_mask;
  EXPECT_LT(max_abs(one[0] - whole[1]), 1e-12);
}

}  // namespace
}  // namespace nurture
