// Tests for pipelines/rl/reward_functions.h and the reward_functions entries of a recipe
// (pipelines/rl/rewards.h parse_reward_functions): each built-in on replies with known scores,
// parameters and weights from YAML, every mistake named with its file, line and key.
#include "pipelines/rl/reward_functions.h"

#include <gmock/gmock.h>

#include <string>
#include <vector>

#include "pipelines/recipe/config.h"
#include "pipelines/rl/rewards.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;

// The entries of a `reward_functions:` YAML value, as a stage at stages.grpo would get them.
std::vector<rl::RewardFunctionSpec> parse(const std::string& yaml, std::vector<std::string>& errors) {
  const ConfigNode root = parse_yaml("reward_functions: " + yaml + "\n", "recipe.yaml");
  return rl::parse_reward_functions(*root.find("reward_functions"), "stages.grpo.reward_functions", errors);
}

rl::RewardFunctionSpec parse_one(const std::string& yaml) {
  std::vector<std::string> errors;
  auto specs = parse(yaml, errors);
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(specs.size(), 1u);
  return specs.at(0);
}

std::string first_error(const std::string& yaml) {
  std::vector<std::string> errors;
  const auto specs = parse(yaml, errors);
  EXPECT_TRUE(specs.empty());
  return errors.empty() ? std::string("(no error)") : errors.front();
}

double score(const RewardFunction& f, const std::string& response, const std::string& reference = "",
             int64_t tokens = 0) {
  const std::string prompt = "q";
  return f(RewardInput{prompt, response, reference, tokens});
}

TEST(RewardFunctions, ExactMatchIgnoresCaseSpacesAndAFinalPeriod) {
  EXPECT_EQ(rl::exact_match_score("  The  capital is Paris. ", "the capital is paris"), 1.0);
  EXPECT_EQ(rl::exact_match_score("Paris", "Lyon"), 0.0);
  EXPECT_EQ(rl::exact_match_score("", ""), 0.0);  // no reference: nothing to match
}

TEST(RewardFunctions, MathAnswerComparesTheFinalAnswerAsANumber) {
  const RewardFunction f = rl::reward_function("math_answer", "x");
  EXPECT_EQ(score(f, "3 + 4 = 7.", "7"), 1.0);
  EXPECT_EQ(score(f, "3 + 4 = 8.", "7"), 0.0);
  EXPECT_EQ(score(f, "so #### 1,234", "1234"), 1.0);
}

// The whole reply must match, and `.` crosses lines: the working in <think> then an answer.
TEST(RewardFunctions, FormatMatchesTheWholeReply) {
  const auto spec = parse_one(R"([{name: format, pattern: "<think>.*</think>\\s*\\S.*"}])");
  EXPECT_EQ(spec.name, "format");
  EXPECT_EQ(spec.weight, 1.0);
  EXPECT_EQ(score(spec.function, "<think>3 plus 4\nmakes 7</think>\n7"), 1.0);
  EXPECT_EQ(score(spec.function, "7"), 0.0);                        // no working
  EXPECT_EQ(score(spec.function, "<think>3 plus 4</think>"), 0.0);   // no answer after it
  EXPECT_EQ(score(spec.function, "sure: <think>x</think> 7"), 0.0);  // not from the start
}

TEST(RewardFunctions, LengthCostsEveryTokenBeyondTheBudget) {
  const auto spec = parse_one("[{name: length, budget: 3, penalty: 0.5, weight: 2}]");
  EXPECT_EQ(spec.weight, 2.0);
  EXPECT_EQ(score(spec.function, "", "", 2), 0.0);
  EXPECT_EQ(score(spec.function, "", "", 3), 0.0);
  EXPECT_EQ(score(spec.function, "", "", 5), -1.0);
  // The default penalty is 0.01 a token.
  EXPECT_NEAR(score(parse_one("[{name: length, budget: 10}]").function, "", "", 30), -0.2, 1e-12);
}

// Weights multiply each function's score in the sum; each function's own scores are kept.
TEST(RewardFunctions, WeightedEntriesSumAndKeepTheirOwnScores) {
  const ConfigNode root =
      parse_yaml("reward_functions: [exact_match, {name: length, budget: 1, penalty: 1, weight: 0.5}]\n", "r.yaml");
  rl::RewardFunctions functions(*root.find("reward_functions"), "stages.grpo.reward_functions");
  EXPECT_EQ(functions.names(), "exact_match, length x0.50");
  EXPECT_EQ(functions.function_names(), (std::vector<std::string>{"exact_match", "length"}));
  const std::vector<PromptExample> data = {{{{"user", "2+2?"}}, "4"}, {{{"user", "2+3?"}}, "5"}};
  const std::vector<const PromptExample*> examples = {&data[0], &data[1]};
  const std::vector<Reply> replies = {{"4", true, 1}, {"6 or so", true, 4}};
  EXPECT_EQ(functions.score(examples, replies), (std::vector<double>{1.0, -1.5}));
  ASSERT_EQ(functions.last_scores().size(), 2u);
  EXPECT_EQ(functions.last_scores()[0].second, (std::vector<double>{1.0, 0.0}));
  EXPECT_EQ(functions.last_scores()[1].second, (std::vector<double>{0.0, -3.0}));
}

TEST(RewardFunctions, MistakesNameTheFileLineAndKey) {
  EXPECT_THAT(first_error("[math_answr]"), ::testing::StartsWith("recipe.yaml:1:"));
  EXPECT_THAT(first_error("[math_answr]"),
              HasSubstr(": stages.grpo.reward_functions: unknown reward function 'math_answr'"));
  EXPECT_THAT(first_error("[math_answr]"), HasSubstr("did you mean 'math_answer'?"));
  EXPECT_THAT(first_error("[{name: format}]"),
              HasSubstr("stages.grpo.reward_functions.format: missing required key 'pattern'"));
  EXPECT_THAT(first_error("[{name: length, budget: 0}]"), HasSubstr("stages.grpo.reward_functions.length.budget"));
  EXPECT_THAT(first_error("[{name: length, budget: 4, weight: heavy}]"),
              HasSubstr("stages.grpo.reward_functions.length.weight: expected a number, got 'heavy'"));
  EXPECT_THAT(first_error("[{name: exact_match, strict: true}]"),
              HasSubstr("stages.grpo.reward_functions.exact_match.strict: unknown key"));
  EXPECT_THAT(first_error("[{weight: 2}]"), HasSubstr("each entry is a reward function's name or a map"));
  EXPECT_THAT(first_error("math_answer"), HasSubstr("expected a list of reward functions"));
  const std::string bad_regex = first_error(R"([{name: format, pattern: "(<think>"}])");
  EXPECT_THAT(bad_regex, HasSubstr("recipe.yaml:1:"));
  EXPECT_THAT(bad_regex, HasSubstr("stages.grpo.reward_functions.format.pattern"));
  EXPECT_THAT(bad_regex, HasSubstr("does not compile"));
  // A function that needs parameters cannot be named alone.
  EXPECT_THAT(testing::error_of<std::runtime_error>([] { rl::reward_function("format", "recipe.yaml:2:3: x"); }),
              HasSubstr("recipe.yaml:2:3: x: format needs parameters, given as {name: format, ...}"));
}

}  // namespace
}  // namespace nurture
