// The README's main job, smaller (fewer steps, set by overrides: about 4 minutes on 2 cores instead
// of 8), end to end through the `nurture` binary, checking the directions the quickstart promises:
// pre-training beats the unigram entropy, the SFT model answers held-out questions in the chat
// format, the reward model ranks held-out pairs it never saw, PPO raises the graders' score while
// its KL to the SFT model stays bounded, few-shot prompting beats zero-shot, and the comparison
// table lands in summary.json.
#include <gmock/gmock.h>

#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace nurture {
namespace {

using namespace nurture::testing;
namespace fs = std::filesystem;

TEST(Quickstart, SmallerRunShowsTheLifecycleDirections) {
  const fs::path out = scratch_dir("Quickstart") / "run";
  const std::string overrides =
      " --set stages.pretrain.max_steps=600 --set stages.pretrain.eval_every=0 --set stages.sft.eval_every=0"
      " --set stages.rm.max_steps=120 --set stages.rm.eval_every=0 --set stages.ppo.iterations=10"
      " --set stages.ppo.eval_every=0";
  auto r = run_nurture("run recipes/quickstart.yaml --output " + out.string() + overrides);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  const auto summary = nlohmann::json::parse(read_file(out / "summary.json"));
  ASSERT_EQ(summary["status"], "done");
  std::map<std::string, nlohmann::json> stage;
  for (const auto& s : summary["stages"]) stage[s["name"]] = s["metrics"];
  const auto& cmp = summary["comparison"];
  for (const char* model : {"pretrain", "sft", "ppo"}) ASSERT_TRUE(cmp.contains(model)) << model;
  auto at = [&](const char* model, const char* metric) { return cmp[model][metric].get<double>(); };
  std::cout << "[quickstart] pretrain val_loss " << stage["pretrain"]["val_loss"] << " (unigram "
            << stage["pretrain"]["unigram_entropy"] << "), rm val_accuracy " << stage["rm"]["val_accuracy"]
            << ", mean_reward pretrain " << at("pretrain", "mean_reward") << " sft " << at("sft", "mean_reward")
            << " ppo " << at("ppo", "mean_reward") << ", ppo kl " << at("ppo", "kl_to_reference") << ", icl "
            << at("pretrain", "icl_0shot") << " -> " << at("pretrain", "icl_3shot") << std::endl;

  // Pre-training learned context: held-out loss far below the unigram entropy (0.52 vs 4.24 when
  // this was written).
  EXPECT_LT(stage["pretrain"]["val_loss"].get<double>(), 0.25 * stage["pretrain"]["unigram_entropy"].get<double>());

  // The reward model ranks held-out pairs (other facts than its training pairs): 0.95 when written.
  EXPECT_GE(stage["rm"]["val_accuracy"].get<double>(), 0.8);

  // The base model has never seen a conversation; SFT answers in the chat format (held-out
  // questions, so exact answers stay rare at this size: 0.11 when written), which the reward model
  // scores far higher (-7.2 -> -4.5); PPO raises that score again (-> -0.6) and stays near SFT.
  EXPECT_GT(at("sft", "exact_match"), at("pretrain", "exact_match"));
  EXPECT_GT(at("sft", "mean_reward"), at("pretrain", "mean_reward") + 1.0);
  EXPECT_GT(at("ppo", "mean_reward"), at("sft", "mean_reward") + 1.0);
  EXPECT_GT(at("ppo", "kl_to_reference"), 0.0);
  EXPECT_LT(at("ppo", "kl_to_reference"), 5.0);
  EXPECT_NEAR(at("sft", "kl_to_reference"), 0.0, 1e-9);  // sft is the reference
  // In context: the input alone ("Korea ->") does not say whether the capital or the continent is
  // asked; three examples do (0.50 -> 0.99 when written).
  EXPECT_LE(at("pretrain", "icl_0shot"), 0.6);
  EXPECT_GT(at("pretrain", "icl_3shot"), at("pretrain", "icl_0shot") + 0.3);

  // The table is printed too, with answers side by side.
  EXPECT_THAT(r.out, ::testing::HasSubstr("[eval] comparison"));
  EXPECT_THAT(r.out, ::testing::HasSubstr("[eval] Q: "));
}

}  // namespace
}  // namespace nurture
