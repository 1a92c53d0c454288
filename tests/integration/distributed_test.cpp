// Data parallelism on c10d (Gloo, loopback), through `nurture launch` as users run it: 2 ranks x
// batch B equal to 1 rank x 2B (float64) for pretrain, for SFT with uneven token counts and for
// GRPO (its sampling included), the quickstart end to end on 2 processes, and a worker that dies
// or hangs stopping the job within the timeout with the last checkpoint intact.
#include <gmock/gmock.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "modules/model/model_dir.h"
#include "pipelines/data/data.h"
#include "pipelines/runtime/distributed.h"
#include "pipelines/train/checkpoint.h"
#include "pipelines/train/manifest.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- equivalence ---------------------------------------------------------------------------------

// A world small enough to train a few float64 steps of pretrain and SFT in seconds.
std::string tiny_world_recipe() {
  return "seed: 3\n"
         "threads: 1\n"
         "precision: fp64\n"
         "stages:\n"
         "  data: {pipeline: demo_data, max_operand: 4, prose_repeats: 2}\n"
         "  tokenizer: {pipeline: tokenizer, inputs: [\"${data}/pretrain.txt\"], vocab_size: 400, "
         "character_coverage: 1.0}\n"
         "  pretrain:\n"
         "    pipeline: pretrain\n"
         "    tokenizer: tokenizer\n"
         "    train: [\"${data}/pretrain.txt\"]\n"
         "    val: [\"${data}/pretrain_val.txt\"]\n"
         "    model: {preset: llama_micro, n_layer: 2, n_embd: 32, n_head: 2, n_kv_head: 1, block_size: 48}\n"
         "    context: 16\n"
         "    batch_size: 2\n"
         "    max_steps: 5\n"
         "    warmup_steps: 1\n"
         "    lr: 1.0e-2\n"
         "    eval_every: 0\n"
         "  sft:\n"
         "    pipeline: sft\n"
         "    init_from: pretrain\n"
         "    train: ${data}/sft.jsonl\n"
         "    batch_size: 2\n"
         "    max_steps: 5\n"
         "    warmup_steps: 1\n"
         "    lr: 1.0e-2\n"
         "    eval_every: 0\n";
}

// The tiny world's recipe; with `grpo`, also two GRPO iterations on rewards a barely trained model scores unevenly, with the statistics that
// span the ranks: the batch's reward std (scale_rewards: batch) and dapo's token count.
std::string tiny_recipe(bool grpo = false) {
  const std::string grpo_stage =
      "  grpo:\n"
      "    pipeline: grpo\n"
      "    init_from: sft\n"
      "    prompts: ${data}/prompts.jsonl\n"
      "    reward_functions: [{name: format, pattern: \".*e.*\"}, {name: length, budget: 2, penalty: 0.1}]\n"
      "    prompts_per_iteration: 2\n"
      "    group_size: 3\n"
      "    max_new_tokens: 6\n"
      "    iterations: 2\n"
      "    scale_rewards: batch\n"
      "    loss_type: dapo\n"
      "    lr: 1.0e-2\n"
      "    eval_every: 0\n"
      "    save_every: 0\n";
  return tiny_world_recipe() + (grpo ? grpo_stage : "");
}

// max |a - b| / max |b| over the tensors of two model directories; fails on any other difference.
double relative_difference(const fs::path& a_dir, const fs::path& b_dir, double* moved_from = nullptr,
                           const fs::path& start_dir = {}) {
  Transformer a = load_transformer(a_dir, torch::kCPU), b = load_transformer(b_dir, torch::kCPU);
  auto pa = a->named_parameters(), pb = b->named_parameters();
  double worst = 0, moved = 0;
  for (const auto& item : pb) {
    const auto& x = pa[item.key()];
    const auto& y = item.value();
    EXPECT_EQ(x.scalar_type(), torch::kDouble) << item.key();
    worst = std::max(worst, ((x - y).abs().max() / y.abs().max().clamp_min(1e-300)).item<double>());
  }
  if (moved_from) {
    Transformer s = load_transformer(start_dir, torch::kCPU);
    auto ps = s->named_parameters();
    for (const auto& item : pb) moved = std::max(moved, (item.value() - ps[item.key()]).abs().max().item<double>());
    *moved_from = moved;
  }
  return worst;
}

