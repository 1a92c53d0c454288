// Schemas: every key a recipe may hold, its type, range or choices, and the message for each kind
// of wrong value (file:line:col: key: what).
#include <gmock/gmock.h>

#include "pipelines/recipe/schema.h"
#include "tests/recipe_files.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

TEST(Schema, ScalarsParseAsTheirTypes) {
  int64_t i = 0;
  EXPECT_TRUE(parse_int("12", &i));
  EXPECT_EQ(i, 12);
  EXPECT_TRUE(parse_int("1e3", &i));  // an integral float: 1e3 steps
  EXPECT_EQ(i, 1000);
  EXPECT_FALSE(parse_int("1.5", &i));
  EXPECT_FALSE(parse_int("", &i));
  double d = 0;
  EXPECT_TRUE(parse_float("3e-4", &d));
  EXPECT_DOUBLE_EQ(d, 3e-4);
  EXPECT_FALSE(parse_float(" 1", &d));
  EXPECT_FALSE(parse_float("inf", &d));
  EXPECT_FALSE(parse_float("1x", &d));
  bool b = false;
  EXPECT_TRUE(parse_bool("yes", &b));
  EXPECT_TRUE(b);
  EXPECT_TRUE(parse_bool("False", &b));
  EXPECT_FALSE(b);
  EXPECT_FALSE(parse_bool("1", &b));
}

// A schema declared in the test: validation collects every error; resolving fills the defaults
// that Settings then reads typed.
TEST(Schema, ValidatesThenResolvesDefaultsForSettings) {
  Schema schema;
  schema.add_int("steps", 10, "optimizer steps").at_least(1);
  schema.add_float("lr", 1e-3, "learning rate").greater_than(0);
  schema.add_enum("mode", "fast", {"fast", "slow"}, "how");
  schema.add_string_list("inputs", "files").must_be_required();
  const ConfigNode bad = parse_yaml("steps: 0\nlr: 0\n", "s.yaml");
  ValidationContext ctx;
  schema.validate(bad, "stage", ctx);
  ASSERT_EQ(ctx.errors.size(), 3u);
  EXPECT_EQ(ctx.errors[0], "s.yaml:1:8: stage.steps: must be >= 1, got 0");
  EXPECT_EQ(ctx.errors[1], "s.yaml:2:5: stage.lr: must be > 0, got 0");
  EXPECT_THAT(ctx.errors[2], HasSubstr("stage: missing required key 'inputs'"));

  const ConfigNode good = parse_yaml("lr: 0.5\ninputs: one.txt\n", "s.yaml");
  ValidationContext ok;
  schema.validate(good, "stage", ok);
  ASSERT_TRUE(ok.errors.empty()) << ok.errors[0];
  Settings s(schema.resolve(good), "stage");
  EXPECT_EQ(s.get_int("steps"), 10);
  EXPECT_DOUBLE_EQ(s.get_float("lr"), 0.5);
  EXPECT_EQ(s.get_string("mode"), "fast");
  EXPECT_EQ(s.get_string_list("inputs"), std::vector<std::string>{"one.txt"});  // one string: a list of one
  EXPECT_EQ(s.where("lr"), "s.yaml:1:5: stage.lr");
  EXPECT_THROW(s.get_int("absent"), std::logic_error);
  EXPECT_THAT(schema.reference("stages.<name>"), HasSubstr("`steps`"));
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

}  // namespace
}  // namespace nurture
