// Tests for pipelines/rl/rewards.h: the prompt reward functions see, the weighted sum of reward
// functions and the missing-EOS penalty, and the unknown-name error.
#include "pipelines/rl/rewards.h"

#include <gmock/gmock.h>

#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;

PromptExample example(std::vector<Message> prompt, std::string reference) {
  return {std::move(prompt), std::move(reference)};
}

TEST(Rewards, RewardFunctionsSeeTheLastUserMessage) {
  EXPECT_EQ(rl::reward_prompt(example({{"system", "be brief"}, {"user", "2+2?"}}, "")), "2+2?");
  EXPECT_EQ(rl::reward_prompt(example({{"user", "first"}, {"assistant", "a"}, {"user", "second"}}, "")), "second");
  EXPECT_EQ(rl::reward_prompt(example({{"system", "only"}}, "")), "only");
  EXPECT_EQ(rl::reward_prompt(example({}, "")), "");
}

TEST(Rewards, WeightedSumOfFunctionsAndTheMissingEosPenalty) {
  const std::vector<PromptExample> data = {example({{"user", "capital of France?"}}, "Paris"),
                                           example({{"user", "2+2?"}}, "4"), example({{"user", "hi"}}, "")};
  const std::vector<const PromptExample*> examples = {&data[0], &data[1], &data[2]};
  const std::vector<Reply> replies = {{"paris.", true}, {"5", false}, {"hello", false}};
  rl::WeightedRewards score;
  auto functions = std::make_unique<rl::RewardFunctions>(std::vector<std::string>{"exact_match"}, "x");
  EXPECT_EQ(functions->names(), "exact_match");
  score.add(2.0, std::move(functions));
  score.add(1.0, std::make_unique<rl::MissingEosPenalty>(-0.5));
  // exact_match: 1, 0, 0 (no reference); the last two never stopped.
  EXPECT_EQ(score.score(examples, replies), (std::vector<double>{2.0, -0.5, -0.5}));
}

TEST(Rewards, UnknownRewardFunctionNamesTheSetting) {
  const std::string message = testing::error_of<std::runtime_error>(
      [] { rl::RewardFunctions({"exact_mach"}, "recipe.yaml:3:5: stages.ppo.reward_functions"); });
  EXPECT_THAT(message, HasSubstr("recipe.yaml:3:5: stages.ppo.reward_functions: unknown reward function 'exact_mach'"));
  EXPECT_THAT(message, HasSubstr("did you mean 'exact_match'?"));
}

}  // namespace
}  // namespace nurture
