// Recipes: loading with `base:`, overrides, validation messages (file:line:col: key: what),
// dry runs, and the runner's stage bookkeeping — through the same code path `nurture run` uses.
#include <gmock/gmock.h>

#include <nlohmann/json.hpp>

#include "pipelines/runner/runner.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

// The errors a recipe produces, or an empty list when it validates.
std::vector<std::string> errors_of(const fs::path& recipe, const RunOptions& options = {}) {
  try {
    load_recipe(recipe, options);
  } catch (const ConfigError& e) {
    return e.messages();
  }
  return {};
}

class RecipeTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = scratch_dir(::testing::UnitTest::GetInstance()->current_test_info()->name()); }
  fs::path recipe(const std::string& text) { return write_file(dir_ / "r.yaml", text); }
  std::string at(int line, int col) const {
    return (dir_ / "r.yaml").string() + ":" + std::to_string(line) + ":" + std::to_string(col);
  }
  fs::path dir_;
};

const char* kGood =
    "seed: 1\n"
    "stages:\n"
    "  data:\n"
    "    pipeline: demo_data\n"
    "  tok:\n"
    "    pipeline: tokenizer\n"
    "    inputs: [\"${data}/pretrain.txt\"]\n"
    "    vocab_size: 400\n";

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

TEST_F(RecipeTest, WrongTypeNamesFileLineColumnAndKey) {
  auto errors = errors_of(recipe(std::string(kGood) + "    character_coverage: fast\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], at(9, 25) + ": stages.tok.character_coverage: expected a number, got \"fast\"");
}

TEST_F(RecipeTest, UnknownKeySuggestsTheClosest) {
  auto errors = errors_of(recipe(std::string(kGood) + "    vocab_sise: 100\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], at(9, 5) + ": stages.tok.vocab_sise: unknown key; did you mean 'vocab_size'?");
  errors = errors_of(recipe(std::string("sead: 3\n") + kGood));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], at(1, 1) + ": sead: unknown key; did you mean 'seed'?");
}

TEST_F(RecipeTest, OutOfRangeAndBadChoice) {
  auto errors = errors_of(recipe(
      "seed: -1\ndevice: gpu\nstages:\n  tok:\n    pipeline: tokenizer\n    inputs: a.txt\n"
      "    vocab_size: 10\n    model_type: wordpiece\n"));
  ASSERT_EQ(errors.size(), 4u);
  EXPECT_EQ(errors[0], at(1, 7) + ": seed: must be >= 0, got -1");
  EXPECT_EQ(errors[1], at(2, 9) + ": device: expected one of cpu, cuda, auto, got \"gpu\" (did you mean 'cpu'?)");
  EXPECT_EQ(errors[2], at(7, 17) + ": stages.tok.vocab_size: must be >= 300, got 10");
  EXPECT_EQ(errors[3], at(8, 17) +
                           ": stages.tok.model_type: expected one of bpe, unigram, got \"wordpiece\"");
}

TEST_F(RecipeTest, MissingRequiredKeys) {
  auto errors = errors_of(recipe("stages:\n  tok:\n    pipeline: tokenizer\n  other:\n    seed: 2\n"));
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_THAT(errors[0], HasSubstr(at(3, 5) + ": stages.tok: missing required key 'inputs'"));
  EXPECT_THAT(errors[1], HasSubstr(at(4, 3) + ": stages.other: missing required key 'pipeline'"));
  errors = errors_of(recipe("seed: 1\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr(": missing required key 'stages'"));
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

TEST_F(RecipeTest, InvalidYamlAndDuplicateKeys) {
  auto errors = errors_of(recipe("stages:\n  tok: [unclosed\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr((dir_ / "r.yaml").string() + ":3:1: invalid YAML: "));
  errors = errors_of(recipe("seed: 1\nseed: 2\nstages: {a: {pipeline: demo_data}}\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], at(2, 1) + ": seed: duplicate key (it is already set above)");
  errors = errors_of(dir_ / "absent.yaml");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], (dir_ / "absent.yaml").string() + ": cannot read this recipe file (does it exist?)");
  // An alias inside its own anchor (found by tests/fuzz/recipe_fuzz: it used to overflow the stack).
  errors = errors_of(recipe("stages:\n  b: &x {pipeline: sft, extra: *x}\n"));
  ASSERT_FALSE(errors.empty());
  EXPECT_THAT(errors[0], HasSubstr(": the recipe nests deeper than 64 levels (an alias that contains itself?)"));
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

TEST_F(RecipeTest, OverridesAreTypedAndNamedInErrors) {
  RunOptions o;
  o.overrides = {"stages.tok.vocab_size=512", "seed=3", "stages.tok.inputs=[a.txt, b.txt]"};
  Recipe r = load_recipe(recipe(kGood), o);
  Settings tok(r.stages[1].settings, "stages.tok");
  EXPECT_EQ(tok.get_int("vocab_size"), 512);
  EXPECT_EQ(tok.get_string_list("inputs"), (std::vector<std::string>{"a.txt", "b.txt"}));
  EXPECT_EQ(r.run.seed, 3);

  o.overrides = {"stages.tok.vocab_size=fast"};
  auto errors = errors_of(dir_ / "r.yaml", o);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "--set stages.tok.vocab_size=fast: stages.tok.vocab_size: expected a whole "
                       "number, got \"fast\"");
  o.overrides = {"stages.tok.lr=1e-4"};
  errors = errors_of(dir_ / "r.yaml", o);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("--set stages.tok.lr=1e-4: stages.tok.lr: unknown key"));
  o.overrides = {"novalue"};
  errors = errors_of(dir_ / "r.yaml", o);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "--set novalue: expected KEY.PATH=VALUE, e.g. --set stages.sft.lr=1e-4");
}

TEST_F(RecipeTest, BaseRecipesDeepMerge) {
  write_file(dir_ / "base" / "common.yaml",
             "seed: 7\nthreads: 1\nstages:\n  data:\n    pipeline: demo_data\n    max_operand: 5\n");
  Recipe r = load_recipe(recipe("base: base/common.yaml\nseed: 9\nstages:\n  data:\n"
                                "    prose_repeats: 2\n  tok:\n    pipeline: tokenizer\n"
                                "    inputs: ['${data}/pretrain.txt']\n"),
                         {});
  EXPECT_EQ(r.run.seed, 9);        // the recipe wins over its base
  EXPECT_EQ(r.run.threads, 1);     // inherited
  ASSERT_EQ(r.stages.size(), 2u);  // base stage first, then the recipe's
  Settings data(r.stages[0].settings, "stages.data");
  EXPECT_EQ(data.get_int("max_operand"), 5);
  EXPECT_EQ(data.get_int("prose_repeats"), 2);
  // An error in the base names the base file.
  write_file(dir_ / "base" / "common.yaml",
             "threads: x\nstages:\n  data:\n    pipeline: demo_data\n");
  auto errors = errors_of(dir_ / "r.yaml");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], (dir_ / "base" / "common.yaml").string() +
                           ":1:10: threads: expected a whole number or auto, got \"x\"");
  write_file(dir_ / "base" / "common.yaml", "base: ../r.yaml\n");
  errors = errors_of(dir_ / "r.yaml");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("base: recipes inherit from each other in a cycle"));
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

// ---- through the `nurture` executable ---------------------------------------------------------------

TEST_F(RecipeTest, CliRejectsBadRecipeWithoutCreatingAnything) {
  const fs::path out = dir_ / "out";
  recipe(std::string(kGood) + "    vocab_size: many\n");
  auto r = run_nurture("run " + (dir_ / "r.yaml").string() + " --output " + out.string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("duplicate key"));
  EXPECT_FALSE(fs::exists(out));

  recipe(kGood);
  r = run_nurture("run " + (dir_ / "r.yaml").string() + " --set stages.tok.vocab_size=fast --output " +
                  out.string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "error: --set stages.tok.vocab_size=fast: stages.tok.vocab_size: expected a whole "
                   "number, got \"fast\"\n");
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(RecipeTest, CliFlagErrors) {
  auto r = run_nurture("run --frobnicate");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("nurture run: unrecognised option '--frobnicate' (see nurture run --help)"));
  r = run_nurture("rnu x.yaml");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown command 'rnu'; did you mean 'run'?"));
  r = run_nurture("run --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("--dry-run"));
  EXPECT_THAT(r.out, HasSubstr("tokenizer"));
}

TEST_F(RecipeTest, DryRunPrintsTheResolvedRecipe) {
  auto r = run_nurture("run " + recipe(kGood).string() + " --dry-run --set stages.tok.vocab_size=333");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("vocab_size: 333"));
  EXPECT_THAT(r.out, HasSubstr("model_type: bpe"));
  EXPECT_THAT(r.out, HasSubstr("threads: auto"));
  EXPECT_FALSE(fs::exists("runs/r"));
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
