// Tests of the reward and value heads: the score is read at the last real token whatever the
// padding side, values are per token, and backbones copy over from a language model.
#include "modules/model/heads.h"

#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace nurture {
namespace {

class HeadsTest : public testing::Seeded {};

TransformerOptions small_llama() {
  return preset("llama_micro").vocab_size(61).block_size(16).n_layer(2).n_head(4).n_kv_head(2).n_embd(16);
}

using testing::max_abs;

TEST_F(HeadsTest, LastTokenIndexForLeftAndRightPadding) {
  auto mask =
      torch::tensor({{0, 0, 1, 1, 1}, {1, 1, 1, 0, 0}, {1, 1, 1, 1, 1}, {0, 0, 0, 0, 0}}, torch::kLong);
  auto last = last_token_index(mask, 4, 5, torch::kCPU);
  EXPECT_TRUE(torch::equal(last, torch::tensor({4, 2, 4, 0}, torch::kLong)));
  EXPECT_TRUE(torch::equal(last_token_index({}, 2, 5, torch::kCPU), torch::tensor({4, 4}, torch::kLong)));
}

TEST_F(HeadsTest, RewardIsScoreAtLastRealToken) {
  torch::NoGradGuard no_grad;
  RewardModel model(small_llama());
  model->to(torch::kDouble);
  model->eval();
  auto a = torch::randint(1, 61, {6}), b = torch::randint(1, 61, {3});
  // Right padding: row 0 full, row 1 = b then padding. Left padding: row 1 = padding then b.
  auto right = torch::zeros({2, 6}, torch::kLong), left = torch::zeros({2, 6}, torch::kLong);
  right[0].copy_(a), left[0].copy_(a);
  right[1].narrow(0, 0, 3).copy_(b), left[1].narrow(0, 3, 3).copy_(b);
  auto right_mask = (right != 0).to(torch::kLong), left_mask = (left != 0).to(torch::kLong);

  auto right_scores = model->forward(right, right_mask);  // [B]
  auto left_scores = model->forward(left, left_mask);
  ASSERT_EQ(right_scores.sizes(), torch::IntArrayRef({2}));

  // By hand: the backbone's hidden state at the last real token, through the score head.
  auto hidden = model->transformer->hidden_states(right, right_mask);  // [2, 6, C]
  auto w = model->score->weight.squeeze(0);
  const double bias = model->score->bias.item<double>();
  EXPECT_NEAR(right_scores[0].item<double>(), (hidden[0][5] * w).sum().item<double>() + bias, 1e-12);
  EXPECT_NEAR(right_scores[1].item<double>(), (hidden[1][2] * w).sum().item<double>() + bias, 1e-12);
  // Same sequences, other padding side: same scores; and b alone gives the same score too.
  EXPECT_LE(max_abs(left_scores - right_scores), 1e-10);
  EXPECT_NEAR(model->forward(b.unsqueeze(0)).item<double>(), right_scores[1].item<double>(), 1e-10);
  // Scores are not all the same: the head reads different tokens.
  EXPECT_GT(std::abs(right_scores[0].item<double>() - right_scores[1].item<double>()), 1e-6);
}

TEST_F(HeadsTest, ValueHeadGivesPerTokenValues) {
  torch::NoGradGuard no_grad;
  ValueModel model(small_llama());
  model->to(torch::kDouble);
  model->eval();
  auto idx = torch::randint(1, 61, {3, 7});
  auto mask = torch::ones({3, 7}, torch::kLong);
  mask[2].narrow(0, 0, 2).zero_();
  auto values = model->forward(idx, mask);
  ASSERT_EQ(values.sizes(), torch::IntArrayRef({3, 7}));
  auto hidden = model->transformer->hidden_states(idx, mask);
  auto expected = torch::matmul(hidden, model->value_head->weight.squeeze(0)) + model->value_head->bias;
  EXPECT_LE(max_abs(values - expected), 1e-12);
  EXPECT_GT(values.std().item<double>(), 1e-3);
  auto names = model->named_parameters().keys();
  EXPECT_NE(std::find(names.begin(), names.end(), "value_head.weight"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "transformer.wte.weight"), names.end());
}

TEST_F(HeadsTest, LoadBackboneCopiesTheLanguageModel) {
  torch::NoGradGuard no_grad;
  Transformer lm(small_llama());
  RewardModel reward(small_llama());
  ValueModel value(small_llama());
  reward->load_backbone(lm);
  value->load_backbone(lm);
  auto idx = torch::randint(0, 61, {2, 5});
  EXPECT_TRUE(torch::equal(reward->transformer->hidden_states(idx), lm->hidden_states(idx)));
  EXPECT_TRUE(torch::equal(value->transformer->hidden_states(idx), lm->hidden_states(idx)));
  // A copy, not a share.
  lm->named_parameters()["wte.weight"].add_(1.0);
  EXPECT_FALSE(torch::equal(reward->transformer->hidden_states(idx), lm->hidden_states(idx)));
  // Mismatched shapes are refused with the parameter's name.
  Transformer wider(small_llama().n_embd(32));
  try {
    reward->load_backbone(wider);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("wte.weight"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace nurture
