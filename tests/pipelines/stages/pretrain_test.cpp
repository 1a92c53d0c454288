// The pretrain stage: a random model trained on patterned text ends below the text's unigram
// entropy (it uses context), and its saved model reproduces the stage's own held-out loss over the
// stage's token shard; a window longer than the model is an error naming the key.
#include <gmock/gmock.h>

#include "modules/model/model_dir.h"
#include "modules/objectives/losses.h"
#include "pipelines/data/data.h"
#include "tests/recipe_files.h"
#include "tests/tiny_world.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

class PretrainStageTest : public Seeded {
 protected:
  void SetUp() override {
    Seeded::SetUp();
    run_.emplace(scratch_dir(std::string("PretrainStage_") +
                             ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::string text;
    for (int i = 0; i < 400; ++i)
      text += "the capital of country " + std::to_string(i % 7) + " is city " + std::to_string(i % 7) + ".\n";
    train_tiny_tokenizer(run_->dir, text);
    write_file(run_->dir / "train.txt", text);
    write_file(run_->dir / "val.txt", text.substr(0, text.size() / 8));
  }
  std::string stage(const std::string& extra = "") const {
    const fs::path& d = run_->dir;
    return "  pre:\n    pipeline: pretrain\n    tokenizer: " + (d / "tok.model").string() + "\n    train: [" +
           (d / "train.txt").string() + "]\n    val: [" + (d / "val.txt").string() +
           "]\n    model: {preset: llama_micro, block_size: 32}\n    max_steps: 60\n    batch_size: 8\n"
           "    warmup_steps: 5\n    eval_every: 0\n    save_every: 0\n" + extra;
  }
  std::optional<StageRun> run_;
};

TEST_F(PretrainStageTest, LearnsFromContextAndItsModelReproducesTheValLoss) {
  ASSERT_EQ((*run_)(stage()), 0);
  const auto m = run_->stage_json("pre")["metrics"];
  const double val_loss = m["val_loss"].get<double>();
  EXPECT_LT(val_loss, m["unigram_entropy"].get<double>() - 0.3);
  EXPECT_NEAR(m["val_ppl"].get<double>(), std::exp(val_loss), 1e-9 * std::exp(val_loss));

  // The held-out loss again, from the model directory over consecutive windows of the val shard.
  Transformer model = load_transformer(run_->stage_dir("pre") / "model", torch::kCPU);
  model->eval();
  const TokenShard shard(run_->stage_dir("pre") / "data" / "val");
  const int64_t context = 32, windows = shard.size() / context;
  ASSERT_GT(windows, 2);
  torch::NoGradGuard no_grad;
  double sum = 0, count = 0;
  for (int64_t w = 0; w < windows; ++w) {
    const auto tokens = torch::tensor(shard.read(w * context, context), torch::kInt64).unsqueeze(0);
    const LMLoss loss = lm_loss(model->forward(tokens), tokens);
    sum += loss.sum.item<double>();
    count += loss.count.item<double>();
  }
  EXPECT_NEAR(sum / count, val_loss, 1e-4);
  EXPECT_EQ(read_model_kind(run_->stage_dir("pre") / "model"), "lm");
}

TEST_F(PretrainStageTest, AWindowLongerThanTheModelIsAnErrorNamingTheKey) {
  EXPECT_EQ((*run_)(stage("    context: 64\n")), 1);
  EXPECT_THAT(run_->stage_json("pre")["error"].get<std::string>(),
              HasSubstr("stages.pre.context: 64 exceeds the model's block_size 32"));
  EXPECT_FALSE(fs::exists(run_->stage_dir("pre") / "model"));
}

}  // namespace
}  // namespace nurture
