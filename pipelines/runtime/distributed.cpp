// Data parallelism on c10d (see distributed.h).
#include "pipelines/runtime/distributed.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(NURTURE_WITH_NCCL)
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

#include "modules/core/compat.h"

extern char** environ;

namespace nurture::dist {

// ---- the environment -------------------------------------------------------------------------------

std::string first_slurm_host(const std::string& nodelist) {
  // The first top-level entry: "gpu[07-09,12]-ib,cpu3" -> "gpu[07-09,12]-ib".
  int depth = 0;
  size_t end = 0;
  for (; end < nodelist.size(); ++end) {
    if (nodelist[end] == '[') ++depth;
    if (nodelist[end] == ']') --depth;
    if (nodelist[end] == ',' && depth == 0) break;
  }
  const std::string entry = nodelist.substr(0, end);
  const size_t open = entry.find('[');
  if (open == std::string::npos) return entry;
  const size_t close = entry.find(']', open);
  if (close == std::string::npos) throw std::invalid_argument("SLURM_JOB_NODELIST: unbalanced '[' in \"" + nodelist + "\"");
  std::string first = entry.substr(open + 1, close - open - 1);
  first = first.substr(0, first.find_first_of(",-"));  // the first number of the first range
  return entry.substr(0, open) + first + entry.substr(close + 1);
}

namespace {

int parse_count(const std::map<std::string, std::string>& env, const std::string& name, int fallback,
                int minimum) {
  auto it = env.find(name);
  if (it == env.end() || it->second.empty()) return fallback;
  size_t used = 0;
  int value = 0;
  try {
    value = std::stoi(it->second, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != it->second.size() || value < minimum)
    throw std::invalid_argument(name + "=" + it->second + ": expected a whole number >= " + std::to_string(minimum));
  return value;
}

std::string get(const std::map<std::string, std::string>& env, const std::string& name, const std::string& fallback) {
  auto it = env.find(name);
  return it == env.end() || it->second.empty() ? fallback : it->second;
}

}  // namespace

Environment environment_from(const std::map<std::string, std::string>& env) {
  Environment e;
  if (env.count("RANK") || env.count("WORLD_SIZE")) {  // torchrun, nurture launch
    e.source = "torchrun";
    e.rank = parse_count(env, "RANK", 0, 0);
    e.world_size = parse_count(env, "WORLD_SIZE", 1, 1);
    e.local_rank = parse_count(env, "LOCAL_RANK", e.rank, 0);
    e.local_world_size = parse_count(env, "LOCAL_WORLD_SIZE", e.world_size, 1);
  } else if (env.count("SLURM_PROCID") && parse_count(env, "SLURM_NTASKS", 1, 1) > 1) {
    e.source = "slurm";
    e.rank = parse_count(env, "SLURM_PROCID", 0, 0);
    e.world_size = parse_count(env, "SLURM_NTASKS", 1, 1);
    e.local_rank = parse_count(env, "SLURM_LOCALID", 0, 0);
    // SLURM_NTASKS_PER_NODE is set with --ntasks-per-node; otherwise assume an even split.
    const int nodes = parse_count(env, "SLURM_JOB_NUM_NODES", parse_count(env, "SLURM_NNODES", 1, 1), 1);
    e.local_world_size = parse_count(env, "SLURM_NTASKS_PER_NODE", std::max(1, e.world_size / nodes), 1);
    const std::string nodelist = get(env, "SLURM_JOB_NODELIST", get(env, "SLURM_NODELIST", ""));
    e.master_addr = nodelist.empty() ? e.master_addr : first_slurm_host(nodelist);
  } else if (env.count("OMPI_COMM_WORLD_RANK")) {
    e.source = "openmpi";
    e.rank = parse_count(env, "OMPI_COMM_WORLD_RANK", 0, 0);
    e.world_size = parse_count(env, "OMPI_COMM_WORLD_SIZE", 1, 1);
    e.local_rank = parse_count(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0, 0);
    e.local_world_size = parse_count(env, "OMPI_COMM_WORLD_LOCAL_SIZE", 1, 1);
  }
  e.master_addr = get(env, "MASTER_ADDR", e.master_addr);
  e.master_port = parse_count(env, "MASTER_PORT", e.master_port, 1);
  if (e.master_port > 65535) throw std::invalid_argument("MASTER_PORT=" + std::to_string(e.master_port) + ": not a port");
  if (e.rank >= e.world_size)
    throw std::invalid_argument("rank " + std::to_string(e.rank) + " (from " + e.source +
                                "'s variables) is not below the world size " + std::to_string(e.world_size));
  if (e.local_rank >= e.local_world_size)
    throw std::invalid_argument("local rank " + std::to_string(e.local_rank) + " is not below the local world size " +
                                std::to_string(e.local_world_size));
  return e;
}

Environment environment_from_process() {
  std::map<std::string, std::string> env;
  for (char** v = environ; v && *v; ++v) {
    const std::string entry = *v;
    const size_t eq = entry.find('=');
    if (eq != std::string::npos) env[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  return environment_from(env);
}

// ---- the process group ---------------------------------------------------------------------------

namespace {

// One backend's collectives, whatever its class (ProcessGroupGloo and ProcessGroupNCCL derive from
// c10d::ProcessGroup in LibTorch 1.13 and from c10d::Backend in 2.x; their calls are the same).
struct Collectives {
  std::function<c10::intrusive_ptr<c10d::Work>(std::vector<at::Tensor>&)> all_reduce_sum;
  std::function<c10::intrusive_ptr<c10d::Work>(std::vector<at::Tensor>&)> broadcast_from_0;
  std::function<c10::intrusive_ptr<c10d::Work>()> barrier;
};

template <class Group>
Collectives collectives_of(const c10::intrusive_ptr<Group>& group, const c10d::BarrierOptions& barrier_options) {
  Collectives c;
  c.all_reduce_sum = [group](std::vector<at::Tensor>& t) {
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    return group->allreduce(t, o);
  };
  c.broadcast_from_0 = [group](std::vector<at::Tensor>& t) {
    c10d::BroadcastOptions o;
    o.rootRank = 0;
    return group->broadcast(t, o);
  };
  c.barrier = [group, barrier_options] { return group->barrier(barrier_options); };
  return c;
}

struct Group {
  Environment env;
  std::chrono::milliseconds timeout{0};
  std::string backend = "none";
  c10::intrusive_ptr<c10d::Store> store;
  Collectives collectives;
  torch::Device device{torch::kCPU};  // where the backend's tensors live (NCCL: cuda:local_rank)
  std::shared_ptr<void> keep_alive;   // the backend object
  std::function<void()> shutdown_backend;
};

std::unique_ptr<Group>& group() {
  static std::unique_ptr<Group> g;
  return g;
}

std::string who() {
  const auto& g = group();
  return g ? "rank " + std::to_string(g->env.rank) + " of " + std::to_string(g->env.world_size) : "rank 0 of 1";
}

// Every rank's last note_progress(), as far as the store still answers.
std::string progress_report() {
  std::string report;
  for (int r = 0; r < group()->env.world_size; ++r) {
    std::string where = "?";
    try {
      const std::string key = "nurture/progress/" + std::to_string(r);
      if (group()->store->check({key})) {
        const auto bytes = group()->store->get(key);
        where.assign(bytes.begin(), bytes.end());
      }
    } catch (const std::exception&) {
      where = "unknown (the store on rank 0 does not answer)";
    }
    report += (report.empty() ? "" : ", ") + std::string("rank ") + std::to_string(r) + " at " + where;
  }
  return report;
}

// Waits for `work`; a failure or timeout becomes an error naming this rank, where every rank
// was last, and the likely cause.
// (NCCL: wait() with a timeout would block the host until the GPU is done; without one it
// only orders this stream after the collective, and NCCL's watchdog enforces the timeout.)
void wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) {
  try {
    if (group()->backend == "nccl")
      work->wait();
    else if (!work->wait(group()->timeout))
      throw std::runtime_error("timed out after " + std::to_string(group()->timeout.count() / 1000) + " s");
  } catch (const std::exception& e) {
    throw std::runtime_error(who() + ": " + what + " with the other ranks failed: " +
                             std::string(e.what()).substr(0, 300) + ". Last seen: " + progress_report() +
                             ". A rank that is behind or unknown probably died or hangs (distributed.timeout_s "
                             "bounds the wait)");
  }
}

}  // namespace

void init(const Environment& env, const torch::Device& device, std::chrono::milliseconds timeout) {
  if (group()) return;
  auto g = std::make_unique<Group>();
  g->env = env;
  g->timeout = timeout;
  if (env.world_size == 1) {
    group() = std::move(g);
    return;
  }
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(env.master_port);
  options.isServer = env.rank == 0;
  options.numWorkers = static_cast<size_t>(env.world_size);
  options.waitWorkers = true;
  options.timeout = timeout;
  try {
    try {
      g->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
    } catch (const std::exception& e) {
      // A LibTorch built without libuv refuses its own default server: every rank retries with
      // the classic one (the same choice on all ranks, as the message is the same).
      if (std::string(e.what()).find("libuv") == std::string::npos || !compat::use_classic_tcp_store(options)) throw;
      g->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
    }
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) +
                             ": cannot meet the other ranks at " + env.master_addr + ":" +
                             std::to_string(env.master_port) + " (" + std::string(e.what()).substr(0, 300) +
                             "). HINT: are all ranks started, with the same MASTER_ADDR and MASTER_PORT, and "
                             "is the port free on the master?");
  }
#if defined(NURTURE_WITH_NCCL)
  if (device.is_cuda()) {
    // One GPU per local rank, current before NCCL creates its communicator on it.
    g->device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
    c10::cuda::set_device(g->device.index());
    auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
    nccl_options->timeout = timeout;
    auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(g->store, env.rank, env.world_size, nccl_options);
    c10d::BarrierOptions barrier_options;
    barrier_options.device_ids = {env.local_rank};  // else NCCL guesses the GPU from the rank
    g->collectives = collectives_of(nccl, barrier_options);
    g->keep_alive = std::shared_ptr<void>(new c10::intrusive_ptr<c10d::ProcessGroupNCCL>(nccl),
                                          [](void* p) { delete static_cast<c10::intrusive_ptr<c10d::ProcessGroupNCCL>*>(p); });
#if NURTURE_TORCH_AT_LEAST(2, 4)
    // Since 2.4 a ProcessGroupNCCL destroyed without shutdown() warns (and may leak its comms).
    g->shutdown_backend = [nccl] { nccl->shutdown(); };
#endif
    g->backend = "nccl";
  }
#else
  if (device.is_cuda())
    throw std::runtime_error("rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) +
                             ": data parallel on CUDA needs NCCL, and this build has none. HINT: configure "
                             "against a CUDA LibTorch with nccl.h found (-DNCCL_INCLUDE_DIR=...; see "
                             "docs/building.md), or run on cpu");
#endif
  if (g->backend == "none") {
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(timeout);
    if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"))
      gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
    else
      gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    gloo_options->threads = 2;
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, env.rank, env.world_size, gloo_options);
    g->collectives = collectives_of(gloo, c10d::BarrierOptions());
    g->keep_alive = std::shared_ptr<void>(new c10::intrusive_ptr<c10d::ProcessGroupGloo>(gloo),
                                          [](void* p) { delete static_cast<c10::intrusive_ptr<c10d::ProcessGroupGloo>*>(p); });
    g->backend = "gloo";
  }
  group() = std::move(g);
}

