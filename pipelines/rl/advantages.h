// Advantage estimators behind one interface, registered by name (advantage_estimator_registry(),
// as verl registers its estimators): an estimator turns a rollout's per-token rewards (and the
// critic's values, when it has one) into advantages and value targets. GAE is built in; a new
// estimator is one function of AdvantageInput, added to the registry below or by a plugin.
//
// Letters: B rollout rows, N response positions.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>

#include "modules/core/registry.h"

namespace nurture::rl {

struct AdvantageInput {
  torch::Tensor rewards;     // [B, N] per-token rewards, 0 where mask is 0
  torch::Tensor values;      // [B, N] the critic's values; undefined without a critic
  torch::Tensor mask;        // [B, N] response tokens
  torch::Tensor scores;      // [B] each reply's score (what critic-free estimators compare)
  int64_t group_size = 1;    // rows [k·G, (k + 1)·G) answer the same prompt
  double gamma = 1.0;        // discount over response tokens
  double lam = 0.95;         // GAE's λ
};

struct Advantages {
  torch::Tensor advantages;  // [B, N], 0 where mask is 0
  torch::Tensor returns;     // [B, N] value targets; undefined for critic-free estimators
};

using AdvantageEstimator = std::function<Advantages(const AdvantageInput&)>;

// The estimators by name: "gae", registered on first use, and those plugins add.
Registry<AdvantageEstimator>& advantage_estimator_registry();

// Generalised advantage estimation (modules/objectives/losses.h gae) over the values; needs a critic.
Advantages gae_advantages(const AdvantageInput& in);

// masked_whiten over the response tokens of every rank's rollout: the masked mean and (unbiased)
// variance come from sums over the ranks (one rank: masked_whiten itself).
torch::Tensor whiten_over_ranks(const torch::Tensor& x, const torch::Tensor& mask);

}  // namespace nurture::rl
