// The KL penalty to the reference policy: the per-token estimator (k1 or k3), the coefficient β,
// fixed or adapted after every iteration towards a target KL (Ziegler et al. 2019), and the
// per-token rewards it makes with a reply's score.
//
// Letters: B rollout rows, N response positions.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace nurture::rl {

enum class KlEstimator { k1, k3 };
// "k1" | "k3"; anything else is a std::invalid_argument.
KlEstimator parse_kl_estimator(const std::string& name);

struct KlOptions {
  double coef = 0.05;  // β, the initial value when adaptive
  KlEstimator estimator = KlEstimator::k1;
  bool adaptive = false;
  double target = 6.0;      // nats per reply
  int64_t horizon = 10000;  // in replies
};

// β grows when the measured KL is above target and shrinks below it, by at most 20% of
// n_steps/horizon per update.
double adaptive_kl_update(double beta, double kl, double target, int64_t n_steps, int64_t horizon);

class KlController {
 public:
  explicit KlController(KlOptions options) : options_(options), beta_(options.coef) {}
  double beta() const { return beta_; }
  void set_beta(double beta) { beta_ = beta; }  // resuming
  // The estimator's per-token KL(π ‖ π_ref), 0 where mask is 0: all [B, N].
  torch::Tensor per_token(const torch::Tensor& logprobs, const torch::Tensor& ref_logprobs,
                          const torch::Tensor& mask) const;
  // After an iteration whose mean KL per reply was `kl`, over `replies` replies of all ranks
  // (no change unless adaptive).
  void update(double kl, int64_t replies);
  // "β 0.0500 (k1, fixed)" / "(k3, adaptive to 6.00)"
  std::string describe() const;

 private:
  KlOptions options_;
  double beta_;
};

// −β·kl on every token, plus each reply's score at its last token.
// kl, mask: [B, N], scores: [B] -> [B, N]
torch::Tensor kl_penalized_rewards(const torch::Tensor& kl, const torch::Tensor& scores, const torch::Tensor& mask,
                                   double beta);

}  // namespace nurture::rl
