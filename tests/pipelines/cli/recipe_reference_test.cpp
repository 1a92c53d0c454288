// docs/recipes.md must say what the code validates: it is regenerated from the schemas by
// tools/recipe_reference.sh, and this test fails when someone changes a schema without it.
#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace nurture::testing {

TEST(RecipeReference, DocsMatchTheSchemas) {
  const auto generated = run_shell("tools/recipe_reference.sh '" + nurture_binary().string() + "'");
  ASSERT_EQ(generated.exit_code, 0) << generated.err;
  EXPECT_NE(generated.out.find("## Pipeline `tokenizer`"), std::string::npos);
  EXPECT_EQ(generated.out, read_file(source_dir() / "docs" / "recipes.md"))
      << "docs/recipes.md is stale: run tools/recipe_reference.sh > docs/recipes.md";
}

}  // namespace nurture::testing
