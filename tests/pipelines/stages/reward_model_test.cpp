// The reward_model stage through the runner: a tiny random backbone learns a preference rule it
// can only see in the replies' tokens (held-out accuracy and loss), the saved model directory
// reproduces the stage's own held-out numbers when scored independently, and data problems are
// reported as `file:line: what`, skipped, truncated or dropped as configured.
#include <gmock/gmock.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "modules/model/model_dir.h"
#include "modules/text/chat_template.h"
#include "modules/text/tokenizer.h"
#include "pipelines/runner/runner.h"
#include "tests/test_util.h"
#include "tests/tiny_world.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
using namespace nurture::testing;
namespace fs = std::filesystem;

class RewardModelTest : public Seeded {
 protected:
  void SetUp() override {
    Seeded::SetUp();
    dir_ = scratch_dir(std::string("RewardModel_") +
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  // A tokenizer trained on the task's words and a random llama_micro backbone, as a model directory.
  fs::path tiny_model_dir() { return preference_model_dir(dir_, "init"); }

  // Runs `stages` (YAML under `stages:`) through the runner; returns its exit status.
  int run(const std::string& stages) {
    const fs::path recipe = write_file(dir_ / "r.yaml", "seed: 0\nthreads: 1\nstages:\n" + stages);
    RunOptions options;
    options.output = (dir_ / "out").string();
    return run_recipe(load_recipe(recipe, options), options);
  }

  json stage_json(const std::string& stage) const {
    return json::parse(read_file(dir_ / "out" / stage / "stage.json"));
  }

  std::vector<json> metrics(const std::string& stage, const std::string& split) const {
    std::vector<json> out;
    std::istringstream lines(read_file(dir_ / "out" / stage / "metrics.jsonl"));
    for (std::string line; std::getline(lines, line);) {
      json record = json::parse(line);
      if (record["split"] == split) out.push_back(record);
    }
    return out;
  }

  fs::path dir_;
};

TEST_F(RewardModelTest, LearnsAPreferenceFromRandomInitAndItsModelDirReproducesTheScores) {
  const fs::path init = tiny_model_dir();
  write_file(dir_ / "train.jsonl", jsonl(preference_pairs(128, 1)));
  const auto val_pairs = preference_pairs(48, 2);
  write_file(dir_ / "val.jsonl", jsonl(val_pairs));
  ASSERT_EQ(run("  rm:\n    pipeline: reward_model\n    init_from: " + init.string() +
                "\n    train: " + (dir_ / "train.jsonl").string() + "\n    val: " +
                (dir_ / "val.jsonl").string() +
                "\n    max_length: 96\n    max_steps: 30\n    batch_size: 8\n    lr: 2e-3\n"
                "    warmup_steps: 5\n    eval_every: 10\n    log_every: 1\n"),
            0);

  // Training: from chance to (nearly) always right, on pairs it never saw.
  const json m = stage_json("rm")["metrics"];
  const auto train = metrics("rm", "train");
  const auto val = metrics("rm", "val");
  ASSERT_EQ(train.size(), 30u);
  ASSERT_EQ(val.size(), 3u);  // steps 10, 20, 30
  // Step 1 is scored before any update: a random head barely separates the sides, loss ~ log 2.
  EXPECT_NEAR(train.front()["loss"].get<double>(), std::log(2.0), 0.1);
  EXPECT_LT(train.back()["loss"].get<double>(), 0.05);
  EXPECT_LT(m["val_loss"].get<double>(), val.front()["val_loss"].get<double>() / 10);
  EXPECT_GE(m["val_accuracy"].get<double>(), 0.9);
  EXPECT_LT(m["val_loss"].get<double>(), 0.3);
  EXPECT_GT(m["val_margin"].get<double>(), 2.0);
  EXPECT_EQ(m["train_pairs"], 128);
  EXPECT_EQ(m["steps"], 30);

  // The model directory, scored one unpadded sequence at a time outside the pipeline, gives the
  // stage's held-out accuracy, margin and loss.
  const fs::path model_dir = dir_ / "out" / "rm" / "model";
  EXPECT_EQ(read_model_kind(model_dir), "reward");
  RewardModel rm = load_reward_model(model_dir, torch::kCPU);
  rm->eval();
  const Tokenizer tokenizer = Tokenizer::load(model_dir.string());
  const ChatMLTemplate chatml;
  torch::NoGradGuard no_grad;
  double correct = 0, margin = 0, loss = 0;
  for (const auto& p : val_pairs) {
    auto score = [&](const std::string& reply) {
      const std::vector<Message> chat = {{"user", p["prompt"].get<std::string>()}, {"assistant", reply}};
      const auto ids = chatml.render(tokenizer, chat, false).ids;
      return rm->forward(torch::tensor(ids).unsqueeze(0)).item<double>();
    };
    const double d = score(p["chosen"].get<std::string>()) - score(p["rejected"].get<std::string>());
    correct += d > 0, margin += d, loss += std::log1p(std::exp(-d));
  }
  const double n = static_cast<double>(val_pairs.size());
  EXPECT_DOUBLE_EQ(correct / n, m["val_accuracy"].get<double>());
  EXPECT_NEAR(margin / n, m["val_margin"].get<double>(), 1e-4);
  EXPECT_NEAR(loss / n, m["val_loss"].get<double>(), 1e-4);
}

TEST_F(RewardModelTest, MalformedLineIsNamedThenSkippedWhenAsked) {
  const fs::path init = tiny_model_dir();
  auto pairs = preference_pairs(2, 3);
  const fs::path train = write_file(dir_ / "train.jsonl", jsonl(pairs) + "\n{\"prompt\": \"hi\", \"chosen\": \"a\"}\n");
  const std::string stage = "  rm:\n    pipeline: reward_model\n    init_from: " + init.string() +
                            "\n    train: " + train.string() + "\n    max_steps: 1\n    batch_size: 2\n";
  EXPECT_EQ(run(stage), 1);
  EXPECT_EQ(stage_json("rm")["status"], "failed");
  EXPECT_THAT(stage_json("rm")["error"].get<std::string>(),
              HasSubstr(train.string() + ":4: missing key \"rejected\""));  // line 3 is blank
  EXPECT_FALSE(fs::exists(dir_ / "out" / "rm" / "model"));

  EXPECT_EQ(run(stage + "    skip_bad_lines: true\n"), 0);
  const json m = stage_json("rm")["metrics"];
  EXPECT_EQ(m["skipped_lines"], 1);
  EXPECT_EQ(m["train_pairs"], 2);
  EXPECT_TRUE(fs::exists(dir_ / "out" / "rm" / "model" / "model.safetensors"));  // a Hugging Face directory
}

TEST_F(RewardModelTest, TooLongPairsLoseThePromptStartOrAreDropped) {
  const fs::path init = tiny_model_dir();
  const Tokenizer tokenizer = Tokenizer::load(init.string());
  auto length = [&](const std::string& prompt, const std::string& reply) {
    const std::vector<Message> chat = {{"user", prompt}, {"assistant", reply}};
    return static_cast<int64_t>(ChatMLTemplate().render(tokenizer, chat, false).ids.size());
  };
  std::string long_text;
  for (int i = 0; i < 4; ++i)
    for (const auto& w : preference_words()) long_text += w + " ";
  const int64_t max_length = std::max(length("Hi.", "thanks"), length("Hi.", "red")) + 2;
  ASSERT_GT(length(long_text, "thanks"), max_length);
  ASSERT_GT(length("Hi.", long_text), 2 * max_length);
  const std::vector<json> pairs = {
      {{"prompt", "Hi."}, {"chosen", "thanks"}, {"rejected", "red"}},         // fits
      {{"prompt", "Hi."}, {"chosen", "thanks"}, {"rejected", "red"}},         // fits
      {{"prompt", long_text}, {"chosen", "thanks"}, {"rejected", "red"}},     // prompt cut on the left
      {{"prompt", "Hi."}, {"chosen", long_text}, {"rejected", "red"}}};       // reply alone too long
  const fs::path train = write_file(dir_ / "train.jsonl", jsonl(pairs));
  ASSERT_EQ(run("  rm:\n    pipeline: reward_model\n    init_from: " + init.string() + "\n    train: " +
                train.string() + "\n    max_length: " + std::to_string(max_length) +
                "\n    max_steps: 1\n    batch_size: 3\n"),
            0);
  const json m = stage_json("rm")["metrics"];
  EXPECT_EQ(m["train_pairs"], 3);
  EXPECT_EQ(m["truncated"], 1);
  EXPECT_EQ(m["dropped"], 1);
  // Every side of the cut pair is exactly max_length long now; the others are untouched.
  EXPECT_EQ(m["tokens"].get<int64_t>(), 2 * (length("Hi.", "thanks") + length("Hi.", "red")) + 2 * max_length);
}

TEST_F(RewardModelTest, RecipeErrorsNameTheKey) {
  const fs::path recipe = write_file(dir_ / "r.yaml",
                                     "stages:\n  rm:\n    pipeline: reward_model\n    max_length: 4\n");
  try {
    load_recipe(recipe, {});
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    const std::string all = ::testing::PrintToString(e.messages());
    EXPECT_THAT(all, HasSubstr("stages.rm: missing required key 'train'"));
    EXPECT_THAT(all, HasSubstr("stages.rm: missing required key 'init_from'"));
    EXPECT_THAT(all, HasSubstr(recipe.string() + ":4:17: stages.rm.max_length: must be >= 8, got 4"));
  }
}

}  // namespace
}  // namespace nurture
