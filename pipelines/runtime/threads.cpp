// set_cpu_threads() and default_cpu_threads().
#include "pipelines/runtime/threads.h"

#include <torch/torch.h>

#include <dlfcn.h>
#include <sched.h>

#include <algorithm>
#include <thread>

#include "pipelines/runtime/distributed.h"

namespace nurture {

// LibTorch's intra-op pool, and OpenBLAS's own (Debian's LibTorch calls OpenBLAS, whose workers
// ignore torch::set_num_threads), so that `threads: 1` really keeps to one core.
void set_cpu_threads(int threads) {
  torch::set_num_threads(threads);
  using SetThreads = void (*)(int);
  if (auto openblas = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
    openblas(threads);
}

int default_cpu_threads() {
  const int machine = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cpu_set_t mask;
  CPU_ZERO(&mask);
  const int bound = sched_getaffinity(0, sizeof mask, &mask) == 0 ? CPU_COUNT(&mask) : machine;
  if (bound > 0 && bound < machine) return bound;
  return std::max(1, machine / dist::environment_from_process().local_world_size);
}

}  // namespace nurture
