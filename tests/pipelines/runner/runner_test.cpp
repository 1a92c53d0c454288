// The runner: a recipe resolved with its defaults, what is checked across stages (references to
// earlier stages, settings impossible together, the device), stage selection, and the bookkeeping of
// a run (done stages skipped, outputs kept when a later stage fails, out-of-date stages run again).
#include <gmock/gmock.h>

#include <nlohmann/json.hpp>

#include "tests/recipe_files.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

TEST_F(RecipeTest, ValidRecipeResolvesDefaults) {
  Recipe r = load_recipe(recipe(kGood), {});
  ASSERT_EQ(r.stages.size(), 2u);
  EXPECT_EQ(r.stages[1].pipeline, "tokenizer");
  Settings tok(r.stages[1].settings, "stages.tok");
  EXPECT_EQ(tok.get_int("vocab_size"), 400);
  EXPECT_EQ(tok.get_string("model_type"), "bpe");  // default filled in
  EXPECT_EQ(r.run.seed, 1);
  EXPECT_EQ(r.run.output_dir, fs::path("runs/r"));
  EXPECT_EQ(r.threads_setting, "auto");
  EXPECT_GE(r.run.threads, 1);
}

TEST_F(RecipeTest, UnknownPipelineListsKnownOnes) {
  auto errors = errors_of(recipe("stages:\n  tok:\n    pipeline: tokeniser\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr(at(3, 15) + ": stages.tok.pipeline: unknown pipeline 'tokeniser' (known: "));
  EXPECT_THAT(errors[0], HasSubstr("did you mean 'tokenizer'?"));
}

TEST_F(RecipeTest, ReferencesMustNameAnEarlierStage) {
  auto errors = errors_of(recipe(
      "stages:\n  tok:\n    pipeline: tokenizer\n    inputs: ['${dta}/pretrain.txt']\n"
      "  data:\n    pipeline: demo_data\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], at(4, 14) + ": stages.tok.inputs: ${dta} names no earlier stage (earlier: none)");
  errors = errors_of(recipe(
      "stages:\n  data:\n    pipeline: demo_data\n  tok:\n    pipeline: tokenizer\n"
      "    inputs: ['${dta}/pretrain.txt']\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], at(6, 14) +
                           ": stages.tok.inputs: ${dta} names no earlier stage (earlier: data); "
                           "did you mean 'data'?");
}

// Settings that are each valid but impossible together, named by key; the number of ranks comes
// from the environment (here torchrun's variables, as `nurture launch` sets them).
TEST_F(RecipeTest, ImpossibleCombinationsNameTheKey) {
  const std::string stages =
      "stages:\n"
      "  data: {pipeline: demo_data}\n"
      "  tok: {pipeline: tokenizer, inputs: ['${data}/pretrain.txt']}\n"
      "  pre:\n"
      "    pipeline: pretrain\n"
      "    tokenizer: tok\n"
      "    train: ['${data}/pretrain.txt']\n"
      "    batch_size: 4\n";
  auto errors = errors_of(recipe(stages + "    global_batch_size: 32\n    grad_accum: 2\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], at(9, 24) + ": stages.pre.global_batch_size: set global_batch_size or grad_accum, not both");

  ::setenv("RANK", "0", 1);
  ::setenv("WORLD_SIZE", "3", 1);
  errors = errors_of(recipe(stages + "    global_batch_size: 32\n"));
  const auto with_three_ranks = errors_of(recipe(stages + "    global_batch_size: 36\n"));
  ::unsetenv("RANK");
  ::unsetenv("WORLD_SIZE");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], at(9, 24) + ": stages.pre.global_batch_size: 32 is not divisible by batch_size 4 x 3 ranks = 12");
  EXPECT_TRUE(with_three_ranks.empty()) << with_three_ranks[0];

  errors = errors_of(recipe(stages + "  ppo:\n    pipeline: ppo\n    init_from: pre\n    prompts: p.jsonl\n"
                                     "    reward_functions: [exact_match]\n    rollout_batch_size: 8\n"
                                     "    minibatch_size: 16\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], at(15, 21) + ": stages.ppo.minibatch_size: 16 exceeds rollout_batch_size 8 (a minibatch is a "
                                    "part of one rank's rollout)");
}

TEST_F(RecipeTest, StageSelectionFlagsMustNameStages) {
  RunOptions o;
  o.only = "tokk";
  auto errors = errors_of(recipe(kGood), o);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "--only tokk: no such stage (stages: data, tok); did you mean 'tok'?");
}

TEST_F(RecipeTest, CudaOnACpuOnlyMachineIsAnError) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "this machine has CUDA";
  auto errors = errors_of(recipe(std::string("device: cuda\n") + kGood));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr(at(1, 9) + ": device: cuda requested, but this LibTorch"));
}

TEST_F(RecipeTest, RunSkipsDoneStagesAndKeepsOutputsWhenALaterStageFails) {
  const fs::path out = dir_ / "out";
  const std::string run = "run " + recipe(kGood).string() + " --output " + out.string();
  auto r = run_nurture(run);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(fs::exists(out / "tok" / "tokenizer.model"));
  auto summary = nlohmann::json::parse(read_file(out / "summary.json"));
  EXPECT_EQ(summary["status"], "done");
  ASSERT_EQ(summary["stages"].size(), 2u);
  EXPECT_EQ(summary["stages"][1]["metrics"]["vocab_size"], 400);
  EXPECT_THAT(read_file(out / "recipe.yaml"), HasSubstr("vocab_size: 400"));

  // Again: both stages are done and skipped.
  r = run_nurture(run);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("stage tok is already done"));
  summary = nlohmann::json::parse(read_file(out / "summary.json"));
  EXPECT_EQ(summary["stages"][1]["status"], "skipped");

  // --only re-runs one stage with --force; a failure there leaves the data stage's files intact.
  r = run_nurture(run + " --only tok --force --set stages.tok.inputs=[missing.txt]");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("stages.tok.inputs: cannot read 'missing.txt'"));
  EXPECT_TRUE(fs::exists(out / "data" / "pretrain.txt"));
  summary = nlohmann::json::parse(read_file(out / "summary.json"));
  EXPECT_EQ(summary["status"], "failed");
  EXPECT_EQ(summary["stages"][0]["status"], "done");
  EXPECT_EQ(summary["stages"][1]["status"], "failed");
}

// A stage that ran again makes the stages reading it out of date: --from runs them again; --only
// warns about them (they are not silently presented as matching).
TEST_F(RecipeTest, StagesReadingAStageThatRanAgainAreOutOfDate) {
  const fs::path out = dir_ / "out";
  const std::string run = "run " + recipe(kGood).string() + " --output " + out.string();
  ASSERT_EQ(run_nurture(run).exit_code, 0);

  auto r = run_nurture(run + " --only data --force");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("warning: stage tok reads data, which ran again; its outputs are out of "
                               "date (run with --from tok)"));

  // data not done (as after an interruption): the plain command runs it, then tok again.
  fs::remove(out / "data" / "stage.json");
  r = run_nurture(run);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("stage tok reads data, which ran again: running tok again"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("stage tok is already done")));
}

}  // namespace
}  // namespace nurture