bool initialized() { return group() != nullptr; }

void shutdown() {
  auto& g = group();
  if (!g) return;
  if (g->env.world_size > 1) {
    try {
      if (g->env.rank != 0) {
        publish("left/" + std::to_string(g->env.rank), "1");
      } else {
        // Long enough for ranks that are on their way out; not the whole timeout for a dead one.
        const auto deadline = std::chrono::steady_clock::now() + std::min<std::chrono::milliseconds>(g->timeout, std::chrono::seconds(5));
        for (int r = 1; r < g->env.world_size; ++r)
          while (!g->store->check({"nurture/left/" + std::to_string(r)}) &&
                 std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    } catch (const std::exception&) {  // a rank (or rank 0's store) is gone already: nothing to wait for
    }
  }
  if (g->shutdown_backend) {
    try {
      g->shutdown_backend();
    } catch (const std::exception&) {  // leaving anyway
    }
  }
  g.reset();
}

int rank() { return group() ? group()->env.rank : 0; }
int world_size() { return group() ? group()->env.world_size : 1; }
int local_rank() { return group() ? group()->env.local_rank : 0; }

const std::string& backend() {
  static const std::string none = "none";
  return group() ? group()->backend : none;
}

torch::Device local_device(const torch::Device& device) {
  if (!device.is_cuda() || device.has_index()) return device;
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank()));
}

