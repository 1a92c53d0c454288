// The registries every layer keeps, reached through one struct: an unknown name lists the known
// ones with a hint, a name registered twice is a programming error, the built-ins are all there.
#include <gmock/gmock.h>

#include "pipelines/runner/registries.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;

TEST(Registry, UnknownNamesListTheKnownOnes) {
  try {
    registries().rewards.get("exact_mach");
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("unknown reward function 'exact_mach' (known: exact_match"));
    EXPECT_THAT(e.what(), HasSubstr("did you mean 'exact_match'?"));
  }
  EXPECT_THROW(registries().pipelines.add("tokenizer", registries().pipelines.get("tokenizer")),
               std::logic_error);
  EXPECT_TRUE(registries().model_presets.contains("gpt2_124m"));
  EXPECT_TRUE(registries().chat_templates.contains("chatml"));
}

}  // namespace
}  // namespace nurture
