// The numbers of one on-policy iteration over every rank's replies: the reward (score − β·KL) and
// score with their spread, KL, entropy, reply length and the share that stopped, the critic's values
// and returns when the rollout has them, and the means of the update's losses. One all-reduce
// carries them all, and with them whether some rank was asked to stop.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "modules/objectives/losses.h"
#include "pipelines/rl/policy_update.h"
#include "pipelines/rl/rollout.h"

namespace nurture::rl {

struct IterationMetrics {
  nlohmann::json metrics;  // reward_mean, reward_std, score_mean, score_std, kl, kl_coef, entropy, ...
  bool stop = false;       // some rank was asked to stop: every rank then stops together
};

// `beta` is the KL coefficient the rollout's rewards were made with; `where` names the iteration
// for the hang watchdog's messages ("ppo iteration 3").
IterationMetrics iteration_metrics(const Rollout& r, const UpdateStats& u, double beta, const std::string& where);

// What a critic-free iteration (grpo) reports beside its rollout: the sampling's groups, the
// per-function scores, the update's sums, and the largest sampling/training log-prob gap.
struct GroupIteration {
  torch::Tensor scores;  // [B] float64: each trained reply's score
  std::vector<std::pair<std::string, std::vector<double>>> function_scores;  // unweighted, one per reply
  int64_t groups_sampled = 0, zero_std_groups = 0;  // on this rank, over every sampling round
  int64_t sampling_rounds = 1;
  double logprob_gap = 0;  // this rank's max |log π_sample − log π_train| over response tokens
  // Sums over the iteration's updates, and their count.
  torch::Tensor policy_loss, clip_low_fraction, clip_high_fraction, kl;
  int64_t updates = 0;

  void add(const GroupPolicyLoss& update);  // one optimizer step's loss into the sums
};

// reward_mean/std (of the scores), reward_<function> means, zero_std_fraction, sampling_rounds,
// entropy, response_length, stopped_fraction, logprob_gap_max (over the ranks), policy_loss,
// clip_low/high_fraction and kl (with a reference), all over every rank's replies.
IterationMetrics group_iteration_metrics(const Rollout& r, const GroupIteration& g, const std::string& where);

}  // namespace nurture::rl
