// The dpo stage through the runner: before the first update the policy is its reference, so the
// loss is exactly log 2 and every implicit reward 0; after training, the saved policy prefers the
// chosen replies, and its log-prob margin over the initial model — computed here in plain tensor
// ops — is the stage's own held-out reward margin divided by beta.
#include <gmock/gmock.h>

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

// Σ log p(reply tokens | everything before) under `model`: the reply's content and its
// <|im_end|>, as the ChatML loss mask marks them for a one-turn prompt.
double reply_logprob(Transformer& model, const Tokenizer& tokenizer, const std::string& prompt,
                     const std::string& reply) {
  const RenderedChat chat = ChatMLTemplate().render(tokenizer, {{"user", prompt}, {"assistant", reply}}, false);
  const auto logp = torch::log_softmax(model->forward(torch::tensor(chat.ids).unsqueeze(0))[0], -1);  // [T, V]
  double sum = 0;
  for (size_t t = 1; t < chat.ids.size(); ++t)
    if (chat.loss_mask[t]) sum += logp[t - 1][chat.ids[t]].item<double>();
  return sum;
}

class DpoTest : public Seeded {
 protected:
  void SetUp() override {
    Seeded::SetUp();
    dir_ = scratch_dir(std::string("Dpo_") + ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  // A tokenizer trained on the task's words and a random llama_micro model, as a model directory.
  fs::path tiny_model_dir() { return preference_model_dir(dir_, "sft"); }

  int run(const std::string& stages) {
    const fs::path recipe = write_file(dir_ / "r.yaml", "seed: 0\nthreads: 1\nstages:\n" + stages);
    RunOptions options;
    options.output = (dir_ / "out").string();
    return run_recipe(load_recipe(recipe, options), options);
  }

  fs::path dir_;
};

TEST_F(DpoTest, StartsAtLog2AndMovesThePolicyTowardsTheChosenReplies) {
  const fs::path init = tiny_model_dir();
  write_file(dir_ / "train.jsonl", jsonl(preference_pairs(128, 1)));
  const auto val_pairs = preference_pairs(32, 2);
  write_file(dir_ / "val.jsonl", jsonl(val_pairs));
  const double beta = 0.1;
  ASSERT_EQ(run("  dpo:\n    pipeline: dpo\n    init_from: " + init.string() + "\n    train: " +
                (dir_ / "train.jsonl").string() + "\n    val: " + (dir_ / "val.jsonl").string() +
                "\n    beta: 0.1\n    max_length: 96\n    max_steps: 40\n    batch_size: 8\n    lr: 1e-3\n"
                "    eval_every: 0\n    log_every: 1\n"),
            0);

  // Step 1's micro-batch ran before any update: policy == reference, z = 0, loss = log 2.
  std::istringstream lines(read_file(dir_ / "out" / "dpo" / "metrics.jsonl"));
  std::string line;
  ASSERT_TRUE(std::getline(lines, line));
  const json first = json::parse(line);
  ASSERT_EQ(first["split"], "train");
  ASSERT_EQ(first["step"], 1);
  EXPECT_NEAR(first["loss"].get<double>(), std::log(2.0), 1e-6);
  EXPECT_EQ(first["chosen_reward"].get<double>(), 0.0);
  EXPECT_EQ(first["rejected_reward"].get<double>(), 0.0);
  EXPECT_EQ(first["accuracy"].get<double>(), 0.0);  // a tie is not a win

  const json m = json::parse(read_file(dir_ / "out" / "dpo" / "stage.json"))["metrics"];
  EXPECT_GE(m["val_accuracy"].get<double>(), 0.9);
  EXPECT_LT(m["val_loss"].get<double>(), 0.4);
  EXPECT_EQ(m["steps"], 40);

  // The saved policy against the initial model, each scored here one sequence at a time.
  const fs::path model_dir = dir_ / "out" / "dpo" / "model";
  EXPECT_EQ(read_model_kind(model_dir), "lm");
  Transformer before = load_transformer(init, torch::kCPU), after = load_transformer(model_dir, torch::kCPU);
  before->eval(), after->eval();
  const Tokenizer tokenizer = Tokenizer::load(model_dir.string());
  torch::NoGradGuard no_grad;
  double margin_before = 0, margin_after = 0, chosen_gain = 0;
  for (const auto& p : val_pairs) {
    const std::string prompt = p["prompt"], chosen = p["chosen"], rejected = p["rejected"];
    const double c0 = reply_logprob(before, tokenizer, prompt, chosen);
    const double r0 = reply_logprob(before, tokenizer, prompt, rejected);
    const double c1 = reply_logprob(after, tokenizer, prompt, chosen);
    const double r1 = reply_logprob(after, tokenizer, prompt, rejected);
    margin_before += c0 - r0, margin_after += c1 - r1, chosen_gain += c1 - c0;
  }
  const double n = static_cast<double>(val_pairs.size());
  margin_before /= n, margin_after /= n, chosen_gain /= n;
  EXPECT_GT(margin_after - margin_before, 10.0) << "before " << margin_before << ", after " << margin_after;
  // The stage's implicit rewards are beta * log(policy / reference) of the same replies.
  EXPECT_NEAR(m["val_margin"].get<double>(), beta * (margin_after - margin_before), 1e-3);
  EXPECT_NEAR(m["val_chosen_reward"].get<double>(), beta * chosen_gain, 1e-3);
}

TEST_F(DpoTest, RecipeErrorsNameTheKey) {
  const fs::path recipe = write_file(
      dir_ / "r.yaml",
      "stages:\n  tok:\n    pipeline: tokenizer\n    inputs: [x.txt]\n  dpo:\n    pipeline: dpo\n"
      "    init_from: tok\n    train: t.jsonl\n    beta: 0\n    label_smoothing: 0.7\n");
  try {
    load_recipe(recipe, {});
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    const std::string all = ::testing::PrintToString(e.messages());
    EXPECT_THAT(all, HasSubstr(recipe.string() + ":7:16: stages.dpo.init_from: stage 'tok' runs pipeline "
                                                 "'tokenizer', expected a stage running sft"));
    EXPECT_THAT(all, HasSubstr(recipe.string() + ":9:11: stages.dpo.beta: must be > 0, got 0"));
    EXPECT_THAT(all, HasSubstr(recipe.string() + ":10:22: stages.dpo.label_smoothing: must be in [0, 0.5], got 0.7"));
  }
}

}  // namespace
}  // namespace nurture