// Runs `collective` on `tensors`; those not on the backend's device (a CPU count under NCCL)
// travel through a copy there and back.
static void on_backend_device(std::vector<torch::Tensor>& tensors,
                              const std::function<c10::intrusive_ptr<c10d::Work>(std::vector<at::Tensor>&)>& collective,
                              const std::string& what) {
  const torch::Device device = group()->device;
  bool staged = false;
  std::vector<torch::Tensor> there;
  for (const auto& t : tensors) {
    staged = staged || t.device() != device;
    there.push_back(t.device() == device ? t : t.to(device));
  }
  wait(collective(there), what);
  if (!staged) return;
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].device() != device) tensors[i].copy_(there[i]);
}

void all_reduce_sum(std::vector<torch::Tensor>& tensors) {
  if (world_size() == 1 || tensors.empty()) return;
  on_backend_device(tensors, group()->collectives.all_reduce_sum, "an all-reduce");
}

void all_reduce_sum(torch::Tensor& tensor) {
  std::vector<torch::Tensor> one = {tensor};
  all_reduce_sum(one);
}

void broadcast_module(torch::nn::Module& module) {
  if (world_size() == 1) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors;
  for (const auto& p : module.parameters()) tensors.push_back(p);
  for (const auto& b : module.buffers()) tensors.push_back(b);
  for (auto& t : tensors) {
    std::vector<torch::Tensor> one = {t};
    on_backend_device(one, group()->collectives.broadcast_from_0, "broadcasting the starting weights");
  }
}

