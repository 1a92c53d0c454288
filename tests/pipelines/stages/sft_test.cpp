// The sft stage: fine-tuning a random model on one fixed reply lowers the held-out loss, and that
// loss, recomputed from the saved model, is over the assistant's tokens only (the ChatML loss
// mask); an unknown dataset format is an error naming the key.
#include <gmock/gmock.h>

#include "modules/model/model_dir.h"
#include "modules/text/chat_template.h"
#include "tests/recipe_files.h"
#include "tests/tiny_world.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
using namespace nurture::testing;
namespace fs = std::filesystem;

// Mean −log p over the tokens the ChatML loss mask marks (the reply and its <|im_end|>).
double reply_loss(Transformer& model, const Tokenizer& tokenizer, const std::vector<json>& records) {
  torch::NoGradGuard no_grad;
  double sum = 0, count = 0;
  for (const auto& r : records) {
    const RenderedChat chat = ChatMLTemplate().render(
        tokenizer, {{"user", r["prompt"].get<std::string>()}, {"assistant", r["response"].get<std::string>()}}, false);
    const auto logp = torch::log_softmax(model->forward(torch::tensor(chat.ids).unsqueeze(0))[0], -1);
    for (size_t t = 1; t < chat.ids.size(); ++t)
      if (chat.loss_mask[t]) sum -= logp[t - 1][chat.ids[t]].item<double>(), ++count;
  }
  return sum / count;
}

class SftStageTest : public Seeded {
 protected:
  void SetUp() override {
    Seeded::SetUp();
    run_.emplace(scratch_dir(std::string("SftStage_") + ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    init_ = preference_model_dir(run_->dir, "init");
    for (const auto& p : preference_pairs(40, 11))
      records_.push_back({{"prompt", p["prompt"]}, {"response", "thanks red"}});
    write_file(run_->dir / "train.jsonl", jsonl(std::vector<json>(records_.begin(), records_.begin() + 32)));
    write_file(run_->dir / "val.jsonl", jsonl(std::vector<json>(records_.begin() + 32, records_.end())));
  }
  std::string stage(const std::string& extra = "") const {
    return "  sft:\n    pipeline: sft\n    init_from: " + init_.string() + "\n    train: " +
           (run_->dir / "train.jsonl").string() + "\n    val: " + (run_->dir / "val.jsonl").string() +
           "\n    max_steps: 40\n    batch_size: 8\n    lr: 3e-3\n    warmup_steps: 2\n    eval_every: 0\n"
           "    save_every: 0\n" + extra;
  }
  std::optional<StageRun> run_;
  fs::path init_;
  std::vector<json> records_;
};

TEST_F(SftStageTest, TheHeldOutReplyLossFallsAndIsOverTheAssistantTokensOnly) {
  const std::vector<json> val(records_.begin() + 32, records_.end());
  Transformer before = load_transformer(init_, torch::kCPU);
  before->eval();
  const Tokenizer tokenizer = Tokenizer::load((init_ / kTokenizerFileName).string());
  const double initial = reply_loss(before, tokenizer, val);

  ASSERT_EQ((*run_)(stage()), 0);
  const auto m = run_->stage_json("sft")["metrics"];
  EXPECT_EQ(m["train_examples"], 32);
  const double val_loss = m["val_loss"].get<double>();
  EXPECT_LT(val_loss, initial / 3) << initial;  // one reply to learn: most of the loss goes
  Transformer after = load_transformer(run_->stage_dir("sft") / "model", torch::kCPU);
  after->eval();
  EXPECT_NEAR(reply_loss(after, tokenizer, val), val_loss, 1e-4);
}

TEST_F(SftStageTest, AnUnknownFormatIsAnErrorNamingTheKey) {
  EXPECT_EQ((*run_)(stage("    format: sharegpt\n")), 1);
  EXPECT_THAT(run_->stage_json("sft")["error"].get<std::string>(),
              HasSubstr("stages.sft.format: unknown dataset format 'sharegpt' (known: alpaca, chat)"));
}

}  // namespace
}  // namespace nurture
