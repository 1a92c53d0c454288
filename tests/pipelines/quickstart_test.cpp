// The README's main job, smaller (fewer steps, set by overrides), end to end through the
// `nurture` binary, checking the directions the quickstart promises: pre-training beats the
// unigram entropy, the SFT model answers held-out questions in the chat format, the reward model
// ranks held-out pairs better than chance, PPO keeps the reward while its KL stays bounded,
// few-shot prompting beats zero-shot, and the comparison table lands in summary.json.
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
      " --set stages.pretrain.max_steps=900 --set stages.pretrain.eval_every=0"
      " --set stages.rm.eval_every=0 --set stages.ppo.iterations=8 --set stages.ppo.eval_every=0";
  auto r = run_nurture("run recipes/quickstart.yaml --output " + out.string() + overrides);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  const auto summary = nlohmann::json::parse(read_file(out / "summary.json"));
  ASSERT_EQ(summary["status"], "done");
  std::map<std::string, nlohmann::json> stage;
  for (const auto& s : summary["stages"]) stage[s["name"]] = s["metrics"];

  // Pre-training learned context: held-out loss well below the unigram entropy.
  const double entropy = stage["pretrain"]["unigram_entropy"];
  EXPECT_LT(stage["pretrain"]["val_loss"].get<double>(), 0.25 * entropy);

  // The reward model ranks held-out pairs it never saw, better than chance (the full quickstart's
  // target of 0.9 is not reached yet).
  EXPECT_GE(stage["rm"]["val_accuracy"].get<double>(), 0.6);

  // The comparison table: every model evaluated; SFT answers far better than the base model,
  // which has never seen a conversation; PPO keeps SFT's reward and stays near it.
  const auto& cmp = summary["comparison"];
  for (const char* model : {"pretrain", "sft", "ppo"}) ASSERT_TRUE(cmp.contains(model)) << model;
  EXPECT_GT(cmp["sft"]["exact_match"].get<double>(), cmp["pretrain"]["exact_match"].get<double>() + 0.3);
  EXPECT_GE(cmp["ppo"]["mean_reward"].get<double>(), cmp["sft"]["mean_reward"].get<double>() - 0.2);
  EXPECT_LT(std::abs(cmp["ppo"]["kl_to_reference"].get<double>()), 2.0);
  EXPECT_NEAR(cmp["sft"]["kl_to_reference"].get<double>(), 0.0, 1e-9);  // sft is the reference
  // In context: the input alone ("Korea ->") does not say whether the capital or the continent is
  // asked; three examples do.
  EXPECT_LE(cmp["pretrain"]["icl_0shot"].get<double>(), 0.6);
  EXPECT_GT(cmp["pretrain"]["icl_3shot"].get<double>(), cmp["pretrain"]["icl_0shot"].get<double>() + 0.3);

  // The table is printed too, with answers side by side.
  EXPECT_THAT(r.out, ::testing::HasSubstr("[eval] comparison"));
  EXPECT_THAT(r.out, ::testing::HasSubstr("[eval] Q: "));
}

}  // namespace
}  // namespace nurture
