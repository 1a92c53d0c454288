// The ppo stage end to end on a tiny world: a SentencePiece tokenizer trained here, a randomly
// initialised llama_micro policy, rule-based rewards registered by the test. Recipes go through
// load_recipe (validation, defaults) and the stage runs through its registry entry, as
// `nurture run` does it.
#include <gmock/gmock.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "modules/model/heads.h"
#include "modules/model/model_dir.h"
#include "modules/text/tokenizer.h"
#include "pipelines/runner/registries.h"
#include "pipelines/runner/runner.h"
#include "pipelines/train/model_setup.h"
#include "pipelines/train/trainer.h"
#include "tests/recipe_files.h"
#include "tests/test_util.h"
#include "tests/tiny_world.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
using namespace nurture::testing;
namespace fs = std::filesystem;

// Share of the reply's characters that are 'e': a dense reward a random policy can climb.
double letter_e_share(const RewardInput& in) {
  if (in.response.empty()) return 0.0;
  return static_cast<double>(std::count(in.response.begin(), in.response.end(), 'e')) /
         static_cast<double>(in.response.size());
}

// ---- the tiny world, built once ---------------------------------------------------------------------

class PpoTest : public Seeded {
 protected:
  static void SetUpTestSuite() {
    auto& rewards = registries().rewards;
    if (!rewards.contains("test_letter_e")) rewards.add("test_letter_e", letter_e_share);
    if (!rewards.contains("test_zero")) rewards.add("test_zero", [](const RewardInput&) { return 0.0; });

    world_ = new fs::path(scratch_dir("ppo_world"));
    const fs::path& w = *world_;
    const OnPolicyWorld world = on_policy_world(w, "1 + 2 = 3");
    std::ostringstream prompts, eval;
    for (int i = 0; i < 40; ++i)
      prompts << json{{"prompt", "Tell me about " + world.objects[i % 6] + " " + std::to_string(i)},
                      {"reference", "e"}}.dump()
              << "\n";
    for (int i = 0; i < 6; ++i)
      eval << json{{"prompt", "What " + world.verbs[i] + " " + world.subjects[i] + "?"},
                   {"reference", i % 2 ? "e" : ""}}.dump()
           << "\n";
    write_file(w / "prompts.jsonl", prompts.str());
    write_file(w / "eval_prompts.jsonl", eval.str());
  }
  static void TearDownTestSuite() {
    delete world_;
    world_ = nullptr;
  }

