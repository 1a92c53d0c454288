// Recipe files: YAML with its file:line:column positions, `base:` recipes merged key by key,
// `--set` overrides typed like the recipe's own values, and the errors of each.
#include <gmock/gmock.h>

#include "pipelines/recipe/config.h"
#include "tests/recipe_files.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

TEST(Config, EveryValueRemembersWhereItWasWritten) {
  const ConfigNode root = parse_yaml("a:\n  b: 3\n  c: [x, 'y']\n", "f.yaml");
  const ConfigNode* a = root.find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->is_map());
  EXPECT_EQ(a->find("b")->text(), "3");
  EXPECT_EQ(a->find("b")->where().str(), "f.yaml:2:6");
  const ConfigNode& c = *a->find("c");
  ASSERT_TRUE(c.is_sequence());
  ASSERT_EQ(c.items().size(), 2u);
  EXPECT_FALSE(c.items()[0].quoted());
  EXPECT_TRUE(c.items()[1].quoted());
  EXPECT_EQ(c.items()[1].where().str(), "f.yaml:3:10");  // where its quote opens
  EXPECT_EQ(a->find("absent"), nullptr);
}

TEST(Config, MapsMergeKeyByKeyAndEverythingElseIsReplaced) {
  ConfigNode base = parse_yaml("a: {b: 1, c: 2}\nl: [1]\nkeep: yes\n", "base.yaml");
  deep_merge(base, parse_yaml("a: {c: 3, d: 4}\nl: [2, 3]\n", "top.yaml"));
  const ConfigNode& a = *base.find("a");
  EXPECT_EQ(a.find("b")->text(), "1");
  EXPECT_EQ(a.find("c")->text(), "3");
  EXPECT_EQ(a.find("c")->where().file, "top.yaml");
  EXPECT_EQ(a.find("d")->text(), "4");
  ASSERT_EQ(base.find("l")->items().size(), 2u);  // a list is replaced, not appended to
  EXPECT_EQ(base.find("l")->items()[0].text(), "2");
  EXPECT_EQ(base.find("keep")->text(), "yes");
}

TEST(Config, AnOverrideCreatesItsPathAndIsNamedAsTheSource) {
  ConfigNode root = parse_yaml("stages:\n  sft: {lr: 1}\n", "r.yaml");
  apply_override(root, "stages.sft.lr=3e-4");
  apply_override(root, "stages.new.inputs=[a, b]");
  const ConfigNode& stages = *root.find("stages");
  EXPECT_EQ(stages.find("sft")->find("lr")->text(), "3e-4");
  EXPECT_EQ(stages.find("sft")->find("lr")->where().str(), "--set stages.sft.lr=3e-4");
  const ConfigNode& inputs = *stages.find("new")->find("inputs");
  ASSERT_TRUE(inputs.is_sequence());
  EXPECT_EQ(inputs.items()[1].text(), "b");
}

TEST(Config, ResolvedYamlReadsBackToTheSameTree) {
  const std::string text = "seed: 1\nstages:\n  tok:\n    inputs: [a.txt, 'b c.txt']\n    name: \"x: y\"\n";
  const std::string yaml = to_yaml(parse_yaml(text, "r.yaml"));
  const ConfigNode again = parse_yaml(yaml, "again.yaml");
  EXPECT_EQ(again.find("seed")->text(), "1");
  const ConfigNode& tok = *again.find("stages")->find("tok");
  EXPECT_EQ(tok.find("inputs")->items()[1].text(), "b c.txt");
  EXPECT_EQ(tok.find("name")->text(), "x: y");
  EXPECT_EQ(to_yaml(again), yaml);
}

TEST_F(RecipeTest, InvalidYamlAndDuplicateKeys) {
  auto errors = errors_of(recipe("stages:\n  tok: [unclosed\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr((dir_ / "r.yaml").string() + ":3:1: invalid YAML: "));
  errors = errors_of(recipe("seed: 1\nseed: 2\nstages: {a: {pipeline: demo_data}}\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], at(2, 1) + ": seed: duplicate key (it is already set above)");
  errors = errors_of(dir_ / "absent.yaml");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], (dir_ / "absent.yaml").string() + ": cannot read this recipe file (does it exist?)");
  // An alias inside its own anchor (found by tests/fuzz/recipe_fuzz: it used to overflow the stack).
  errors = errors_of(recipe("stages:\n  b: &x {pipeline: sft, extra: *x}\n"));
  ASSERT_FALSE(errors.empty());
  EXPECT_THAT(errors[0], HasSubstr(": the recipe nests deeper than 64 levels (an alias that contains itself?)"));
}

// Aliases of aliases that multiply ("billion laughs": ten copies of ten copies of ... nine levels
// deep, 10^9 values) are refused at the 100000th value, instead of growing until the kernel kills
// the process; so is a file far larger than any recipe.
TEST_F(RecipeTest, RecipesThatExpandWithoutBoundAreRefused) {
  std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 9; ++i) {
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) text += (k ? ", *a" : "*a") + std::to_string(i - 1);
    text += "]\n";
  }
  auto errors = errors_of(recipe(text + "stages: {}\n"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], ::testing::MatchesRegex(".*r\\.yaml:[0-9]+:[0-9]+: the recipe expands to more than 100000 "
                                                 "values, counting an alias each time it is used .*"));
  // A thousand uses of one small anchor are an ordinary recipe.
  std::string many = "x: &x {a: 1, b: 2}\nlist: [";
  for (int k = 0; k < 1000; ++k) many += (k ? ", *x" : "*x");
  EXPECT_NO_THROW(parse_yaml(many + "]\n", "many.yaml"));

  const fs::path big = write_file(dir_ / "big.yaml", "# " + std::string(5u << 20, 'x') + "\n");
  errors = errors_of(big);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], big.string() + ": " + std::to_string(fs::file_size(big)) +
                           " bytes is not a recipe (at most 4 MiB)");
}

