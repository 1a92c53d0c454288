// Preemption and exact resume through `nurture run`, as a cluster does it: SIGTERM mid-stage, exit
// status 3, the same command again. The resumed pretrain, SFT and PPO stages end with the same
// weights (bit for bit) and log the same losses as uninterrupted ones; a second signal kills the
// process at once and still leaves an intact checkpoint to resume from.
#include <gmock/gmock.h>

#include <nlohmann/json.hpp>

#include "modules/model/model_dir.h"
#include "pipelines/train/checkpoint.h"
#include "pipelines/train/manifest.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;
using json = nlohmann::json;

// Small enough that every stage takes a few seconds; big enough that each has many steps to be
// interrupted in.
const char* kRecipe =
    "seed: 5\n"
    "threads: 1\n"
    "stages:\n"
    "  data: {pipeline: demo_data, max_operand: 4, prose_repeats: 2}\n"
    "  tokenizer: {pipeline: tokenizer, inputs: [\"${data}/pretrain.txt\"], vocab_size: 400, character_coverage: 1.0}\n"
    "  pretrain:\n"
    "    pipeline: pretrain\n"
    "    tokenizer: tokenizer\n"
    "    train: [\"${data}/pretrain.txt\"]\n"
    "    val: [\"${data}/pretrain_val.txt\"]\n"
    "    model: {preset: llama_micro, n_layer: 2, n_embd: 64, n_head: 2, n_kv_head: 1, block_size: 64}\n"
    "    context: 32\n"
    "    batch_size: 8\n"
    "    max_steps: 60\n"
    "    eval_every: 20\n"
    "    save_every: 5\n"
    "    log_every: 5\n"
    "  sft:\n"
    "    pipeline: sft\n"
    "    init_from: pretrain\n"
    "    train: ${data}/sft.jsonl\n"
    "    val: ${data}/sft_val.jsonl\n"
    "    batch_size: 8\n"
    "    max_steps: 40\n"
    "    eval_every: 20\n"
    "    save_every: 5\n"
    "    log_every: 5\n"
    "  ppo:\n"
    "    pipeline: ppo\n"
    "    init_from: sft\n"
    "    reward_functions: [exact_match]\n"
    "    prompts: ${data}/prompts.jsonl\n"
    "    eval_prompts: ${data}/eval_prompts.jsonl\n"
    "    iterations: 12\n"
    "    rollout_batch_size: 8\n"
    "    minibatch_size: 4\n"
    "    ppo_epochs: 2\n"
    "    max_new_tokens: 12\n"
    "    lr: 1.0e-4\n"
    "    eval_every: 4\n"
    "    save_every: 2\n";

void expect_same_weights(const fs::path& a, const fs::path& b) {
  Transformer x = load_transformer(a, torch::kCPU), y = load_transformer(b, torch::kCPU);
  auto px = x->named_parameters(), py = y->named_parameters();
  ASSERT_EQ(px.size(), py.size());
  for (const auto& item : px) EXPECT_TRUE(torch::equal(item.value(), py[item.key()])) << a << ": " << item.key();
}

class ResumeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(scratch_dir("resume"));
    write_file(*dir_ / "r.yaml", kRecipe);
    auto r = run_nurture("run " + (*dir_ / "r.yaml").string() + " --output " + (*dir_ / "straight").string());
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }

  // Runs the recipe into `out`, sends `signals` (e.g. "TERM" or "TERM TERM") once `stage` has
  // written its first checkpoint, and returns that run's exit status and output.
  static CommandResult interrupted(const fs::path& out, const std::string& stage, const std::string& signals) {
    const std::string script =
        "'" + nurture_binary().string() + "' run '" + (*dir_ / "r.yaml").string() + "' --output '" + out.string() +
        "' > '" + out.string() + ".out' 2> '" + out.string() + ".err' &\n"
        "pid=$!\n"
        "for i in $(seq 1 1200); do ls '" + (out / stage / "checkpoints").string() +
        "' 2>/dev/null | grep -q '^step-[0-9]*$' && break; kill -0 $pid 2>/dev/null || break; sleep 0.05; done\n"
        "for s in " + signals + "; do kill -$s $pid; done\n"
        "wait $pid; echo $?\n";
    CommandResult r = run_shell(script);
    CommandResult run;
    run.exit_code = std::stoi(r.out);
    run.out = read_file(out.string() + ".out");
    run.err = read_file(out.string() + ".err");
    return run;
  }

  static fs::path* dir_;
};