  void SetUp() override {
    Seeded::SetUp();
    dir_ = scratch_dir(std::string("ppo_") + ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  // The settings every test shares: small rollouts, short replies, a learning rate a tiny model
  // moves with.
  static std::string base_settings() {
    const fs::path& w = *world_;
    return "    init_from: " + (w / "policy").string() + "\n" +
           "    prompts: " + (w / "prompts.jsonl").string() + "\n" +
           "    rollout_batch_size: 16\n"
           "    minibatch_size: 8\n"
           "    max_new_tokens: 8\n"
           "    lr: 3.0e-3\n"
           "    value_lr: 3.0e-3\n";
  }

  // Runs the stage `ppo` of a one-stage recipe into `out` and returns its metrics.
  json run_ppo(const fs::path& out, const std::string& settings, const std::vector<std::string>& overrides = {}) {
    return run_one_stage(dir_, out, "ppo", settings, overrides);
  }

  static std::vector<json> records(const fs::path& stage_dir, const std::string& split) {
    return metric_records(stage_dir, split);
  }

  static fs::path* world_;
  fs::path dir_;
};

fs::path* PpoTest::world_ = nullptr;

// ---- learning --------------------------------------------------------------------------------------

// A random policy learns to say 'e' more: the mean score of the last iterations is well above the
// first's (measured: 0.03 -> 0.39), while the KL to the reference grows but stays finite.
TEST_F(PpoTest, RewardRisesOnARuleBasedReward) {
  const json m = run_ppo(dir_ / "out", base_settings() +
                                           "    reward_functions: [test_letter_e]\n"
                                           "    iterations: 12\n"
                                           "    kl_coef: 0.01\n"
                                           "    save_every: 0\n",
                         {"stages.ppo.lr=1e-2"});
  const auto train = records(dir_ / "out" / "ppo", "train");
  ASSERT_EQ(train.size(), 12u);
  const double first = train[0]["score_mean"].get<double>();
  double last = 0;
  for (size_t i = train.size() - 3; i < train.size(); ++i) last += train[i]["score_mean"].get<double>() / 3;
  std::cout << "[ppo test] score (share of 'e') iteration 1 " << first << " -> last 3 " << last
            << ", kl " << m["kl"] << ", entropy " << train[0]["entropy"] << " -> " << m["entropy"] << "\n";
  EXPECT_GT(last, first + 0.2);
  EXPECT_GT(last, 4.0 * first);
  EXPECT_GT(m["reward_mean"].get<double>(), train[0]["reward_mean"].get<double>() + 0.1);
  EXPECT_TRUE(std::isfinite(m["kl"].get<double>()));
  EXPECT_GT(m["kl"].get<double>(), 0.0);
  EXPECT_EQ(m["iterations"], 12);
  // The policy it leaves behind is a model directory of kind lm.
  EXPECT_EQ(read_model_kind(dir_ / "out" / "ppo" / "model"), "lm");
}

// ---- the KL penalty ---------------------------------------------------------------------------------

// With a reward of 0 everywhere, π = π_ref at the start: the KL is exactly 0, so every reward,
// return and advantage is 0 (the value head starts at 0), both losses are 0, and the zero
// gradients leave both models where they were — KL stays exactly 0. (The update recomputes
// π_old on reshuffled minibatches, so the ratio is 1 up to float rounding, not bit for bit.)
TEST_F(PpoTest, ZeroRewardLeavesThePolicyAtTheReference) {
  run_ppo(dir_ / "out", base_settings() +
                            "    reward_functions: [test_zero]\n"
                            "    iterations: 2\n"
                            "    kl_coef: 0.1\n"
                            "    save_every: 0\n");
  const auto train = records(dir_ / "out" / "ppo", "train");
  ASSERT_EQ(train.size(), 2u);
  for (const auto& it : train) {
    EXPECT_EQ(it["kl"].get<double>(), 0.0) << it.dump();
    EXPECT_EQ(it["reward_mean"].get<double>(), 0.0);
    EXPECT_EQ(it["value_mean"].get<double>(), 0.0);
    EXPECT_EQ(it["return_mean"].get<double>(), 0.0);
    EXPECT_EQ(it["policy_loss"].get<double>(), 0.0);
    EXPECT_EQ(it["value_loss"].get<double>(), 0.0);
    EXPECT_EQ(it["clip_fraction"].get<double>(), 0.0);
    EXPECT_LT(it["approx_kl"].get<double>(), 1e-12);
    EXPECT_GT(it["entropy"].get<double>(), 4.0);     // a random policy over ~320 tokens
  }
}

// reward = score − β·KL per reply, with the KL the k3 estimator gives (never negative); β follows
// Ziegler et al.'s controller: β ← β·(1 + clip(KL/target − 1, ±0.2)·rollout_batch_size/horizon).
TEST_F(PpoTest, KlPenaltyAndAdaptiveController) {
  run_ppo(dir_ / "out", base_settings() +
                            "    reward_functions: [test_letter_e]\n"
                            "    iterations: 5\n"
                            "    kl_coef: 0.2\n"
                            "    kl_estimator: k3\n"
                            "    adaptive_kl: true\n"
                            "    target_kl: 0.05\n"
                            "    kl_horizon: 40\n"
                            "    save_every: 0\n");
  const auto train = records(dir_ / "out" / "ppo", "train");
  ASSERT_EQ(train.size(), 5u);
  EXPECT_EQ(train[0]["kl"].get<double>(), 0.0);  // before the first update π = π_ref
  EXPECT_EQ(train[0]["kl_coef"].get<double>(), 0.2);
  double beta = 0.2;
  for (size_t i = 0; i < train.size(); ++i) {
    const double kl = train[i]["kl"].get<double>();
    EXPECT_DOUBLE_EQ(train[i]["kl_coef"].get<double>(), beta) << "iteration " << i + 1;
    EXPECT_GE(kl, 0.0);
    const double score = train[i]["score_mean"].get<double>();
    EXPECT_NEAR(train[i]["reward_mean"].get<double>(), score - beta * kl, 1e-6);
    beta *= 1.0 + std::clamp(kl / 0.05 - 1.0, -0.2, 0.2) * 16.0 / 40.0;
  }
  EXPECT_GT(train.back()["kl"].get<double>(), 0.0);
  // β first shrinks (KL 0 < target: factor 1 − 0.2·16/40 = 0.92).
  EXPECT_DOUBLE_EQ(train[1]["kl_coef"].get<double>(), 0.2 * 0.92);
}

// ---- the reward model -------------------------------------------------------------------------------

// A reward model whose score head ignores its input (weight 0, bias 0.5) scores every reply 0.5:
// with weight 2 and a missing-EOS penalty of −1, the score is 1 − (1 − stopped fraction), and the
// value model starts from the reward model's backbone.
TEST_F(PpoTest, RewardModelScoresAndMissingEosPenalty) {
  Tokenizer tokenizer = Tokenizer::load((*world_ / "policy").string());
  Transformer backbone = load_transformer(*world_ / "policy", torch::kCPU);
  RewardModel rm(backbone->options);
  rm->load_backbone(backbone);
  {
    torch::NoGradGuard no_grad;
    rm->score->weight.zero_();
    rm->score->bias.fill_(0.5);
  }
  save_model_dir(dir_ / "rm", *rm, rm->options, "reward", tokenizer);

  const json m = run_ppo(dir_ / "out", base_settings() + "    reward_model: " + (dir_ / "rm").string() +
                                           "\n"
                                           "    reward_model_weight: 2.0\n"
                                           "    missing_eos_penalty: -1.0\n"
                                           "    iterations: 2\n"
                                           "    save_every: 0\n");
  for (const auto& it : records(dir_ / "out" / "ppo", "train")) {
    const double stopped = it["stopped_fraction"].get<double>();
    EXPECT_NEAR(it["score_mean"].get<double>(), 1.0 - (1.0 - stopped), 1e-6) << it.dump();
  }
  EXPECT_LT(m["stopped_fraction"].get<double>(), 1.0);  // the penalty was exercised
}

// ---- resuming ---------------------------------------------------------------------------------------

// Stopping after 2 iterations and continuing to 4 gives exactly the uninterrupted run: the same
// metrics line for line (evaluations included), the same final metrics and the same weights; so
// does a run stopped by a stop request after its first iteration.
TEST_F(PpoTest, ResumedRunReproducesTheUninterruptedOne) {
  const std::string settings = base_settings() +
                               "    reward_functions: [test_letter_e, exact_match]\n"
                               "    eval_prompts: " + (*world_ / "eval_prompts.jsonl").string() + "\n" +
                               "    eval_every: 2\n"
                               "    save_every: 0\n"
                               "    adaptive_kl: true\n"
                               "    kl_horizon: 100\n"
                               "    ppo_epochs: 2\n"
                               "    iterations: 4\n";
  const json whole = run_ppo(dir_ / "whole", settings);
  const json first = run_ppo(dir_ / "resumed", settings, {"stages.ppo.iterations=2"});
  EXPECT_EQ(first["iterations"], 2);
  const json resumed = run_ppo(dir_ / "resumed", settings);

  EXPECT_EQ(resumed.dump(), whole.dump());
  EXPECT_TRUE(whole.contains("eval_accuracy"));
  EXPECT_TRUE(whole.contains("eval_score"));
  const auto lines = metrics_without_timing(dir_ / "whole" / "ppo" / "metrics.jsonl");
  EXPECT_EQ(metrics_without_timing(dir_ / "resumed" / "ppo" / "metrics.jsonl"), lines);
  // Each iteration's line says where its time went.
  std::istringstream log(read_file(dir_ / "whole" / "ppo" / "metrics.jsonl"));
  std::string first_line;
  std::getline(log, first_line);
  const json first_iteration = json::parse(first_line);
  for (const char* key : {"time_generation_s", "time_scoring_s", "time_training_s"})
    EXPECT_GT(first_iteration.value(key, -1.0), 0.0) << key;
  Transformer a = load_transformer(dir_ / "whole" / "ppo" / "model", torch::kCPU);
  Transformer b = load_transformer(dir_ / "resumed" / "ppo" / "model", torch::kCPU);
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (const auto& item : pa) EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();

  // A stop request (SIGTERM) ends the stage after the current iteration, with a checkpoint that
  // continues the same way.
  request_stop();
  EXPECT_THROW(run_ppo(dir_ / "interrupted", settings), StageInterrupted);
  clear_stop_request();
  const auto state = json::parse(read_file(dir_ / "interrupted" / "ppo" / "checkpoints" / "step-00000001" / "state.json"));
  EXPECT_EQ(state["extra"]["iteration"], 1);
  EXPECT_EQ(run_ppo(dir_ / "interrupted", settings).dump(), whole.dump());
}

// ---- errors -----------------------------------------------------------------------------------------

TEST_F(PpoTest, NeedsARewardAndKnownRewardFunctions) {
  try {
    run_ppo(dir_ / "out", base_settings());
    FAIL() << "a stage without a reward ran";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("stages.ppo: PPO needs a reward: set reward_model"));
  }
  try {
    run_ppo(dir_ / "out", base_settings() + "    reward_functions: [exact_mach]\n");
    FAIL() << "an unknown reward function was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("stages.ppo.reward_functions: unknown reward function 'exact_mach'"));
    EXPECT_THAT(e.what(), HasSubstr("did you mean 'exact_match'?"));
  }
}

}  // namespace
}  // namespace nurture
