// `nurture launch`: starts the local workers of a data-parallel job, torchrun-style. Each worker
// is this executable running the given command with RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set. Their output comes back line by line,
// prefixed with the rank; SIGINT/SIGTERM are passed on to them (they checkpoint and stop); when
// one worker fails the others are stopped, and the launch exits with the failure's status,
// naming the rank.
#pragma once
#include <chrono>
#include <string>
#include <vector>

namespace nurture {

struct LaunchOptions {
  int nproc = 1;       // workers on this node
  int nnodes = 1;      // nodes in the job
  int node_rank = 0;   // this node's index
  std::string master_addr;  // empty: 127.0.0.1 (one node) — required with several nodes
  int master_port = 0;      // 0: a free port (one node) — required with several nodes
  std::chrono::seconds grace{30};  // after a failure, how long the others get to stop before SIGKILL
  std::vector<std::string> command;  // e.g. {"run", "recipes/quickstart.yaml", "--set", "seed=1"}
  std::string executable;  // the nurture binary the workers run (/proc/self/exe when empty)
};

// Runs the workers to the end. Returns 0 when all succeeded, else the first failure's exit
// status (128 + signal for a worker killed by a signal). Throws std::invalid_argument on options
// that cannot work (no command, node_rank out of range, several nodes without a master).
int launch_workers(const LaunchOptions& options);

}  // namespace nurture
