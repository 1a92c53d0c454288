// launch_workers with /bin/sh as the worker: every rank gets torchrun's variables, a failing rank
// ends the launch with its status while the others (and what they started) are stopped, and
// options that cannot work are refused before anything starts.
#include "pipelines/runtime/launch.h"

#include <gmock/gmock.h>

#include <chrono>

#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;

LaunchOptions shell(int nproc, const std::string& script) {
  LaunchOptions o;
  o.nproc = nproc;
  o.executable = "/bin/sh";
  o.command = {"-c", script};
  o.grace = std::chrono::seconds(2);
  return o;
}

TEST(Launch, EveryRankGetsTorchrunsVariables) {
  const auto out = scratch_dir("LaunchVariables");
  const int status = launch_workers(shell(
      2, "echo \"$RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $MASTER_ADDR\" > " + out.string() +
             "/rank$RANK.txt; test -n \"$MASTER_PORT\""));
  EXPECT_EQ(status, 0);
  EXPECT_EQ(read_file(out / "rank0.txt"), "0 2 0 2 127.0.0.1\n");
  EXPECT_EQ(read_file(out / "rank1.txt"), "1 2 1 2 127.0.0.1\n");
}

// Rank 0's shell waits on a `sleep` of its own, which holds the output pipe: the whole process group
// is stopped. (Status 3 would mean "stopped after a checkpoint", which a later failure overrides.)
TEST(Launch, AFailingRankEndsTheLaunchWithItsStatusAndStopsTheOthers) {
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(launch_workers(shell(2, "if [ $RANK = 1 ]; then exit 5; fi; sleep 60")), 5);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST(Launch, OptionsThatCannotWorkAreRefused) {
  LaunchOptions none = shell(1, "true");
  none.command.clear();
  EXPECT_THROW(launch_workers(none), std::invalid_argument);
  LaunchOptions two_nodes = shell(1, "true");
  two_nodes.nnodes = 2;
  EXPECT_THAT(error_of<std::invalid_argument>([&] { launch_workers(two_nodes); }), HasSubstr("master"));
  LaunchOptions out_of_range = shell(1, "true");
  out_of_range.nnodes = 2;
  out_of_range.node_rank = 2;
  out_of_range.master_addr = "10.0.0.1";
  out_of_range.master_port = 29500;
  EXPECT_THAT(error_of<std::invalid_argument>([&] { launch_workers(out_of_range); }), HasSubstr("node"));
}

}  // namespace
}  // namespace nurture