void barrier() {
  if (world_size() == 1) return;
  wait(group()->collectives.barrier(), "a barrier");
}

void note_progress(const std::string& where) {
  if (world_size() == 1) return;
  group()->store->set("nurture/progress/" + std::to_string(rank()), std::vector<uint8_t>(where.begin(), where.end()));
}

void publish(const std::string& key, const std::string& value) {
  if (world_size() == 1) return;
  group()->store->set("nurture/" + key, std::vector<uint8_t>(value.begin(), value.end()));
}

std::string wait_for(const std::string& key) {
  if (world_size() == 1) return "";
  const std::string full = "nurture/" + key;
  try {
    while (!group()->store->check({full})) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const auto bytes = group()->store->get(full);
    return std::string(bytes.begin(), bytes.end());
  } catch (const std::exception& e) {
    throw std::runtime_error(who() + ": lost rank 0 while waiting for '" + key + "' (" +
                             std::string(e.what()).substr(0, 300) + "); rank 0 probably died");
  }
}

void on_rank0(const std::string& key, const std::function<void()>& work) {
  if (world_size() == 1) return work();
  if (rank() == 0) {
    try {
      work();
    } catch (const std::exception& e) {
      publish(key, std::string("error:") + e.what());
      throw;
    }
    publish(key, "ok");
    return;
  }
  const std::string outcome = wait_for(key);
  if (outcome.rfind("error:", 0) == 0) throw std::runtime_error(outcome.substr(6));
}

// ---- gradients -----------------------------------------------------------------------------------

struct GradientSync::State {
  struct Bucket {
    std::vector<size_t> params;  // indices into State::params
    int64_t numel = 0;
    int64_t ready = 0;
    bool launched = false;
    torch::Tensor buffer;
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::vector<torch::Tensor> params;
  std::vector<size_t> bucket_of;  // param index -> bucket
  std::vector<Bucket> buckets;
  std::vector<compat::AutogradNodePtr> accumulators;  // kept alive, as DDP does
  std::vector<uintptr_t> hook_keys;
  std::vector<char> seen;         // param index -> its gradient arrived in this backward
  size_t next_launch = 0;
  bool armed = false;
  std::mutex mutex;  // CUDA backward runs hooks on the device threads

