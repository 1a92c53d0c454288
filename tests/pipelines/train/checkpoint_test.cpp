// Checkpoints: a saved module, optimizer and training state load back exactly; only the newest
// `keep` stay; a half-written (.tmp) directory is ignored; a damaged newest checkpoint falls back to
// the one before it; weights of another shape are an error naming the checkpoint.
#include "pipelines/train/checkpoint.h"

#include <gmock/gmock.h>

#include <fstream>

#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

class CheckpointTest : public Seeded {
 protected:
  void SetUp() override {
    Seeded::SetUp();
    dir_ = scratch_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  // A checkpoint of `model` (one AdamW step taken) at `step`.
  fs::path save(torch::nn::Linear& model, int64_t step, int64_t keep = 2) {
    torch::optim::AdamW adam(model->parameters(), torch::optim::AdamWOptions(0.1));
    model->forward(torch::ones({1, 3})).sum().backward();
    adam.step();
    TrainingState state;
    state.step = step;
    state.data_position = 10 * step;
    state.tokens = 100 * step;
    state.extra["kl_coef"] = 0.25;
    return save_checkpoint(dir_, {{"model", model.get()}}, {{"optimizer", &adam}}, state, keep);
  }
  fs::path dir_;
};

TEST_F(CheckpointTest, WhatWasSavedLoadsBackExactly) {
  torch::nn::Linear model(3, 2);
  const fs::path saved = save(model, 7);
  EXPECT_EQ(saved, checkpoints_dir(dir_) / "step-00000007");
  torch::nn::Linear fresh(3, 2);
  torch::optim::AdamW adam(fresh->parameters(), torch::optim::AdamWOptions(0.1));
  TrainingState state;
  ASSERT_TRUE(load_checkpoint(dir_, {{"model", fresh.get()}}, {{"optimizer", &adam}}, state, "test"));
  EXPECT_TRUE(fresh->weight.equal(model->weight));
  EXPECT_TRUE(fresh->bias.equal(model->bias));
  EXPECT_EQ(state.step, 7);
  EXPECT_EQ(state.data_position, 70);
  EXPECT_EQ(state.tokens, 700);
  EXPECT_EQ(state.extra["kl_coef"], 0.25);
  TrainingState none;
  EXPECT_FALSE(load_checkpoint(dir_ / "other", {{"model", fresh.get()}}, {}, none, "test"));
}

TEST_F(CheckpointTest, TheNewestKeepStayAndHalfWrittenOnesAreIgnored) {
  torch::nn::Linear model(3, 2);
  for (int64_t step : {1, 2, 3}) save(model, step, /*keep=*/2);
  fs::create_directories(checkpoints_dir(dir_) / "step-00000009.tmp");
  const auto listed = list_checkpoints(dir_);
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].filename(), "step-00000003");
  EXPECT_EQ(listed[1].filename(), "step-00000002");
}

TEST_F(CheckpointTest, ADamagedNewestFallsBackAndAnotherShapeIsAnError) {
  torch::nn::Linear model(3, 2);
  save(model, 1);
  const torch::Tensor at_step_1 = model->weight.clone();
  const fs::path newest = save(model, 2);
  {
    std::ofstream damage(newest / "model.pt", std::ios::binary | std::ios::trunc);
    damage << "not a tensor archive";
  }
  torch::nn::Linear fresh(3, 2);
  TrainingState state;
  ASSERT_TRUE(load_checkpoint(dir_, {{"model", fresh.get()}}, {}, state, "test"));
  EXPECT_EQ(state.step, 1);
  EXPECT_TRUE(fresh->weight.equal(at_step_1));

  torch::nn::Linear wider(4, 2);
  TrainingState other;
  const std::string error =
      error_of<std::runtime_error>([&] { load_checkpoint(dir_, {{"model", wider.get()}}, {}, other, "test"); });
  EXPECT_THAT(error, HasSubstr((checkpoints_dir(dir_) / "step-00000001" / "model.pt").string() +
                               ": cannot resume from this checkpoint ("));
}

}  // namespace
}  // namespace nurture
