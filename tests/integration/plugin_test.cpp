// Plugins: the example plugin (tests/plugins/example_plugin.cpp, its own shared library) adds
// pipelines and a reward function that a recipe then uses, without touching the framework; a
// plugin stage that produces an lm is a model like any other for the stages after it.
#include <gmock/gmock.h>

#include <nlohmann/json.hpp>

#include "modules/model/model_dir.h"
#include "pipelines/runner/plugin.h"
#include "pipelines/runner/runner.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

fs::path plugin_path() { return binary_dir() / "libnurture_example_plugin.so"; }

TEST(Plugin, RecipeRunsThePluginsPipeline) {
  const fs::path dir = scratch_dir("plugin_recipe");
  write_file(dir / "words.txt", "the cat\na dog\nthe end\n");
  write_file(dir / "r.yaml", "plugins: ['" + plugin_path().string() + "']\nstages:\n  count:\n"
                             "    pipeline: line_count\n    file: " + (dir / "words.txt").string() + "\n");
  auto r = run_nurture("run " + (dir / "r.yaml").string() + " --output " + (dir / "out").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto summary = nlohmann::json::parse(read_file(dir / "out" / "summary.json"));
  EXPECT_EQ(summary["stages"][0]["pipeline"], "line_count");
  EXPECT_EQ(summary["stages"][0]["metrics"]["lines"], 3);
  EXPECT_EQ(summary["stages"][0]["metrics"]["matching"], 2);
  EXPECT_EQ(read_file(dir / "out" / "count" / "count.txt"), "3\n");

  // The plugin's schema validates like a built-in one.
  write_file(dir / "bad.yaml", "plugins: ['" + plugin_path().string() +
                                   "']\nstages:\n  count:\n    pipeline: line_count\n    wrod: x\n");
  r = run_nurture("run " + (dir / "bad.yaml").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("bad.yaml:5:5: stages.count.wrod: unknown key; did you mean 'word'?"));
  EXPECT_THAT(r.err, HasSubstr("stages.count: missing required key 'file'"));
}

// A tokenizer stage, then the plugin's random_lm stage on it, then `extra` (a stage of the recipe).
std::string plugin_model_recipe(const fs::path& dir, const std::string& extra) {
  std::string corpus;
  for (int i = 0; i < 20; ++i)
    corpus += "What is the capital of France? Paris. What is " + std::to_string(i) + " plus " +
              std::to_string(i + 3) + "? Be brief, kind and exact.\n";
  write_file(dir / "corpus.txt", corpus);
  return "plugins: ['" + plugin_path().string() + "']\nstages:\n"
         "  tok:\n    pipeline: tokenizer\n    inputs: [" + (dir / "corpus.txt").string() + "]\n"
         "    vocab_size: 360\n    character_coverage: 1.0\n"
         "  random:\n    pipeline: random_lm\n    tokenizer: tok\n    model: {preset: llama_micro}\n" +
         extra;
}

TEST(Plugin, APluginStagesModelCanBeEvaluated) {
  const fs::path dir = scratch_dir("plugin_model_eval");
  write_file(dir / "prompts.jsonl", "{\"prompt\": \"What is 2 plus 5?\", \"reference\": \"7\"}\n"
                                    "{\"prompt\": \"The capital of France?\", \"reference\": \"Paris\"}\n");
  write_file(dir / "r.yaml", plugin_model_recipe(dir, "  eval:\n    pipeline: eval\n    models: [random]\n"
                                                      "    prompts: " + (dir / "prompts.jsonl").string() +
                                                      "\n    max_new_tokens: 4\n    samples: 0\n"));
  auto r = run_nurture("run " + (dir / "r.yaml").string() + " --output " + (dir / "out").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto summary = nlohmann::json::parse(read_file(dir / "out" / "summary.json"));
  EXPECT_EQ(summary["stages"][1]["pipeline"], "random_lm");
  EXPECT_EQ(read_model_kind(dir / "out" / "random" / "model"), "lm");
  ASSERT_TRUE(summary["comparison"].contains("random")) << summary.dump(2);
  EXPECT_TRUE(summary["comparison"]["random"].contains("exact_match")) << summary["comparison"].dump(2);
}

TEST(Plugin, ConsumersAskForAKindNotAPipeline) {
  const fs::path dir = scratch_dir("plugin_model_kinds");
  // Any stage that produces an lm may be fine-tuned further: the plugin's too.
  write_file(dir / "ok.yaml", plugin_model_recipe(dir, "  dpo:\n    pipeline: dpo\n    init_from: random\n"
                                                        "    train: pairs.jsonl\n"));
  auto r = run_nurture("run " + (dir / "ok.yaml").string() + " --dry-run");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // A stage of the wrong kind is refused, naming the stage, its pipeline, what it produces and
  // what is needed.
  write_file(dir / "bad.yaml", plugin_model_recipe(dir, "  eval:\n    pipeline: eval\n    models: [random, tok]\n"
                                                         "    reward_model: random\n"));
  r = run_nurture("run " + (dir / "bad.yaml").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("bad.yaml:14:22: stages.eval.models: stage 'tok' runs pipeline 'tokenizer', "
                               "expected a stage that produces lm (pipelines: dpo, grpo, ppo, pretrain, random_lm, "
                               "sft); 'tokenizer' produces tokenizer"));
  EXPECT_THAT(r.err, HasSubstr("bad.yaml:15:19: stages.eval.reward_model: stage 'random' runs pipeline "
                               "'random_lm', expected a stage that produces reward (pipelines: reward_model); "
                               "'random_lm' produces lm"));
}

TEST(Plugin, RegistersARewardFunction) {
  load_plugin(plugin_path().string(), "test");
  const RewardFunction reward = rl::reward_function("shorter_is_better", "test");
  const std::string prompt = "q", response = "four", reference = "";
  EXPECT_EQ(reward({prompt, response, reference}), -4.0);
  EXPECT_TRUE(registries().rewards.contains("exact_match"));  // built-ins stay
}

}  // namespace
}  // namespace nurture
