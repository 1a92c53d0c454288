// The stop request: set from a signal handler (what the runner installs for SIGTERM/SIGINT), seen
// by the loops until cleared.
#include "pipelines/runtime/stop.h"

#include <gtest/gtest.h>

#include <csignal>

namespace nurture {
namespace {

extern "C" void request_stop_on_signal(int) { request_stop(); }

TEST(Stop, ARequestFromASignalHandlerIsSeenUntilCleared) {
  clear_stop_request();
  EXPECT_FALSE(stop_requested());
  auto previous = std::signal(SIGUSR1, request_stop_on_signal);
  std::raise(SIGUSR1);
  std::signal(SIGUSR1, previous);
  EXPECT_TRUE(stop_requested());
  EXPECT_TRUE(stop_requested());  // reading does not clear it
  clear_stop_request();
  EXPECT_FALSE(stop_requested());
}

}  // namespace
}  // namespace nurture
