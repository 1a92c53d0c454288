// The pipelines nurture ships: every one registered under the name recipes use, with what it
// produces (what consumers such as init_from and eval's models ask for) and whether every rank
// runs it.
#include "pipelines/stages/stages.h"

#include <gtest/gtest.h>

namespace nurture {
namespace {

TEST(Stages, EveryBuiltInPipelineDeclaresWhatItProduces) {
  const auto& pipelines = pipeline_registry();
  struct Expected {
    const char* name;
    std::vector<Kind> produces;
    bool data_parallel;
  };
  const std::vector<Expected> expected = {
      {"demo_data", {Kind::data}, false},     {"tokenizer", {Kind::tokenizer}, false},
      {"pretrain", {Kind::lm}, true},         {"sft", {Kind::lm}, true},
      {"reward_model", {Kind::reward}, true}, {"dpo", {Kind::lm}, true},
      {"ppo", {Kind::lm}, true},              {"grpo", {Kind::lm}, true},
      {"eval", {}, false}};
  for (const auto& e : expected) {
    ASSERT_TRUE(pipelines.contains(e.name)) << e.name;
    const StageEntry& entry = pipelines.get(e.name);
    EXPECT_EQ(entry.produces, e.produces) << e.name;
    EXPECT_EQ(entry.data_parallel, e.data_parallel) << e.name;
    EXPECT_FALSE(entry.help.empty()) << e.name;
    EXPECT_NE(entry.schema(), nullptr) << e.name;
  }
  EXPECT_EQ(pipelines.unknown("sfft"), "unknown pipeline 'sfft' (known: demo_data, dpo, eval, grpo, ppo, pretrain, "
                                       "reward_model, sft, tokenizer); did you mean 'sft'?");
}

}  // namespace
}  // namespace nurture
