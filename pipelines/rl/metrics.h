// The numbers of one on-policy iteration over every rank's replies: the reward (score − β·KL) and
// score with their spread, KL, entropy, reply length and the share that stopped, the critic's values
// and returns when the rollout has them, and the means of the update's losses. One all-reduce
// carries them all, and with them whether some rank was asked to stop.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

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

}  // namespace nurture::rl
