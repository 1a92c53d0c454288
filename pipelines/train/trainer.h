// The training loop every gradient-based stage shares (pretrain, sft, reward_model, dpo): AdamW
// with weight decay on matrices only, warmup then cosine/linear/constant decay, gradient
// accumulation weighted by units (tokens or pairs), clipping, periodic evaluation, atomic
// checkpoints that resume exactly, metrics.jsonl and the progress display.
//
// A pipeline supplies one function that computes a micro-batch's summed loss and reads its own
// data at TrainingState::data_position; the Trainer does everything else. PPO has its own outer
// loop but uses the same optimizer, schedule and checkpoint functions.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <stdexcept>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "pipelines/recipe/stage.h"
#include "pipelines/runtime/distributed.h"
#include "pipelines/runtime/stop.h"
#include "pipelines/train/checkpoint.h"

namespace nurture {

// ---- settings ---------------------------------------------------------------------------------------

// Per-pipeline defaults for the shared keys (a reward model wants another lr than pre-training).
struct TrainingDefaults {
  int64_t max_steps = 1000;
  int64_t batch_size = 16;
  double lr = 3e-4;
  int64_t warmup_steps = 0;
  double weight_decay = 0.1;
  int64_t eval_every = 100;
  int64_t save_every = 0;
};

// Adds max_steps, batch_size, grad_accum, lr, min_lr_ratio, warmup_steps, schedule, weight_decay,
// beta1, beta2, eps, grad_clip, eval_every, eval_batches, save_every, keep_checkpoints,
// max_nonfinite_steps, log_every to a stage schema.
void add_training_fields(Schema& schema, const TrainingDefaults& defaults);

struct TrainingOptions {
  int64_t max_steps = 1000;   // optimizer steps
  int64_t batch_size = 16;    // examples per micro-batch
  int64_t grad_accum = 1;     // micro-batches per optimizer step
  double lr = 3e-4;           // peak learning rate
  double min_lr_ratio = 0.1;  // the schedule decays to lr * min_lr_ratio
  int64_t warmup_steps = 0;   // linear warmup from 0
  std::string schedule = "cosine";  // cosine | linear | constant (after warmup)
  double weight_decay = 0.1;  // on parameters with 2+ dimensions only
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double grad_clip = 1.0;     // max global gradient norm; 0 = off
  int64_t eval_every = 100;   // optimizer steps; 0 = only at the end
  int64_t eval_batches = 0;   // 0 = the whole held-out set
  int64_t save_every = 0;     // checkpoint every N steps; 0 = only at the end
  int64_t keep_checkpoints = 2;     // the newest N checkpoints are kept
  int64_t max_nonfinite_steps = 5;  // this many non-finite steps in a row stop the stage
  int64_t log_every = 10;     // metrics.jsonl / progress line every N steps

  static TrainingOptions from(const Settings& settings);
};

// The learning rate of optimizer step `step` (0-based).
double learning_rate(const TrainingOptions& options, int64_t step);

// AdamW over `model`'s trainable parameters: decay on those with 2+ dimensions (matrices,
// embeddings), none on biases and norm gains (as GPT-2/LLaMA training does). A FusedAdamW: the
// fused kernel where LibTorch has it.
std::unique_ptr<torch::optim::AdamW> make_adamw(torch::nn::Module& model, const TrainingOptions& options);
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

// ---- numerical faults -------------------------------------------------------------------------------

// A step whose loss or gradient norm is not finite (NaN or inf: a bad batch, too high a learning
// rate) is skipped, without an update, and counted. `limit` of them in a row stop the stage with
// a std::runtime_error; the checkpoints written before them are intact, as no update was made.
// Costs one read of a device value per step.
class NonFiniteGuard {
 public:
  NonFiniteGuard(std::string component, int64_t limit) : component_(std::move(component)), limit_(limit) {}
  // True when the step may update the parameters; `loss` may be undefined (the gradient norm
  // alone is checked). `step` (0-based) and `last_checkpoint` are for the messages.
  bool admit(const torch::Tensor& loss, const torch::Tensor& grad_norm, int64_t step,
             const std::string& last_checkpoint);
  int64_t skipped() const { return skipped_; }
  void set_skipped(int64_t n) { skipped_ = n; }

