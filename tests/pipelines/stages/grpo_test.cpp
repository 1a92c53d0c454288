// The grpo stage end to end on a tiny world: a SentencePiece tokenizer trained here, a randomly
// initialised llama_micro policy, a rule-based reward registered by the test. Recipes go through
// load_recipe (validation, defaults) and the stage runs through its registry entry, as
// `nurture run` does it.
#include <gmock/gmock.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

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

// Share of the reply's characters that are 'e': a dense reward a random policy can climb, and
// one whose replies to a prompt almost never score the same.
double share_of_e(const RewardInput& in) {
  if (in.response.empty()) return 0.0;
  return static_cast<double>(std::count(in.response.begin(), in.response.end(), 'e')) /
         static_cast<double>(in.response.size());
}

// 1 for a reply with a 'z' in it: rare for a random policy, so most groups score all 0.
double has_z(const RewardInput& in) { return in.response.find('z') != std::string::npos ? 1.0 : 0.0; }

class GrpoTest : public Seeded {
 protected:
  static void SetUpTestSuite() {
    auto& rewards = registries().rewards;
    if (!rewards.contains("test_share_of_e")) rewards.add("test_share_of_e", share_of_e);
    if (!rewards.contains("test_has_z")) rewards.add("test_has_z", has_z);

    world_ = new fs::path(scratch_dir("grpo_world"));
    const fs::path& w = *world_;
    const OnPolicyWorld world = on_policy_world(w, "zero");
    std::ostringstream prompts, eval;
    for (int i = 0; i < 40; ++i)
      prompts << json{{"prompt", "Tell me about " + world.objects[i % 6] + " " + std::to_string(i)},
                      {"answer", i}}.dump()
              << "\n";
    for (int i = 0; i < 6; ++i)
      eval << json{{"prompt", "What " + world.verbs[i] + " " + world.subjects[i] + "?"}, {"answer", "e"}}.dump()
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
    dir_ = scratch_dir(std::string("grpo_") + ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  // Small groups, short replies, a learning rate a tiny model moves with.
  static std::string base_settings() {
    const fs::path& w = *world_;
    return "    init_from: " + (w / "policy").string() + "\n" +
           "    prompts: " + (w / "prompts.jsonl").string() + "\n" +
           "    prompts_per_iteration: 4\n"
           "    group_size: 4\n"
           "    max_new_tokens: 8\n"
           "    lr: 1.0e-2\n";
  }

  // Runs the stage `grpo` of a one-stage recipe into `out` and returns its metrics.
  json run_grpo(const fs::path& out, const std::string& settings, const std::vector<std::string>& overrides = {}) {
    return run_one_stage(dir_, out, "grpo", settings, overrides);
  }

  static std::vector<json> records(const fs::path& stage_dir, const std::string& split) {
    return metric_records(stage_dir, split);
  }

  static fs::path* world_;
  fs::path dir_;
};

fs::path* GrpoTest::world_ = nullptr;

// ---- learning --------------------------------------------------------------------------------------

// A random policy learns to say 'e' more, with no critic and no reference (beta 0: none is
// loaded, and no KL is logged). The sampler's log-probs are the training forward's up to float
// rounding, so with one pass per rollout the ratio never leaves [0.8, 1.2]: nothing is clipped.
TEST_F(GrpoTest, RewardRisesWithoutACriticOrAReference) {
  ::testing::internal::CaptureStdout();
  const json m = run_grpo(dir_ / "out", base_settings() +
                                            "    reward_functions: [test_share_of_e]\n"
                                            "    iterations: 12\n"
                                            "    save_every: 0\n",
                          {"stages.grpo.lr=3e-2"});
  const std::string log = ::testing::internal::GetCapturedStdout();
  const auto train = records(dir_ / "out" / "grpo", "train");
  ASSERT_EQ(train.size(), 12u);
  const double first = train[0]["reward_mean"].get<double>();
  double last = 0;
  for (size_t i = train.size() - 3; i < train.size(); ++i) last += train[i]["reward_mean"].get<double>() / 3;
  std::cout << "[grpo test] share of 'e' iteration 1 " << first << " -> last 3 " << last << ", gap "
            << train[0]["logprob_gap_max"] << ", entropy " << train[0]["entropy"] << " -> " << m["entropy"] << "\n";
  EXPECT_GT(last, first + 0.15);
  EXPECT_GT(last, 3.0 * first);
  EXPECT_NEAR(m["reward_test_share_of_e"].get<double>(), m["reward_mean"].get<double>(), 1e-12);  // weight 1
  EXPECT_THAT(log, ::testing::Not(HasSubstr("reference")));
  EXPECT_FALSE(train[0].contains("kl"));
  for (const auto& it : train) {
    EXPECT_LT(it["logprob_gap_max"].get<double>(), 1e-4) << it.dump();
    EXPECT_EQ(it["clip_low_fraction"].get<double>(), 0.0);
    EXPECT_EQ(it["clip_high_fraction"].get<double>(), 0.0);
  }
  EXPECT_EQ(read_model_kind(dir_ / "out" / "grpo" / "model"), "lm");
}

// With μ = 3 passes over one minibatch, π_old stays the sampling-time log-probs: the second and
// third passes see the ratio the first step moved, and some tokens are held at the clip range.
// (Were π_old recomputed before each pass, every pass would start at ratio 1 and nothing would
// be held.) With beta > 0 the reference is loaded and its k3 KL is logged, 0 before any update.
TEST_F(GrpoTest, PassesAfterTheFirstUseTheSamplingTimeLogprobs) {
  ::testing::internal::CaptureStdout();
  run_grpo(dir_ / "out", base_settings() +
                             "    reward_functions: [test_share_of_e]\n"
                             "    iterations: 3\n"
                             "    num_iterations: 3\n"
                             "    beta: 0.05\n"
                             "    save_every: 0\n",
           {"stages.grpo.lr=5e-2"});
  const std::string log = ::testing::internal::GetCapturedStdout();
  EXPECT_THAT(log, HasSubstr("reference: frozen copy of the policy (beta 0.0500)"));
  const auto train = records(dir_ / "out" / "grpo", "train");
  ASSERT_EQ(train.size(), 3u);
  double held = 0;
  for (const auto& it : train) held += it["clip_low_fraction"].get<double>() + it["clip_high_fraction"].get<double>();
  EXPECT_GT(held, 0.0);
  EXPECT_GT(train.back()["kl"].get<double>(), 0.0);
}

// ---- sampling ----------------------------------------------------------------------------------------

// A reply with a 'z' is rare: most groups score all 0 and teach nothing. Dynamic sampling draws
// more prompts in their place (up to 3 rounds of 4, the data cursor moving 4 prompts a round),
// and the rollout still holds 4 groups of 4.
TEST_F(GrpoTest, DynamicSamplingReplacesGroupsWhoseRewardsAreEqual) {
  run_grpo(dir_ / "out", base_settings() +
                             "    reward_functions: [test_has_z]\n"
                             "    dynamic_sampling: true\n"
                             "    max_sampling_rounds: 3\n"
                             "    iterations: 2\n"
                             "    save_every: 1\n");
  const auto train = records(dir_ / "out" / "grpo", "train");
  ASSERT_EQ(train.size(), 2u);
  EXPECT_GT(train[0]["zero_std_fraction"].get<double>(), 0.5);
  EXPECT_EQ(train[0]["sampling_rounds"], 3);
  const auto state = json::parse(read_file(dir_ / "out" / "grpo" / "checkpoints" / "step-00000001" / "state.json"));
  EXPECT_EQ(state["data_position"], 3 * 4);
  EXPECT_EQ(train[0]["response_length"].get<double>() > 0, true);
}

// DAPO's soft overlong penalty: with max_new_tokens 8 and a buffer of 4, a reply of all 8 tokens
// loses the whole penalty, one of 6 half of it; a random policy rarely stops, so most lose it all.
TEST_F(GrpoTest, OverlongRepliesArePenalisedSoftly) {
  run_grpo(dir_ / "out", base_settings() +
                             "    reward_functions: [test_has_z]\n"
                             "    overlong_buffer: 4\n"
                             "    overlong_penalty: 2.0\n"
                             "    iterations: 1\n"
                             "    save_every: 0\n");
  const auto it = records(dir_ / "out" / "grpo", "train").at(0);
  const double length = it["response_length"].get<double>(), stopped = it["stopped_fraction"].get<double>();
  // Without a stop, a reply is 8 tokens: −2 each; the rest pay less, never more.
  EXPECT_LE(it["reward_mean"].get<double>(), it["reward_test_has_z"].get<double>() - 2.0 * (1.0 - stopped) + 1e-9);
  EXPECT_LT(it["reward_mean"].get<double>(), -1.0) << it.dump() << " length " << length;
}

// ---- resuming ---------------------------------------------------------------------------------------

// Stopping after 2 iterations and continuing to 4 gives exactly the uninterrupted run (metrics line
// for line, evaluations included, and weights); so does a run stopped by a stop request.
TEST_F(GrpoTest, ResumedRunReproducesTheUninterruptedOne) {
  const std::string settings = base_settings() +
                               "    reward_functions: [test_share_of_e, exact_match]\n"
                               "    eval_prompts: " + (*world_ / "eval_prompts.jsonl").string() + "\n" +
                               "    eval_every: 2\n"
                               "    save_every: 0\n"
                               "    num_iterations: 2\n"
                               "    minibatch_size: 8\n"
                               "    iterations: 4\n";
  const json whole = run_grpo(dir_ / "whole", settings);
  const json first = run_grpo(dir_ / "resumed", settings, {"stages.grpo.iterations=2"});
  EXPECT_EQ(first["iterations"], 2);
  const json resumed = run_grpo(dir_ / "resumed", settings);
  EXPECT_EQ(resumed.dump(), whole.dump());
  EXPECT_TRUE(whole.contains("eval_test_share_of_e"));
  EXPECT_TRUE(whole.contains("eval_exact_match"));
  EXPECT_EQ(metrics_without_timing(dir_ / "resumed" / "grpo" / "metrics.jsonl"),
            metrics_without_timing(dir_ / "whole" / "grpo" / "metrics.jsonl"));
  Transformer a = load_transformer(dir_ / "whole" / "grpo" / "model", torch::kCPU);
  Transformer b = load_transformer(dir_ / "resumed" / "grpo" / "model", torch::kCPU);
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (const auto& item : pa) EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();

  request_stop();
  EXPECT_THROW(run_grpo(dir_ / "interrupted", settings), StageInterrupted);
  clear_stop_request();
  EXPECT_EQ(run_grpo(dir_ / "interrupted", settings).dump(), whole.dump());
}

// ---- errors -----------------------------------------------------------------------------------------

TEST_F(GrpoTest, MistakesAreNamedBeforeAnythingRuns) {
  auto error = [&](const std::string& extra) {
    try {
      run_grpo(dir_ / "out", base_settings() + extra);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("(it ran)");
  };
  EXPECT_THAT(error(""), HasSubstr("stages.grpo: GRPO needs a reward: set reward_functions"));
  EXPECT_THAT(error("    reward_functions: [math_answr]\n"),
              HasSubstr("stages.grpo.reward_functions: unknown reward function 'math_answr'"));
  EXPECT_THAT(error("    reward_functions: [{name: format}]\n"),
              HasSubstr("stages.grpo.reward_functions.format: missing required key 'pattern'"));
  EXPECT_THAT(error("    reward_functions: [math_answer]\n    advantage: gae\n"),
              HasSubstr("stages.grpo.advantage: gae needs a critic, which grpo has not: use ppo"));
  EXPECT_THAT(error("    reward_functions: [math_answer]\n    advantage: rlo\n"),
              HasSubstr("unknown advantage estimator 'rlo'"));
  EXPECT_THAT(error("    reward_functions: [math_answer]\n    minibatch_size: 17\n"),
              HasSubstr("stages.grpo.minibatch_size: 17 exceeds the 16 replies of a rank's rollout"));
  EXPECT_THAT(error("    reward_functions: [math_answer]\n    overlong_buffer: 8\n"),
              HasSubstr("stages.grpo.overlong_buffer: 8 must be less than max_new_tokens 8"));
  EXPECT_THAT(error("    reward_functions: [math_answer]\n    epsilon_low: 1.5\n"), HasSubstr("stages.grpo.epsilon_low"));
  EXPECT_THAT(error("    reward_functions: [math_answer]\n    prompt_format: \"think: {promt}\"\n"),
              HasSubstr("stages.grpo.prompt_format: needs {prompt}, where the prompt's text goes"));
  EXPECT_THAT(error("    reward_functions: [math_answer]\n    prompt_format: \"{prompt} {prompt}\"\n"),
              HasSubstr("stages.grpo.prompt_format: has {prompt} twice"));
}

}  // namespace
}  // namespace nurture
