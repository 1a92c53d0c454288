// The update half of an on-policy iteration: a trained model with its AdamW and guarded step
// (shared by the policy and the critic), shuffled minibatches over a rollout's rows for several
// epochs, the clipped policy objective on a minibatch, and the per-minibatch numbers summed over
// an iteration.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "modules/model/transformer.h"
#include "modules/objectives/losses.h"
#include "pipelines/rl/logprobs.h"
#include "pipelines/rl/rollout.h"
#include "pipelines/runtime/distributed.h"
#include "pipelines/train/trainer.h"

namespace nurture::rl {

// A model an on-policy stage trains: its AdamW (make_adamw: lr, weight_decay; grad_clip is the
// global norm each step clips to, 0 = off), its gradients summed over the ranks, and one step.
class TrainedModel {
 public:
  TrainedModel(torch::nn::Module& model, const TrainingOptions& options);
  // With several ranks: every rank starts from rank 0's weights.
  void broadcast();
  // With several ranks: the gradients of each step are summed over them (each rank's loss weighs
  // 1/world_size: the mean over ranks).
  void sync_gradients(int64_t bucket_bytes);
  // One update from `loss`, unless its gradient norm is not finite (then skipped and counted by
  // `guard`; the norm is of the summed gradients, so every rank skips or none does). `update` and
  // `last_checkpoint` are for its messages.
  void step(const torch::Tensor& loss, NonFiniteGuard& guard, int64_t update, const std::string& last_checkpoint);
  torch::optim::AdamW& optimizer() { return *optimizer_; }

 private:
  torch::nn::Module& model_;
  double grad_clip_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<dist::GradientSync> sync_;
};

// `epochs` passes over rows [0, rows) in minibatches of at most `minibatch` rows, each pass in its
// own seeded order (derive_seed(seed, iteration, epoch + 1): a resumed run shuffles the same).
// `step` gets each minibatch's row indices ([b] int64 on `device`).
void for_each_minibatch(int64_t rows, int64_t minibatch, int64_t epochs, uint64_t seed, int64_t iteration,
                        const torch::Device& device, const std::function<void(const torch::Tensor&)>& step);

// PPO's clipped surrogate (modules/objectives/losses.h ppo_policy_loss) of `policy` on rows `mb` of the
// rollout, against the rollout's logprobs (π_old) and advantages; with gradients.
PolicyLoss clipped_policy_loss(Transformer& policy, const Rollout& r, const RolloutRows& mb, double temperature,
                               double clip_eps);

// Adds `x`, detached, to the running sum `sum` (undefined until the first x; an undefined x adds
// nothing): a metric summed over an iteration's updates on the device, read back once.
void accumulate(torch::Tensor& sum, const torch::Tensor& x);

// Sums of per-minibatch metrics over an iteration's updates, read back once.
struct UpdateStats {
  torch::Tensor policy_loss, value_loss, clip_fraction, value_clip_fraction, approx_kl;
  int64_t updates = 0;

  void add(const PolicyLoss& p, const ValueLoss& v);
  double mean(const torch::Tensor& sum) const;  // 0 for a metric never added
};

}  // namespace nurture::rl
