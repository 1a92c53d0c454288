// `nurture launch`: start the local workers of a data-parallel job (torchrun-style).
#include <iostream>

#include "pipelines/cli/model.h"
#include "pipelines/runtime/launch.h"

namespace nurture::cli {

namespace {

constexpr const char* kLaunchUsage =
    "launch --nproc N [--nnodes M --node-rank R --master ADDR:PORT] [--grace S] -- COMMAND...\n"
    "       e.g. nurture launch --nproc 2 -- run recipes/quickstart.yaml";

constexpr const char* kLaunchSummary =
    "Starts N workers on this node, each running `nurture COMMAND...` with RANK, WORLD_SIZE,\n"
    "LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set (the variables torchrun sets;\n"
    "recipes read them, and Slurm's or Open MPI's, without the launcher too). Their output is\n"
    "prefixed with the rank. SIGINT/SIGTERM are passed on: the workers checkpoint and stop (exit 3).\n"
    "When a worker fails the others are stopped (SIGTERM, SIGKILL after --grace seconds) and the\n"
    "launch exits with that worker's status. On several nodes run it once per node with the same\n"
    "--master (an address of node 0 and a free port) and --nnodes, and each node's --node-rank.";

}  // namespace

int launch_command(const std::vector<std::string>& args) {
  // The workers' command is everything after `--` (or after the first word that is not an option).
  std::vector<std::string> own, command;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--") {
      command.assign(args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    }
    own.push_back(args[i]);
  }
  if (command.empty())
    for (const auto& word : own)
      if (word == "run" || word == "bench")
        throw UsageError("nurture launch: put the workers' command after --, e.g. nurture launch --nproc 2 -- " +
                         word + " ... (see nurture launch --help)");
  po::options_description options("options");
  options.add_options()
      ("nproc", po::value<int>()->default_value(1), "workers on this node")
      ("nnodes", po::value<int>()->default_value(1), "nodes in the job")
      ("node-rank", po::value<int>()->default_value(0), "this node's index, 0 .. nnodes-1")
      ("master", po::value<std::string>(), "ADDR:PORT of the rendezvous on node 0 (default on one node: "
                                           "127.0.0.1 and a free port)")
      ("grace", po::value<int>()->default_value(30), "seconds the other workers get to stop after one fails")
      ("help,h", "this help");
  auto vm = parse_args("launch", own, options);
  if (vm.count("help")) {
    print_help(kLaunchUsage, kLaunchSummary, options);
    return kExitOk;
  }
  LaunchOptions o;
  o.nproc = vm["nproc"].as<int>();
  o.nnodes = vm["nnodes"].as<int>();
  o.node_rank = vm["node-rank"].as<int>();
  o.grace = std::chrono::seconds(vm["grace"].as<int>());
  o.command = command;
  if (vm.count("master")) {
    const std::string master = vm["master"].as<std::string>();
    const auto colon = master.rfind(':');
    int port = 0;
    try {
      port = colon == std::string::npos ? 0 : std::stoi(master.substr(colon + 1));
    } catch (const std::exception&) {
    }
    if (colon == std::string::npos || colon == 0 || port < 1 || port > 65535)
      bad_value("launch", "--master", master + ": expected ADDR:PORT, e.g. node01:29500");
    o.master_addr = master.substr(0, colon);
    o.master_port = port;
  }
  if (o.grace.count() < 0) bad_value("launch", "--grace", "must be 0 or more");
  try {
    return launch_workers(o);
  } catch (const std::invalid_argument& e) {
    throw UsageError("nurture launch: " + std::string(e.what()) + " (see nurture launch --help)");
  }
}

}  // namespace nurture::cli