TEST(Distributed, TwoRanksOfBatchBMatchOneRankOfBatch2B) {
  const fs::path dir = scratch_dir("dist_equivalence");
  write_file(dir / "r.yaml", tiny_recipe(/*grpo=*/true));
  auto two = run_nurture("launch --nproc 2 -- run " + (dir / "r.yaml").string() + " --output " + (dir / "two").string());
  ASSERT_EQ(two.exit_code, 0) << two.out << two.err;
  auto one = run_nurture("run " + (dir / "r.yaml").string() + " --output " + (dir / "one").string() +
                         " --set stages.pretrain.batch_size=4 --set stages.sft.batch_size=4" +
                         " --set stages.grpo.prompts_per_iteration=4");
  ASSERT_EQ(one.exit_code, 0) << one.out << one.err;
  EXPECT_THAT(two.out, HasSubstr("[rank 0] [run] 2 ranks (torchrun, 2 on this node), backend gloo"));
  EXPECT_THAT(two.out, ::testing::Not(HasSubstr("[rank 1] [pretrain]")));  // rank 0 alone reports

  double pretrain_moved = 0;
  const double pretrain = relative_difference(dir / "two" / "pretrain" / "model", dir / "one" / "pretrain" / "model");
  const double sft = relative_difference(dir / "two" / "sft" / "model", dir / "one" / "sft" / "model",
                                         &pretrain_moved, dir / "one" / "pretrain" / "model");
  std::cout << "[equivalence] pretrain: max relative difference " << pretrain << "; sft: " << sft
            << " (sft moved the weights by up to " << pretrain_moved << ")" << std::endl;
  EXPECT_LE(pretrain, 1e-10);
  EXPECT_LE(sft, 1e-10);
  EXPECT_GT(pretrain_moved, 1e-3);  // it trained: equal weights are not equal by standing still
  // GRPO: each rank samples its own prompts' groups, every reply from a seed of its own, so the
  // two ranks draw the replies one rank draws, and train to the same weights.
  double grpo_moved = 0;
  const double grpo = relative_difference(dir / "two" / "grpo" / "model", dir / "one" / "grpo" / "model",
                                          &grpo_moved, dir / "one" / "sft" / "model");
  std::cout << "[equivalence] grpo: max relative difference " << grpo << " (moved the weights by up to "
            << grpo_moved << ")" << std::endl;
  EXPECT_LE(grpo, 1e-10);
  EXPECT_GT(grpo_moved, 1e-4);
  const auto first_grpo_line = [&](const std::string& run) {
    std::istringstream in(read_file(dir / run / "grpo" / "metrics.jsonl"));
    std::string line;
    std::getline(in, line);
    return json::parse(line);
  };
  EXPECT_NEAR(first_grpo_line("two")["reward_mean"].get<double>(),
              first_grpo_line("one")["reward_mean"].get<double>(), 1e-12);
  EXPECT_GT(first_grpo_line("one")["reward_std"].get<double>(), 0.0);

  // The SFT micro-batches of the two ranks held different numbers of assistant tokens (bare and
  // full answers), so averaging per-rank means would not have matched.
  const Tokenizer tokenizer = Tokenizer::load((dir / "one" / "tokenizer" / "tokenizer.model").string());
  ChatMLTemplate chatml;
  ChatData data = load_chat_data(dir / "one" / "data" / "sft.jsonl", tokenizer, chatml, ChatDataOptions());
  ShuffledOrder order(3, static_cast<int64_t>(data.examples.size()));
  auto tokens = [&](int64_t first) {
    int64_t n = 0;
    for (int64_t i = first; i < first + 2; ++i)
      for (uint8_t m : data.examples[order.at(i)].loss_mask) n += m;
    return n;
  };
  EXPECT_NE(tokens(0), tokens(2)) << "the first step's ranks held the same token counts";

  // Only rank 0 wrote: each logged step once.
  const std::string metrics = read_file(dir / "two" / "pretrain" / "metrics.jsonl");
  EXPECT_EQ(std::count(metrics.begin(), metrics.end(), '\n'), std::count(metrics.begin(), metrics.end(), '{'));
  EXPECT_EQ(json::parse(read_file(dir / "two" / "summary.json"))["ranks"], 2);
}

