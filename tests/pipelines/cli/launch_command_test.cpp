// `nurture launch` through the executable: its flags checked before any worker starts (a command
// forgotten after --, a malformed --master, options launch_workers refuses), each a usage error
// (exit 2) naming the flag; a job of two workers runs their command (here `--version`).
#include <gmock/gmock.h>

#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;

TEST(LaunchCommand, BadFlagsAreUsageErrorsNamingTheFlag) {
  auto r = run_nurture("launch --nproc 2 run recipes/quickstart.yaml");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("nurture launch: put the workers' command after --, e.g. nurture launch --nproc 2 -- run"));
  r = run_nurture("launch --master node01 -- --version");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("nurture launch: --master node01: expected ADDR:PORT, e.g. node01:29500"));
  r = run_nurture("launch --nnodes 2 -- --version");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("nurture launch: with several nodes every node needs the same --master ADDR:PORT"));
  r = run_nurture("launch --nproc 0 -- --version");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--nproc must be at least 1"));
  r = run_nurture("launch --grace -1 -- --version");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--grace must be 0 or more"));
}

TEST(LaunchCommand, TwoWorkersRunTheCommandWithTheirRankPrefixed) {
  const auto r = run_nurture("launch --nproc 2 -- --version");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("[rank 0] nurture 0.1.0"));
  EXPECT_THAT(r.out, HasSubstr("[rank 1] nurture 0.1.0"));
  EXPECT_THAT(r.err, HasSubstr("[launch] all 2 worker(s) finished"));
}

}  // namespace
}  // namespace nurture
