// `nurture run` through the executable: its flags, its exit codes, and a bad recipe refused before
// anything is created.
#include <gmock/gmock.h>

#include "tests/recipe_files.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

TEST_F(RecipeTest, CliRejectsBadRecipeWithoutCreatingAnything) {
  const fs::path out = dir_ / "out";
  recipe(std::string(kGood) + "    vocab_size: many\n");
  auto r = run_nurture("run " + (dir_ / "r.yaml").string() + " --output " + out.string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("duplicate key"));
  EXPECT_FALSE(fs::exists(out));

  recipe(kGood);
  r = run_nurture("run " + (dir_ / "r.yaml").string() + " --set stages.tok.vocab_size=fast --output " +
                  out.string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "error: --set stages.tok.vocab_size=fast: stages.tok.vocab_size: expected a whole "
                   "number, got \"fast\"\n");
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(RecipeTest, CliFlagErrors) {
  auto r = run_nurture("run --frobnicate");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("nurture run: unrecognised option '--frobnicate' (see nurture run --help)"));
  r = run_nurture("rnu x.yaml");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown command 'rnu'; did you mean 'run'?"));
  r = run_nurture("run --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("--dry-run"));
  EXPECT_THAT(r.out, HasSubstr("tokenizer"));
}

TEST_F(RecipeTest, DryRunPrintsTheResolvedRecipe) {
  auto r = run_nurture("run " + recipe(kGood).string() + " --dry-run --set stages.tok.vocab_size=333");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("vocab_size: 333"));
  EXPECT_THAT(r.out, HasSubstr("model_type: bpe"));
  EXPECT_THAT(r.out, HasSubstr("threads: auto"));
  EXPECT_FALSE(fs::exists("runs/r"));
}

}  // namespace
}  // namespace nurture
