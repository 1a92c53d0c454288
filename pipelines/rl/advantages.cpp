// Advantage estimators and whitening over the ranks (see advantages.h).
#include "pipelines/rl/advantages.h"

#include <stdexcept>

#include "modules/objectives/losses.h"
#include "pipelines/runtime/distributed.h"

namespace nurture::rl {

Advantages gae_advantages(const AdvantageInput& in) {
  TORCH_CHECK(in.values.defined(), "the gae advantage estimator needs a critic's values");
  Gae g = gae(in.rewards, in.values, in.mask, in.gamma, in.lam);
  return {g.advantages, g.returns};
}

RewardScaling parse_reward_scaling(const std::string& name) {
  if (name == "group") return RewardScaling::group;
  if (name == "batch") return RewardScaling::batch;
  if (name == "none") return RewardScaling::none;
  throw std::invalid_argument("unknown reward scaling '" + name + "' (known: batch, group, none)");
}

// ---- critic-free estimators ---------------------------------------------------------------------------

torch::Tensor group_scores(const torch::Tensor& scores, int64_t group_size) {
  TORCH_CHECK(scores.dim() == 1, "scores must be [B], got ", scores.sizes());
  TORCH_CHECK(group_size >= 1 && scores.size(0) % group_size == 0, "group_size ", group_size,
              " does not divide the rollout's ", scores.size(0), " rows");
  return scores.view({-1, group_size});
}

namespace {

// A per-reply advantage on every response token of the reply, in the scores' dtype:
// [B], mask [B, N] -> [B, N].
Advantages on_every_token(const torch::Tensor& per_reply, const AdvantageInput& in) {
  const auto dtype = in.scores.scalar_type();
  return {per_reply.to(dtype).unsqueeze(1) * in.mask.to(dtype), torch::Tensor()};
}

// The standard deviation of every rank's scores (unbiased), from sums over the ranks.
torch::Tensor batch_std_over_ranks(const torch::Tensor& scores) {
  if (dist::world_size() == 1) return scores.std(/*unbiased=*/true);
  torch::Tensor sums = torch::stack({scores.sum(), torch::full({}, scores.size(0), scores.options())});
  dist::all_reduce_sum(sums);
  const auto mean = sums[0] / sums[1];
  torch::Tensor square = (scores - mean).pow(2).sum().reshape({1});
  dist::all_reduce_sum(square);
  return (square[0] / (sums[1] - 1).clamp_min(1)).sqrt();
}

}  // namespace

Advantages grpo_advantages(const AdvantageInput& in) {
  const auto g = group_scores(in.scores.to(torch::kFloat64), in.group_size);
  auto centred = (g - g.mean(1, /*keepdim=*/true)).reshape({-1});
  if (in.scale == RewardScaling::group) {
    const auto std = in.group_size > 1 ? g.std({1}, /*unbiased=*/true, /*keepdim=*/true)
                                       : torch::zeros({g.size(0), 1}, g.options());
    centred = centred / (std.expand_as(g).reshape({-1}) + 1e-4);
  } else if (in.scale == RewardScaling::batch) {
    centred = centred / (batch_std_over_ranks(in.scores.to(torch::kFloat64)) + 1e-4);
  }
  return on_every_token(centred, in);
}

Advantages rloo_advantages(const AdvantageInput& in) {
  TORCH_CHECK(in.group_size >= 2, "the rloo advantage estimator needs group_size >= 2 (a reply is compared "
              "with the others to its prompt), got ", in.group_size);
  const auto g = group_scores(in.scores.to(torch::kFloat64), in.group_size);
  const double G = static_cast<double>(in.group_size);
  // r_i − (Σ_g − r_i)/(G − 1)
  const auto others = (g.sum(1, /*keepdim=*/true) - g) / (G - 1);
  return on_every_token((g - others).reshape({-1}), in);
}

Advantages reinforce_baseline_advantages(const AdvantageInput& in) {
  const auto g = group_scores(in.scores.to(torch::kFloat64), in.group_size);
  const auto centred = (g - g.mean(1, /*keepdim=*/true)).reshape({-1});
  Advantages a = on_every_token(centred, in);
  const auto mask = in.mask.to(a.advantages.scalar_type());
  a.advantages = whiten_over_ranks(a.advantages, mask) * mask;
  return a;
}

torch::Tensor whiten_over_ranks(const torch::Tensor& x, const torch::Tensor& mask) {
  if (dist::world_size() == 1) return masked_whiten(x, mask);
  const auto m = mask.to(x.scalar_type());
  torch::Tensor sums = torch::stack({(x.masked_fill(mask == 0, 0) * m).sum(), m.sum()});
  dist::all_reduce_sum(sums);
  const auto n = sums[1].clamp_min(1);
  const auto mean = sums[0] / n;
  torch::Tensor square = ((x - mean).pow(2).masked_fill(mask == 0, 0) * m).sum().reshape({1});
  dist::all_reduce_sum(square);
  const auto var = square[0] / n * (sums[1] / (sums[1] - 1).clamp_min(1));
  return masked_whiten_with(x, mask, mean, var);
}

Registry<AdvantageEstimator>& advantage_estimator_registry() {
  static Registry<AdvantageEstimator> registry = [] {
    Registry<AdvantageEstimator> r("advantage estimator");
    r.add("gae", gae_advantages);
    r.add("grpo", grpo_advantages);
    r.add("rloo", rloo_advantages);
    r.add("reinforce_baseline", reinforce_baseline_advantages);
    return r;
  }();
  return registry;
}

}  // namespace nurture::rl