TEST_F(RecipeTest, OverridesAreTypedAndNamedInErrors) {
  RunOptions o;
  o.overrides = {"stages.tok.vocab_size=512", "seed=3", "stages.tok.inputs=[a.txt, b.txt]"};
  Recipe r = load_recipe(recipe(kGood), o);
  Settings tok(r.stages[1].settings, "stages.tok");
  EXPECT_EQ(tok.get_int("vocab_size"), 512);
  EXPECT_EQ(tok.get_string_list("inputs"), (std::vector<std::string>{"a.txt", "b.txt"}));
  EXPECT_EQ(r.run.seed, 3);

  o.overrides = {"stages.tok.vocab_size=fast"};
  auto errors = errors_of(dir_ / "r.yaml", o);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "--set stages.tok.vocab_size=fast: stages.tok.vocab_size: expected a whole "
                       "number, got \"fast\"");
  o.overrides = {"stages.tok.lr=1e-4"};
  errors = errors_of(dir_ / "r.yaml", o);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("--set stages.tok.lr=1e-4: stages.tok.lr: unknown key"));
  o.overrides = {"novalue"};
  errors = errors_of(dir_ / "r.yaml", o);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "--set novalue: expected KEY.PATH=VALUE, e.g. --set stages.sft.lr=1e-4");
}

TEST_F(RecipeTest, BaseRecipesDeepMerge) {
  write_file(dir_ / "base" / "common.yaml",
             "seed: 7\nthreads: 1\nstages:\n  data:\n    pipeline: demo_data\n    max_operand: 5\n");
  Recipe r = load_recipe(recipe("base: base/common.yaml\nseed: 9\nstages:\n  data:\n"
                                "    prose_repeats: 2\n  tok:\n    pipeline: tokenizer\n"
                                "    inputs: ['${data}/pretrain.txt']\n"),
                         {});
  EXPECT_EQ(r.run.seed, 9);        // the recipe wins over its base
  EXPECT_EQ(r.run.threads, 1);     // inherited
  ASSERT_EQ(r.stages.size(), 2u);  // base stage first, then the recipe's
  Settings data(r.stages[0].settings, "stages.data");
  EXPECT_EQ(data.get_int("max_operand"), 5);
  EXPECT_EQ(data.get_int("prose_repeats"), 2);
  // An error in the base names the base file.
  write_file(dir_ / "base" / "common.yaml",
             "threads: x\nstages:\n  data:\n    pipeline: demo_data\n");
  auto errors = errors_of(dir_ / "r.yaml");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], (dir_ / "base" / "common.yaml").string() +
                           ":1:10: threads: expected a whole number or auto, got \"x\"");
  write_file(dir_ / "base" / "common.yaml", "base: ../r.yaml\n");
  errors = errors_of(dir_ / "r.yaml");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("base: recipes inherit from each other in a cycle"));
}

// The recipes the repository ships (README's and the tests' own) validate as they are: a setting
// renamed or removed in a pipeline shows up here, not in a user's first run.
TEST(Config, EveryShippedRecipeValidates) {
  std::vector<std::string> checked;
  for (const auto& entry : fs::directory_iterator(source_dir() / "recipes")) {
    if (entry.path().extension() != ".yaml") continue;
    EXPECT_THAT(errors_of(entry.path()), ::testing::IsEmpty()) << entry.path();
    checked.push_back(entry.path().filename().string());
  }
  EXPECT_THAT(checked, ::testing::IsSupersetOf({"quickstart.yaml", "quickstart_small.yaml", "brown.yaml",
                                                "from_hf.yaml", "grpo_sums.yaml"}));
}

}  // namespace
}  // namespace nurture