// A checkpoint written by 2 ranks of batch B resumes on 1 rank of batch 2B: the optimizer state is
// the same on every rank and the data position counts global batches, so the resumed run ends
// where an uninterrupted 1-rank run does.
TEST(Distributed, ACheckpointOfTwoRanksResumesOnOne) {
  const fs::path dir = scratch_dir("dist_resume");
  write_file(dir / "r.yaml", tiny_recipe());
  const std::string steps =
      " --set stages.pretrain.max_steps=60 --set stages.pretrain.lr=1.0e-3 --set stages.pretrain.save_every=1"
      " --set stages.sft.max_steps=1";
  const std::string script =
      "'" + nurture_binary().string() + "' launch --nproc 2 -- run '" + (dir / "r.yaml").string() + "' --output '" +
      (dir / "resumed").string() + "'" + steps + " > '" + (dir / "out").string() + "' 2> '" +
      (dir / "err").string() + "' &\n"
      "launcher=$!\n"
      "for i in $(seq 1 1200); do ls '" + (dir / "resumed" / "pretrain" / "checkpoints").string() +
      "' 2>/dev/null | grep -q '^step-[0-9]*$' && break; kill -0 $launcher 2>/dev/null || break; sleep 0.02; done\n"
      "kill -TERM $launcher; wait $launcher; echo $?\n";
  auto first = run_shell(script);
  ASSERT_EQ(std::stoi(first.out), 3) << read_file(dir / "out") << read_file(dir / "err");
  const std::string stopped = read_file(dir / "err");
  ASSERT_THAT(stopped, HasSubstr("[pretrain] interrupted: stopped at step "));

  const std::string on_one = " --set stages.pretrain.batch_size=4 --set stages.sft.batch_size=4";
  auto resumed = run_nurture("run " + (dir / "r.yaml").string() + " --output " + (dir / "resumed").string() + steps + on_one);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  EXPECT_THAT(resumed.out, HasSubstr("[pretrain] resuming from the checkpoint at step "));
  auto straight = run_nurture("run " + (dir / "r.yaml").string() + " --output " + (dir / "straight").string() + steps + on_one);
  ASSERT_EQ(straight.exit_code, 0) << straight.out << straight.err;

  const double difference =
      relative_difference(dir / "resumed" / "pretrain" / "model", dir / "straight" / "pretrain" / "model");
  const auto at = stopped.find("stopped at step ");
  std::cout << "[resume] 2 ranks " << stopped.substr(at, stopped.find(';', at) - at) << ", resumed on 1 rank: max "
            << "relative difference to an uninterrupted 1-rank run " << difference << std::endl;
  EXPECT_LE(difference, 1e-10);
}

// ---- the quickstart on two processes -------------------------------------------------------------------

TEST(Distributed, QuickstartRunsOnTwoProcesses) {
  const fs::path out = scratch_dir("dist_quickstart") / "run";
  const std::string overrides =
      " --set stages.pretrain.max_steps=20 --set stages.pretrain.eval_every=0 --set stages.sft.max_steps=8"
      " --set stages.sft.eval_every=0 --set stages.rm.max_steps=8 --set stages.rm.eval_every=0"
      " --set stages.ppo.iterations=2 --set stages.ppo.rollout_batch_size=8 --set stages.ppo.minibatch_size=8"
      " --set stages.ppo.eval_every=0"
      " --set stages.eval.samples=1";
  auto r = run_nurture("launch --nproc 2 -- run recipes/quickstart.yaml --output " + out.string() + overrides);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const json summary = json::parse(read_file(out / "summary.json"));
  EXPECT_EQ(summary["status"], "done");
  EXPECT_EQ(summary["ranks"], 2);
  for (const auto& stage : summary["stages"]) EXPECT_EQ(stage["status"], "done") << stage["name"];
  // Global batches: 2 ranks x 16 windows x 64 tokens per step.
  for (const auto& stage : summary["stages"])
    if (stage["name"] == "pretrain") EXPECT_EQ(stage["metrics"]["tokens"], 20 * 2 * 16 * 64);
  EXPECT_TRUE(summary.contains("comparison"));
  EXPECT_THAT(r.out, HasSubstr("[rank 0] [eval] comparison"));
  EXPECT_THAT(r.err, HasSubstr("[launch] all 2 worker(s) finished"));
}