  void launch(size_t b) {
    Bucket& bucket = buckets[b];
    std::vector<torch::Tensor> flat;
    for (size_t i : bucket.params) {
      const torch::Tensor& p = params[i];
      flat.push_back(p.grad().defined() ? p.grad().detach().reshape(-1) : torch::zeros({p.numel()}, p.options()));
    }
    bucket.buffer = torch::cat(flat);
    std::vector<torch::Tensor> one = {bucket.buffer};
    bucket.work = group()->collectives.all_reduce_sum(one);
    bucket.launched = true;
  }

  // Buckets start in index order on every rank, so that the collectives match.
  void mark_ready(size_t i) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!armed || seen[i]) return;
    seen[i] = 1;
    ++buckets[bucket_of[i]].ready;
    while (next_launch < buckets.size() &&
           buckets[next_launch].ready == static_cast<int64_t>(buckets[next_launch].params.size()))
      launch(next_launch++);
  }
};

namespace {

struct ReadyHook : torch::autograd::FunctionPostHook {
  ReadyHook(std::weak_ptr<GradientSync::State> state, size_t index) : state_(std::move(state)), index_(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    if (auto state = state_.lock()) state->mark_ready(index_);
    return outputs;
  }
  std::weak_ptr<GradientSync::State> state_;
  size_t index_;
};

}  // namespace

GradientSync::GradientSync(torch::nn::Module& module, int64_t bucket_bytes) : state_(std::make_shared<State>()) {
  if (world_size() == 1) return;
  for (const auto& p : module.parameters())
    if (p.requires_grad()) state_->params.push_back(p);
  // Reverse order (backward produces the last layers' gradients first); one dtype per bucket.
  State::Bucket current;
  int64_t bytes = 0;
  for (size_t k = state_->params.size(); k-- > 0;) {
    const auto& p = state_->params[k];
    const bool dtype_changes = !current.params.empty() &&
                               state_->params[current.params.front()].scalar_type() != p.scalar_type();
    if (!current.params.empty() && (bytes >= bucket_bytes || dtype_changes)) {
      state_->buckets.push_back(std::move(current));
      current = State::Bucket();
      bytes = 0;
    }
    current.params.push_back(k);
    current.numel += p.numel();
    bytes += p.numel() * static_cast<int64_t>(p.element_size());
  }
  if (!current.params.empty()) state_->buckets.push_back(std::move(current));
  state_->bucket_of.resize(state_->params.size());
  for (size_t b = 0; b < state_->buckets.size(); ++b)
    for (size_t i : state_->buckets[b].params) state_->bucket_of[i] = b;
  state_->seen.assign(state_->params.size(), 0);
  for (size_t i = 0; i < state_->params.size(); ++i) {
    auto accumulator = torch::autograd::impl::grad_accumulator(state_->params[i]);
    state_->hook_keys.push_back(accumulator->add_post_hook(std::make_unique<ReadyHook>(state_, i)));
    state_->accumulators.push_back(std::move(accumulator));
  }
}

GradientSync::~GradientSync() {
  for (size_t i = 0; i < state_->accumulators.size(); ++i) state_->accumulators[i]->del_post_hook(state_->hook_keys[i]);
}

int64_t GradientSync::buckets() const { return static_cast<int64_t>(state_->buckets.size()); }

void GradientSync::arm() {
  if (world_size() == 1) return;
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->armed = true;
  state_->next_launch = 0;
  std::fill(state_->seen.begin(), state_->seen.end(), 0);
  for (auto& b : state_->buckets) {
    b.ready = 0;
    b.launched = false;
    b.work.reset();
  }
}

void GradientSync::finish() {
  if (world_size() == 1) return;
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (!state_->armed) return;
  // Buckets holding a parameter that got no gradient (unused in this forward) start now.
  while (state_->next_launch < state_->buckets.size()) state_->launch(state_->next_launch++);
  torch::NoGradGuard no_grad;
  for (auto& bucket : state_->buckets) {
    wait(bucket.work, "summing gradients");
    int64_t offset = 0;
    for (size_t i : bucket.params) {
      torch::Tensor& p = state_->params[i];
      const auto summed = bucket.buffer.narrow(0, offset, p.numel()).view_as(p);
      if (p.grad().defined()) p.mutable_grad().copy_(summed);
      else p.mutable_grad() = summed.clone();
      offset += p.numel();
    }
    bucket.buffer = torch::Tensor();
  }
  state_->armed = false;
}

}  // namespace nurture::dist
