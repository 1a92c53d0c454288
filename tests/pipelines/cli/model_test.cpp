// What the model commands (generate, chat) share, through `nurture generate`: sampling flags out of
// range, an unknown device, and a directory that is no model directory, each a usage error naming
// the flag before anything is loaded.
#include <gmock/gmock.h>

#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;

TEST(ModelCommands, SamplingAndDeviceFlagsAreCheckedFirst) {
  const std::string model = "--model " + scratch_dir("ModelCommands").string() + " --prompt hi";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--max-new-tokens 0", "nurture generate: --max-new-tokens must be at least 1, got 0"},
      {"--temperature -0.5", "nurture generate: --temperature must be >= 0 (0 = greedy), got -0.5"},
      {"--top-k -1", "nurture generate: --top-k must be >= 0 (0 = off), got -1"},
      {"--top-p 0", "nurture generate: --top-p must be in (0, 1] (1 = off), got 0"},
      {"--device tpu", "nurture generate: --device must be cpu or cuda, got 'tpu'"},
  };
  for (const auto& [flags, message] : cases) {
    const auto r = run_nurture("generate " + model + " " + flags);
    EXPECT_EQ(r.exit_code, 2) << flags;
    EXPECT_THAT(r.err, HasSubstr(message)) << flags;
  }
  const auto r = run_nurture("generate " + model);  // an empty directory
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("nurture generate: --model "));
}

}  // namespace
}  // namespace nurture
