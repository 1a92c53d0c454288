// Advantage estimators and whitening over the ranks (see advantages.h).
#include "pipelines/rl/advantages.h"

#include "modules/objectives/losses.h"
#include "pipelines/runtime/distributed.h"

namespace nurture::rl {

Advantages gae_advantages(const AdvantageInput& in) {
  TORCH_CHECK(in.values.defined(), "the gae advantage estimator needs a critic's values");
  Gae g = gae(in.rewards, in.values, in.mask, in.gamma, in.lam);
  return {g.advantages, g.returns};
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
    return r;
  }();
  return registry;
}

}  // namespace nurture::rl