// ---- faults ----------------------------------------------------------------------------------------

// Starts a 2-rank pretrain that checkpoints every step, does `act` to rank 1 once a checkpoint
// exists, and returns the launch's exit status, its output and how long it took after `act`.
struct FaultRun {
  int exit_code = -1;
  double seconds_after = -1;
  std::string out, err;
};

FaultRun fault_run(const fs::path& dir, const std::string& act) {
  write_file(dir / "r.yaml", tiny_recipe() + "distributed: {timeout_s: 4}\n");
  const std::string script =
      "'" + nurture_binary().string() + "' launch --nproc 2 --grace 2 -- run '" + (dir / "r.yaml").string() +
      "' --output '" + (dir / "run").string() + "' --set precision=fp32 --set stages.pretrain.max_steps=100000"
      " --set stages.pretrain.save_every=1 > '" + (dir / "out").string() + "' 2> '" + (dir / "err").string() + "' &\n"
      "launcher=$!\n"
      "for i in $(seq 1 1200); do ls '" + (dir / "run" / "pretrain" / "checkpoints").string() +
      "' 2>/dev/null | grep -q '^step-[0-9]*$' && break; kill -0 $launcher 2>/dev/null || break; sleep 0.1; done\n"
      "pid=$(sed -n 's/^\\[launch\\] rank 1: pid //p' '" + (dir / "err").string() + "')\n"
      "start=$(date +%s.%N)\n" + act + " \"$pid\"\n"
      "wait $launcher; status=$?\n"
      "echo \"$status $(awk \"BEGIN { print $(date +%s.%N) - $start }\")\"\n";
  auto r = run_shell(script);
  FaultRun f;
  std::istringstream(r.out) >> f.exit_code >> f.seconds_after;
  f.out = read_file(dir / "out");
  f.err = read_file(dir / "err");
  return f;
}

void expect_intact_checkpoint(const fs::path& stage_dir) {
  const auto checkpoints = list_checkpoints(stage_dir);
  ASSERT_FALSE(checkpoints.empty());
  std::string problem;
  EXPECT_TRUE(verify_checkpoint_dir(checkpoints.front(), &problem)) << checkpoints.front() << ": " << problem;
}

TEST(DistributedFaults, AKilledWorkerStopsTheJobNamingItsRank) {
  const fs::path dir = scratch_dir("dist_killed");
  const FaultRun f = fault_run(dir, "kill -9");
  std::cout << "[fault] kill -9 of rank 1: launch exited " << f.exit_code << " after " << f.seconds_after << " s\n"
            << f.err.substr(std::min(f.err.size(), f.err.find("[launch] rank 1 was"))) << std::endl;
  EXPECT_NE(f.exit_code, 0);
  EXPECT_THAT(f.err, HasSubstr("[launch] rank 1 was killed by signal 9 (Killed); stopping the other ranks"));
  EXPECT_GE(f.seconds_after, 0);
  EXPECT_LT(f.seconds_after, 4 + 2 + 5);  // the collective timeout, the grace period, slack
  expect_intact_checkpoint(dir / "run" / "pretrain");
}

TEST(DistributedFaults, AHungWorkerMakesTheOthersTimeOut) {
  const fs::path dir = scratch_dir("dist_hung");
  const FaultRun f = fault_run(dir, "kill -STOP");
  std::cout << "[fault] SIGSTOP of rank 1: launch exited " << f.exit_code << " after " << f.seconds_after << " s"
            << std::endl;
  EXPECT_NE(f.exit_code, 0);
  EXPECT_THAT(f.err, HasSubstr("[rank 0] [pretrain] error: rank 0 of 2: "));
  EXPECT_THAT(f.err, HasSubstr("Last seen: rank 0 at pretrain step"));
  EXPECT_THAT(f.err, HasSubstr("[launch] rank 0 exited with status 1; stopping the other ranks"));
  EXPECT_LT(f.seconds_after, 4 + 2 + 8);
  expect_intact_checkpoint(dir / "run" / "pretrain");
}

}  // namespace
}  // namespace nurture