 private:
  std::string component_;
  int64_t limit_;
  int64_t skipped_ = 0, in_a_row_ = 0;
};

// ---- the loop ---------------------------------------------------------------------------------------

// What a pipeline computes for one micro-batch.
struct MicroBatch {
  torch::Tensor loss_sum;  // [] Σ of per-unit losses, with grad
  torch::Tensor units;     // [] how many units (target tokens, pairs) the sum is over
  int64_t tokens = 0;      // tokens processed, for throughput
  // Extra metrics as Σ over units (averaged by units when logged), e.g. {"accuracy", Σ correct}.
  std::map<std::string, torch::Tensor> sums;
};

// One optimizer step's results, still on the device (reading them is the caller's choice).
struct StepResult {
  torch::Tensor loss_sum;   // [] float64: Σ of the micro-batches' loss sums
  torch::Tensor units;      // [] float64: Σ of their units
  torch::Tensor grad_norm;  // [] float64: global gradient norm before clipping
  std::map<std::string, torch::Tensor> sums;  // Σ of each extra metric, float64
  int64_t tokens = 0;
  double lr = 0;
  bool skipped = false;     // not finite: no update was made (see NonFiniteGuard)
  bool stop = false;        // some rank was asked to stop (SIGTERM/SIGINT): all stop after this step
};

// The data positions of this rank's share of the next global micro-batch (world_size × batch):
// [data_position + rank·batch, + batch). data_position advances by the global batch, so it counts
// the same stream at any number of ranks, and a run may resume on another world size.
std::vector<int64_t> take_positions(TrainingState& state, int64_t batch);

class Trainer {
 public:
  using MicroStep = std::function<MicroBatch(TrainingState& state)>;
  using Evaluate = std::function<nlohmann::json()>;  // held-out metrics, e.g. {"val_loss": 1.2}

  // `model` is trained (all its parameters with requires_grad); the stage's dir holds
  // metrics.jsonl and the checkpoint.
  Trainer(const StageContext& ctx, torch::nn::Module& model, TrainingOptions options);

  // Resumes from <dir>/checkpoint when one exists (logs the step it continues from).
  void resume_if_possible();
  // One optimizer step at state().step: the schedule's learning rate, grad_accum micro-batches
  // (each backward()ed), gradients summed over the ranks (the last micro-batch's backward
  // launches the all-reduces) and divided by the step's units on all ranks, clipping, AdamW,
  // unless the loss or gradient norm is not finite (NonFiniteGuard: the host read of the step).
  StepResult step(const MicroStep& micro_step);
  // Runs until max_steps; evaluates every eval_every steps and at the end; checkpoints every
  // save_every steps and at the end. Returns the final metrics (last train and eval values).
  // Throws StageInterrupted, after checkpointing, when a stop was requested.
  nlohmann::json fit(const MicroStep& micro_step, const Evaluate& evaluate);

  TrainingState& state() { return state_; }
  torch::optim::AdamW& optimizer() { return *optimizer_; }

 private:
  void checkpoint();
  nlohmann::json final_metrics(const nlohmann::json& last_eval, nlohmann::json last_train) const;
  const StageContext& ctx_;
  torch::nn::Module& model_;
  TrainingOptions options_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::vector<torch::Tensor> params_;  // the trained ones
  TrainingState state_;
  NonFiniteGuard nonfinite_;
  std::string last_checkpoint_ = "none yet";
  std::unique_ptr<dist::GradientSync> sync_;  // with more than one rank
};

}  // namespace nurture
