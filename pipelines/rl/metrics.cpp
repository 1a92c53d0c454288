// The iteration's numbers over every rank (see metrics.h).
#include "pipelines/rl/metrics.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "pipelines/rl/cross_rank_sums.h"
#include "pipelines/runtime/distributed.h"
#include "pipelines/runtime/stop.h"

namespace nurture::rl {

IterationMetrics iteration_metrics(const Rollout& r, const UpdateStats& u, double beta, const std::string& where) {
  torch::NoGradGuard no_grad;
  const auto f64 = torch::kFloat64;
  const torch::Tensor m = r.response_mask.to(f64);
  const auto kl = r.kl.sum(1).to(f64), scores = r.scores.to(f64);  // [B] per reply
  const auto reward = scores - beta * kl;                           // [B]
  auto token_sum = [&](const torch::Tensor& x) { return (x.to(f64).masked_fill(m == 0, 0) * m).sum(); };
  using Named = std::vector<std::pair<std::string, torch::Tensor>>;
  const bool has_critic = r.values.defined();
  CrossRankSums sums(m.device());
  for (const auto& [name, per_reply] :
       Named{{"reward", reward}, {"score", scores}, {"kl", kl}, {"length", m.sum(1)}, {"stopped", r.stopped.to(f64)}})
    sums.add(name, per_reply.sum());
  sums.add("replies", static_cast<double>(r.tokens.size(0)));
  sums.add("entropy", token_sum(r.entropy));
  if (has_critic)
    for (const auto& [name, per_token] : Named{{"value", r.values}, {"return", r.returns}})
      sums.add(name, token_sum(per_token));
  sums.add("tokens", m.sum());
  for (const auto& [name, sum] : Named{{"policy_loss", u.policy_loss}, {"value_loss", u.value_loss},
                                       {"clip_fraction", u.clip_fraction},
                                       {"value_clip_fraction", u.value_clip_fraction}, {"approx_kl", u.approx_kl}})
    sums.add(name, u.mean(sum));
  sums.add("stop", stop_requested() ? 1.0 : 0.0);
  dist::note_progress(where);
  sums.reduce();

  const double n = sums["replies"], reward_mean = sums["reward"] / n, score_mean = sums["score"] / n;
  CrossRankSums spread(m.device());
  spread.add("reward", (reward - reward_mean).pow(2).sum());
  spread.add("score", (scores - score_mean).pow(2).sum());
  spread.reduce();
  const double tokens = std::max(sums["tokens"], 1.0), ranks = dist::world_size();
  IterationMetrics out;
  out.stop = sums["stop"] > 0;
  out.metrics = {{"reward_mean", reward_mean}, {"reward_std", std::sqrt(spread["reward"] / n)},
                 {"score_mean", score_mean}, {"score_std", std::sqrt(spread["score"] / n)},
                 {"kl", sums["kl"] / n}, {"kl_coef", beta},
                 {"entropy", sums["entropy"] / tokens}, {"response_length", sums["length"] / n},
                 {"stopped_fraction", sums["stopped"] / n}};
  if (has_critic) {
    out.metrics["value_mean"] = sums["value"] / tokens;
    out.metrics["return_mean"] = sums["return"] / tokens;
  }
  for (const char* name : {"policy_loss", "value_loss", "clip_fraction", "value_clip_fraction", "approx_kl"})
    out.metrics[name] = sums[name] / ranks;
  return out;
}

}  // namespace nurture::rl
