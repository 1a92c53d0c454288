// CPU threads: set_cpu_threads sets LibTorch's intra-op pool; the default is the CPUs this process
// may run on, shared among the local ranks of a data-parallel job.
#include "pipelines/runtime/threads.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <torch/torch.h>

#include <cstdlib>
#include <thread>

namespace nurture {
namespace {

TEST(Threads, SetAndDefault) {
  const int before = torch::get_num_threads();
  set_cpu_threads(1);
  EXPECT_EQ(torch::get_num_threads(), 1);
  set_cpu_threads(before);
  EXPECT_EQ(torch::get_num_threads(), before);

  cpu_set_t mask;
  CPU_ZERO(&mask);
  ASSERT_EQ(sched_getaffinity(0, sizeof mask, &mask), 0);
  const int allowed = CPU_COUNT(&mask), machine = static_cast<int>(std::thread::hardware_concurrency());
  if (allowed < machine) {
    EXPECT_EQ(default_cpu_threads(), allowed);  // a CPU set (taskset, cgroups) is respected
    return;
  }
  EXPECT_EQ(default_cpu_threads(), machine);
  ::setenv("LOCAL_WORLD_SIZE", "2", 1);
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("RANK", "0", 1);
  const int shared = default_cpu_threads();
  ::unsetenv("LOCAL_WORLD_SIZE");
  ::unsetenv("WORLD_SIZE");
  ::unsetenv("RANK");
  EXPECT_EQ(shared, std::max(1, machine / 2));
}

}  // namespace
}  // namespace nurture
