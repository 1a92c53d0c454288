// The KL controller (see kl.h).
#include "pipelines/rl/kl.h"

#include <algorithm>
#include <stdexcept>

#include "modules/objectives/losses.h"
#include "pipelines/runtime/log.h"

namespace nurture::rl {

KlEstimator parse_kl_estimator(const std::string& name) {
  if (name == "k1") return KlEstimator::k1;
  if (name == "k3") return KlEstimator::k3;
  throw std::invalid_argument("unknown KL estimator '" + name + "' (known: k1, k3)");
}

double adaptive_kl_update(double beta, double kl, double target, int64_t n_steps, int64_t horizon) {
  const double error = std::clamp(kl / target - 1.0, -0.2, 0.2);
  return beta * (1.0 + error * static_cast<double>(n_steps) / static_cast<double>(horizon));
}

torch::Tensor KlController::per_token(const torch::Tensor& logprobs, const torch::Tensor& ref_logprobs,
                                      const torch::Tensor& mask) const {
  return (options_.estimator == KlEstimator::k3 ? kl_k3(logprobs, ref_logprobs) : kl_k1(logprobs, ref_logprobs)) *
         mask;
}

void KlController::update(double kl, int64_t replies) {
  if (options_.adaptive) beta_ = adaptive_kl_update(beta_, kl, options_.target, replies, options_.horizon);
}

std::string KlController::describe() const {
  const std::string rule = options_.adaptive ? "adaptive to " + fixed(options_.target, 2) : std::string("fixed");
  return "β " + fixed(options_.coef, 4) + " (" + (options_.estimator == KlEstimator::k3 ? "k3" : "k1") + ", " +
         rule + ")";
}

torch::Tensor kl_penalized_rewards(const torch::Tensor& kl, const torch::Tensor& scores, const torch::Tensor& mask,
                                   double beta) {
  auto last = (mask.sum(1) - 1).clamp_min(0).to(torch::kLong).unsqueeze(1);  // [B, 1]
  return (-beta * kl).scatter_add(1, last, scores.unsqueeze(1));
}

}  // namespace nurture::rl
