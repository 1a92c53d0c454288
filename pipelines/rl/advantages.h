// Advantage estimators behind one interface, registered by name (advantage_estimator_registry(),
// as verl registers its estimators): an estimator turns a rollout's per-token rewards (and the
// critic's values, when it has one) into advantages and value targets. Built in: GAE (PPO, with a
// critic) and the critic-free ones, which compare each reply's score with the other replies to
// the same prompt (a group: rows [k·G, (k + 1)·G)):
//   grpo                A_i = (r_i − mean_g) / (std_g + 1e-4), std over the group, the whole
//                       batch (every rank's) or none at all (Dr. GRPO): `scale`
//   rloo                A_i = r_i − mean of the group's other G − 1 scores (leave-one-out)
//   reinforce_baseline  r_i − mean_g on every token, then whitened over the batch's tokens of
//                       every rank (REINFORCE++ with a baseline, OpenRLHF's)
// Standard deviations are unbiased (Bessel), as torch.std and TRL. A new estimator is one function
// of AdvantageInput, added to the registry below or by a plugin.
//
// Letters: B rollout rows, N response positions, G group size.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>

#include "modules/core/registry.h"

namespace nurture::rl {

// What the grpo estimator divides by: each group's standard deviation, the whole batch's, or
// nothing (Dr. GRPO: the scaling favours prompts whose rewards barely differ).
enum class RewardScaling { group, batch, none };
// "group" | "batch" | "none"; anything else is a std::invalid_argument.
RewardScaling parse_reward_scaling(const std::string& name);

struct AdvantageInput {
  torch::Tensor rewards;     // [B, N] per-token rewards, 0 where mask is 0
  torch::Tensor values;      // [B, N] the critic's values; undefined without a critic
  torch::Tensor mask;        // [B, N] response tokens
  torch::Tensor scores;      // [B] each reply's score (what critic-free estimators compare)
  int64_t group_size = 1;    // rows [k·G, (k + 1)·G) answer the same prompt
  double gamma = 1.0;        // discount over response tokens
  double lam = 0.95;         // GAE's λ
  RewardScaling scale = RewardScaling::group;  // grpo's divisor
};

struct Advantages {
  torch::Tensor advantages;  // [B, N], 0 where mask is 0
  torch::Tensor returns;     // [B, N] value targets; undefined for critic-free estimators
};

using AdvantageEstimator = std::function<Advantages(const AdvantageInput&)>;

// The estimators by name: gae, grpo, rloo, reinforce_baseline, registered on first use, and those
// plugins add.
Registry<AdvantageEstimator>& advantage_estimator_registry();

// Generalised advantage estimation (modules/objectives/losses.h gae) over the values; needs a critic.
Advantages gae_advantages(const AdvantageInput& in);

// The critic-free estimators; each needs B divisible by group_size (rloo: group_size ≥ 2).
Advantages grpo_advantages(const AdvantageInput& in);
Advantages rloo_advantages(const AdvantageInput& in);
Advantages reinforce_baseline_advantages(const AdvantageInput& in);

// Each group's scores: scores [B] -> [B / G, G], checked.
torch::Tensor group_scores(const torch::Tensor& scores, int64_t group_size);

// masked_whiten over the response tokens of every rank's rollout: the masked mean and (unbiased)
// variance come from sums over the ranks (one rank: masked_whiten itself).
torch::Tensor whiten_over_ranks(const torch::Tensor& x, const torch::Tensor& mask);

}  // namespace nurture::rl
