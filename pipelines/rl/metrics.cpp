// The iteration's numbers over every rank (see metrics.h).
#include "pipelines/rl/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
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

namespace {

double mean_of(const torch::Tensor& sum, int64_t count) {
  return sum.defined() && count > 0 ? sum.item<double>() / static_cast<double>(count) : 0.0;
}

// The largest of each rank's `value`: every rank adds one slot per rank, its own filled.
void add_max_over_ranks(CrossRankSums& sums, const std::string& name, double value) {
  for (int rank = 0; rank < dist::world_size(); ++rank)
    sums.add(name + "@" + std::to_string(rank), rank == dist::rank() ? value : 0.0);
}

double max_over_ranks(const CrossRankSums& sums, const std::string& name) {
  double out = -std::numeric_limits<double>::infinity();
  for (int rank = 0; rank < dist::world_size(); ++rank) out = std::max(out, sums[name + "@" + std::to_string(rank)]);
  return out;
}

}  // namespace

void GroupIteration::add(const GroupPolicyLoss& update) {
  accumulate(policy_loss, update.loss);
  accumulate(clip_low_fraction, update.clip_low_fraction);
  accumulate(clip_high_fraction, update.clip_high_fraction);
  accumulate(kl, update.kl);
  ++updates;
}

IterationMetrics group_iteration_metrics(const Rollout& r, const GroupIteration& g, const std::string& where) {
  torch::NoGradGuard no_grad;
  const auto f64 = torch::kFloat64;
  const torch::Tensor m = r.response_mask.to(f64), scores = g.scores.to(f64);
  CrossRankSums sums(m.device());
  sums.add("replies", static_cast<double>(r.tokens.size(0)));
  sums.add("score", scores.sum());
  sums.add("score_squares", scores.pow(2).sum());
  for (const auto& [name, values] : g.function_scores) {
    double total = 0;
    for (double v : values) total += v;
    sums.add("function:" + name, total);
  }
  sums.add("groups", static_cast<double>(g.groups_sampled));
  sums.add("zero_std_groups", static_cast<double>(g.zero_std_groups));
  sums.add("entropy", (r.entropy.to(f64).masked_fill(m == 0, 0) * m).sum());
  sums.add("tokens", m.sum());
  sums.add("stopped", r.stopped.to(f64).sum());
  const double ranks = dist::world_size();
  sums.add("policy_loss", mean_of(g.policy_loss, g.updates));
  sums.add("clip_low_fraction", mean_of(g.clip_low_fraction, g.updates));
  sums.add("clip_high_fraction", mean_of(g.clip_high_fraction, g.updates));
  if (g.kl.defined()) sums.add("kl", mean_of(g.kl, g.updates));
  add_max_over_ranks(sums, "logprob_gap", g.logprob_gap);
  sums.add("stop", stop_requested() ? 1.0 : 0.0);
  dist::note_progress(where);
  sums.reduce();

  const double n = sums["replies"], mean = sums["score"] / n;
  IterationMetrics out;
  out.stop = sums["stop"] > 0;
  out.metrics = {{"reward_mean", mean},
                 {"reward_std", std::sqrt(std::max(0.0, sums["score_squares"] / n - mean * mean))},
                 {"zero_std_fraction", sums["zero_std_groups"] / std::max(sums["groups"], 1.0)},
                 {"sampling_rounds", g.sampling_rounds},
                 {"entropy", sums["entropy"] / std::max(sums["tokens"], 1.0)},
                 {"response_length", sums["tokens"] / n},
                 {"stopped_fraction", sums["stopped"] / n},
                 {"logprob_gap_max", max_over_ranks(sums, "logprob_gap")}};
  for (const auto& [name, values] : g.function_scores) out.metrics["reward_" + name] = sums["function:" + name] / n;
  for (const char* name : {"policy_loss", "clip_low_fraction", "clip_high_fraction"})
    out.metrics[name] = sums[name] / ranks;
  if (g.kl.defined()) out.metrics["kl"] = sums["kl"] / ranks;
  return out;
}

}  // namespace nurture::rl
