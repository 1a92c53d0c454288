// The `nurture` executable's dispatch: the command list, --version, an unknown command with the
// closest one suggested, and the exit statuses (2 for a bad command line).
#include <gmock/gmock.h>

#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;

TEST(Cli, HelpListsEveryCommandAndTheExitStatuses) {
  auto r = run_nurture("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* command : {"run", "tokenizer", "generate", "chat", "data", "bench", "launch"})
    EXPECT_THAT(r.out, HasSubstr("\n  " + std::string(command) + " ")) << command;
  EXPECT_THAT(r.out, HasSubstr("3 stopped by SIGTERM/SIGINT after a checkpoint"));
  r = run_nurture("");
  EXPECT_EQ(r.exit_code, 2);  // no command: the usage, on stderr
  EXPECT_THAT(r.err, HasSubstr("usage: nurture <command>"));
}

TEST(Cli, VersionNamesLibTorch) {
  const auto r = run_nurture("--version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, ::testing::StartsWith("nurture 0.1.0 (LibTorch "));
}

TEST(Cli, AnUnknownCommandSuggestsTheClosest) {
  const auto r = run_nurture("genrate --prompt hi");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "error: nurture: unknown command 'genrate'; did you mean 'generate'? (commands: run, "
                   "tokenizer, generate, chat, data, bench, score, export, launch; see nurture --help)\n");
}

}  // namespace
}  // namespace nurture