fs::path* ResumeTest::dir_ = nullptr;

TEST_F(ResumeTest, EveryStageResumesExactlyAfterSigterm) {
  for (const std::string stage : {"pretrain", "sft", "ppo"}) {
    const fs::path out = *dir_ / ("preempted-" + stage);
    // Earlier stages come from the uninterrupted run, so that only `stage` is interrupted.
    fs::create_directories(out);
    for (const char* earlier : {"data", "tokenizer", "pretrain", "sft"}) {
      if (earlier == stage) break;
      fs::copy(*dir_ / "straight" / earlier, out / earlier, fs::copy_options::recursive);
    }
    const CommandResult first = interrupted(out, stage, "TERM");
    ASSERT_EQ(first.exit_code, 3) << first.out << first.err;
    EXPECT_THAT(first.err, HasSubstr("[" + stage + "] interrupted: stopped at "));
    EXPECT_THAT(first.err, HasSubstr("resumes it: run the same command again, without --force"));
    EXPECT_EQ(json::parse(read_file(out / stage / "stage.json"))["status"], "interrupted");

    auto again = run_nurture("run " + (*dir_ / "r.yaml").string() + " --output " + out.string());
    ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
    EXPECT_THAT(again.out, HasSubstr("[" + stage + "] resuming from the checkpoint at "));
    std::cout << "[resume] " << stage << ": " << first.err.substr(first.err.find("interrupted: ")) << "         "
              << again.out.substr(again.out.find("[" + stage + "] resuming"), 80) << "..." << std::endl;

    expect_same_weights(out / stage / "model", *dir_ / "straight" / stage / "model");
    EXPECT_EQ(metrics_without_timing(out / stage / "metrics.jsonl"),
              metrics_without_timing(*dir_ / "straight" / stage / "metrics.jsonl"))
        << stage;
  }
}

// A second signal while the first is being handled kills the process at once, by whichever of
// SIGINT and SIGTERM came second (threads may take them in either order). No output is presented
// as complete, the newest checkpoint is intact, and the same command resumes from it to the
// uninterrupted run's weights.
TEST_F(ResumeTest, ASecondSignalStopsAtOnceAndCorruptsNothing) {
  const fs::path out = *dir_ / "twice";
  const CommandResult first = interrupted(out, "pretrain", "INT TERM");
  EXPECT_THAT(first.exit_code, ::testing::AnyOf(128 + SIGINT, 128 + SIGTERM)) << first.out << first.err;
  EXPECT_FALSE(fs::exists(out / "pretrain" / "model"));
  EXPECT_NE(json::parse(read_file(out / "pretrain" / "stage.json"))["status"], "done");
  const auto checkpoints = list_checkpoints(out / "pretrain");
  ASSERT_FALSE(checkpoints.empty());
  std::string problem;
  EXPECT_TRUE(verify_checkpoint_dir(checkpoints.front(), &problem)) << problem;

  auto again = run_nurture("run " + (*dir_ / "r.yaml").string() + " --output " + out.string());
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  expect_same_weights(out / "pretrain" / "model", *dir_ / "straight" / "pretrain" / "model");
  expect_same_weights(out / "ppo" / "model", *dir_ / "straight" / "ppo" / "model");
}

}  // namespace
}  // namespace nurture
