// Data parallelism on PyTorch's own distributed engine (c10d): Gloo on CPU, NCCL on CUDA.
//
// A process learns its place from the environment conventions users already have — torchrun's
// (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, set by `nurture launch` too), Slurm's
// (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, the first host of SLURM_JOB_NODELIST) or Open MPI's
// (OMPI_COMM_WORLD_*) — and meets the others through a c10d TCPStore on the master.
//
// What the stages get from here:
//  * rank() / world_size(): which share of every batch is this process's;
//  * GradientSync: gradients summed over the ranks in buckets, each launched from an autograd
//    hook as soon as its gradients are complete, so communication overlaps the backward pass;
//  * all_reduce_sum / broadcast_module: the rest (token counts, whitening statistics, the
//    starting weights).
// Rank 0 alone writes files; stages that are not data-parallel (tokenizer, eval) run on rank 0
// while the others wait (the runner).
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace nurture::dist {

// ---- where this process is -------------------------------------------------------------------------

struct Environment {
  int rank = 0, world_size = 1;
  int local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "single process";  // "torchrun", "slurm", "openmpi" or "single process"
};

// Reads `env` (name -> value; the process environment when called without). Throws
// std::invalid_argument naming the variable when one is malformed or they contradict each other.
Environment environment_from(const std::map<std::string, std::string>& env);
Environment environment_from_process();

// The first host of a Slurm node list: "gpu[07-09,12],cpu3" -> "gpu07".
std::string first_slurm_host(const std::string& nodelist);

// ---- the process group ---------------------------------------------------------------------------

// Joins the other processes (no-op for a single one). `device` picks the backend: NCCL for CUDA
// (a build without NCCL refuses several CUDA ranks), Gloo for CPU; with CUDA each process uses
// GPU local_rank. `timeout` bounds
// the rendezvous and every collective: a rank that died or hangs makes the others fail then.
void init(const Environment& env, const torch::Device& device, std::chrono::milliseconds timeout);
bool initialized();
// Leaves the group: the other ranks say they are done, rank 0 (whose process serves the store)
// waits for them, up to the timeout, so that nobody loses the store while still reading from it.
void shutdown();

int rank();
int world_size();
int local_rank();
const std::string& backend();  // "gloo" | "nccl" | "none"
// The CUDA device of this process (cuda:local_rank), or `device` unchanged for CPU.
torch::Device local_device(const torch::Device& device);

// Sums `tensors` (same shapes on every rank) in place over all ranks; no-op for one process.
void all_reduce_sum(std::vector<torch::Tensor>& tensors);
void all_reduce_sum(torch::Tensor& tensor);
// Rank 0's parameters and buffers, copied to every rank.
void broadcast_module(torch::nn::Module& module);
// Waits for every rank (bounded by the timeout).
void barrier();

// Where this rank is (e.g. "pretrain step 120"), kept in the store: when a collective fails,
// the error lists every rank's last note, which shows the rank that died or hangs.
void note_progress(const std::string& where);

// Rank 0 publishes how a stage it ran alone ended; the others wait for it (polling, so that a
// long stage does not run into the collective timeout; a rank 0 that dies closes the store,
// which ends the wait with an error).
void publish(const std::string& key, const std::string& value);
std::string wait_for(const std::string& key);
// Runs `work` on rank 0 alone (e.g. writing a shared file) while the others wait for it under
// `key` (unique in the run); an exception on rank 0 is thrown on every rank, with its message.
void on_rank0(const std::string& key, const std::function<void()>& work);

// ---- gradients -----------------------------------------------------------------------------------

// Sums the gradients of `module`'s trainable parameters over the ranks. Parameters are grouped
// into buckets of about `bucket_bytes` (in reverse order, the order backward produces them); a
// bucket's all-reduce starts from an autograd hook as soon as its last gradient is accumulated.
// Only the backward passes between arm() and finish() are synchronised (gradient accumulation
// arms only the last micro-batch). Parameters that received no gradient count as zero.
class GradientSync {
 public:
  explicit GradientSync(torch::nn::Module& module, int64_t bucket_bytes = 25 << 20);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  void arm();     // the next backward's gradients are the step's: sync them
  void finish();  // waits for every bucket and writes the sums into .grad(); disarms
  int64_t buckets() const;

  struct State;  // shared with the autograd hooks

 private:
  std::shared_ptr<State> state_;
};

}  // namespace nurture::dist
