// The training objectives (see losses.h): cross-entropy, Bradley–Terry, PPO, GAE, GRPO, DPO.
// Everything stays on the device; nothing here reads a value back to the host.
#include "modules/objectives/losses.h"

#include <stdexcept>
#include <vector>

namespace nurture {
namespace {

// float64 stays float64 (finite-difference tests); everything else is computed in float32.
torch::Dtype compute_dtype(const torch::Tensor& t) {
  return t.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
}

torch::Tensor to_compute(const torch::Tensor& t) { return t.to(compute_dtype(t)); }

// logits: [B, T, V], tokens: [B, T]
void check_lm_inputs(const torch::Tensor& logits, const torch::Tensor& tokens) {
  TORCH_CHECK(logits.dim() == 3, "logits must be [B, T, V], got ", logits.sizes());
  TORCH_CHECK(tokens.dim() == 2, "tokens must be [B, T], got ", tokens.sizes());
  TORCH_CHECK(tokens.scalar_type() == torch::kLong, "tokens must be int64, got ",
              tokens.scalar_type());
  TORCH_CHECK(logits.size(0) == tokens.size(0) && logits.size(1) == tokens.size(1),
              "logits [B, T, V] and tokens [B, T] disagree: ", logits.sizes(), " vs ",
              tokens.sizes());
  TORCH_CHECK(logits.size(1) >= 1, "need at least one position, got ", logits.sizes());
}

// The target half of a [B, T] mask, as weights of `dtype`. mask: [B, T] -> [B, T - 1]
torch::Tensor target_mask(const torch::Tensor& mask, const torch::Tensor& tokens,
                          torch::Dtype dtype) {
  TORCH_CHECK(mask.sizes() == tokens.sizes(), "mask must have the tokens' shape [B, T], got ",
              mask.sizes(), " vs ", tokens.sizes());
  return mask.slice(1, 1).to(dtype);
}

void check_same_shape(const torch::Tensor& a, const char* a_name, const torch::Tensor& b,
                      const char* b_name) {
  TORCH_CHECK(a.sizes() == b.sizes(), a_name, " and ", b_name, " must have the same shape, got ",
              a.sizes(), " vs ", b.sizes());
}

}  // namespace

// ---- Language modelling --------------------------------------------------------------------------

torch::Tensor LMLoss::mean() const { return sum / count.clamp_min(1); }

// logits: [B, T, V], tokens: [B, T] -> [B, T - 1]
torch::Tensor token_logprobs(const torch::Tensor& logits, const torch::Tensor& tokens) {
  check_lm_inputs(logits, tokens);
  const int64_t t = logits.size(1);
  auto x = to_compute(logits.slice(1, 0, t - 1));             // [B, T-1, V]
  auto targets = tokens.slice(1, 1).unsqueeze(-1);             // [B, T-1, 1]
  // LibTorch's fused log-softmax (one pass forward, one backward) beats logit − logsumexp,
  // whose backward takes a pass per operation over the [B, T-1, V] logits.
  return torch::log_softmax(x, -1).gather(-1, targets).squeeze(-1);  // [B, T-1]
}

// logits: [B, T, V] -> [B, T]
torch::Tensor entropy_from_logits(const torch::Tensor& logits) {
  TORCH_CHECK(logits.dim() == 3, "logits must be [B, T, V], got ", logits.sizes());
  auto x = to_compute(logits);
  auto p = torch::softmax(x, -1);
  // H = −Σ p log p = logsumexp(x) − Σ p x
  return x.logsumexp(-1) - (p * x).sum(-1);
}

// logits: [B, T, V], tokens: [B, T], loss_mask: [B, T] or undefined -> LMLoss
LMLoss lm_loss(const torch::Tensor& logits, const torch::Tensor& tokens,
               const torch::Tensor& loss_mask) {
  auto nll = -token_logprobs(logits, tokens);  // [B, T-1]
  if (!loss_mask.defined()) {
    return {nll.sum(), torch::full({}, static_cast<double>(nll.numel()), nll.options())};
  }
  auto m = target_mask(loss_mask, tokens, nll.scalar_type());  // [B, T-1]
  return {(nll * m).sum(), m.sum()};
}

// logits: [B, T, V], tokens: [B, T], mask: [B, T] or undefined -> [B]
torch::Tensor sequence_logprob(const torch::Tensor& logits, const torch::Tensor& tokens,
                               const torch::Tensor& mask) {
  auto lp = token_logprobs(logits, tokens);  // [B, T-1]
  if (!mask.defined()) return lp.sum(-1);
  return (lp * target_mask(mask, tokens, lp.scalar_type())).sum(-1);
}

// ---- Reward model --------------------------------------------------------------------------------

// chosen: [B], rejected: [B] -> PairwiseLoss
PairwiseLoss bradley_terry_loss(const torch::Tensor& chosen, const torch::Tensor& rejected) {
  TORCH_CHECK(chosen.dim() == 1, "chosen rewards must be [B], got ", chosen.sizes());
  check_same_shape(chosen, "chosen", rejected, "rejected");
  auto diff = to_compute(chosen) - to_compute(rejected);  // [B]
  auto d = diff.detach();
  return {-torch::log_sigmoid(diff).mean(), (d > 0).to(d.scalar_type()).mean(), d.mean()};
}

// ---- Masked statistics ---------------------------------------------------------------------------

// x: [...], mask: same shape -> [] or x's shape without dim
torch::Tensor masked_mean(const torch::Tensor& x, const torch::Tensor& mask,
                          c10::optional<int64_t> dim) {
  check_same_shape(x, "x", mask, "mask");
  auto xf = x.is_floating_point() ? x : x.to(torch::kFloat);
  auto m = mask.to(xf.scalar_type());
  // masked_fill first: a NaN or inf under a 0 in the mask must not leak through 0·x.
  auto weighted = xf.masked_fill(mask == 0, 0) * m;
  if (dim) return weighted.sum(*dim) / m.sum(*dim).clamp_min(1);
  return weighted.sum() / m.sum().clamp_min(1);
}

// x: [...], mask: same shape -> []
torch::Tensor masked_var(const torch::Tensor& x, const torch::Tensor& mask, bool unbiased) {
  auto mean = masked_mean(x, mask);
  auto var = masked_mean((x - mean).pow(2), mask);
  if (!unbiased) return var;
  auto n = mask.to(var.scalar_type()).sum();
  return var * (n / (n - 1).clamp_min(1));  // n ≤ 1: var is already 0
}

// x: [...], mask: same shape -> same shape
torch::Tensor masked_whiten(const torch::Tensor& x, const torch::Tensor& mask, bool shift_mean) {
  return masked_whiten_with(x, mask, masked_mean(x, mask), masked_var(x, mask, /*unbiased=*/true), shift_mean);
}

// x, mask: same shape, mean, var: [] -> x's shape
torch::Tensor masked_whiten_with(const torch::Tensor& x, const torch::Tensor& mask, const torch::Tensor& mean,
                                 const torch::Tensor& var, bool shift_mean) {
  auto whitened = (x - mean) * torch::rsqrt(var + 1e-8);
  if (!shift_mean) whitened = whitened + mean;
  return torch::where(mask != 0, whitened.to(x.scalar_type()), x);
}

// ---- PPO -----------------------------------------------------------------------------------------

// logprobs, old_logprobs, advantages, mask: [B, N] -> PolicyLoss
PolicyLoss ppo_policy_loss(const torch::Tensor& logprobs, const torch::Tensor& old_logprobs,
                           const torch::Tensor& advantages, const torch::Tensor& mask,
                           double clip_eps) {
  check_same_shape(logprobs, "logprobs", old_logprobs, "old_logprobs");
  check_same_shape(logprobs, "logprobs", advantages, "advantages");
  check_same_shape(logprobs, "logprobs", mask, "mask");
  TORCH_CHECK(clip_eps > 0, "clip_eps must be positive, got ", clip_eps);
  // Gradients flow only through the current policy's log-probs.
  auto log_ratio = to_compute(logprobs) - to_compute(old_logprobs.detach());
  auto adv = to_compute(advantages.detach());
  auto ratio = torch::exp(log_ratio);
  auto unclipped = -adv * ratio;
  auto clipped = -adv * torch::clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps);
  auto loss = masked_mean(torch::max(unclipped, clipped), mask);
  auto clip_fraction = masked_mean((clipped > unclipped).to(ratio.scalar_type()), mask);
  auto approx_kl = masked_mean(0.5 * log_ratio.detach().pow(2), mask);
  return {loss, clip_fraction, approx_kl};
}

// values, old_values, returns, mask: [B, N] -> ValueLoss
ValueLoss ppo_value_loss(const torch::Tensor& values, const torch::Tensor& old_values,
                         const torch::Tensor& returns, const torch::Tensor& mask, double clip) {
  check_same_shape(values, "values", old_values, "old_values");
  check_same_shape(values, "values", returns, "returns");
  check_same_shape(values, "values", mask, "mask");
  TORCH_CHECK(clip > 0, "value clip must be positive, got ", clip);
  auto v = to_compute(values);
  auto old_v = to_compute(old_values.detach());
  auto ret = to_compute(returns.detach());
  auto v_clipped = old_v + torch::clamp(v - old_v, -clip, clip);
  auto err = (v - ret).pow(2);
  auto err_clipped = (v_clipped - ret).pow(2);
  auto loss = 0.5 * masked_mean(torch::max(err, err_clipped), mask);
  auto clip_fraction = masked_mean((err_clipped > err).to(err.scalar_type()), mask);
  return {loss, clip_fraction};
}

// logprobs, ref_logprobs: [B, N] -> [B, N]
torch::Tensor kl_k1(const torch::Tensor& logprobs, const torch::Tensor& ref_logprobs) {
  check_same_shape(logprobs, "logprobs", ref_logprobs, "ref_logprobs");
  return to_compute(logprobs) - to_compute(ref_logprobs);
}

// logprobs, ref_logprobs: [B, N] -> [B, N]
torch::Tensor kl_k3(const torch::Tensor& logprobs, const torch::Tensor& ref_logprobs) {
  check_same_shape(logprobs, "logprobs", ref_logprobs, "ref_logprobs");
  auto log_r = to_compute(ref_logprobs) - to_compute(logprobs);
  return torch::expm1(log_r) - log_r;  // (r − 1) − log r, exact near r = 1
}

// rewards, values, mask: [B, N] -> Gae
Gae gae(const torch::Tensor& rewards, const torch::Tensor& values, const torch::Tensor& mask,
        double gamma, double lambda) {
  TORCH_CHECK(rewards.dim() == 2, "rewards must be [B, N], got ", rewards.sizes());
  check_same_shape(rewards, "rewards", values, "values");
  check_same_shape(rewards, "rewards", mask, "mask");
  auto dtype = compute_dtype(values);
  auto r = rewards.detach().to(dtype);
  auto v = values.detach().to(dtype);
  auto keep = mask.detach() != 0;  // [B, N] bool
  const int64_t n = r.size(1);
  auto next_value = torch::zeros({r.size(0)}, r.options());  // V of the next masked position
  auto next_adv = torch::zeros({r.size(0)}, r.options());    // A of the next masked position
  std::vector<torch::Tensor> advantages(static_cast<size_t>(n));
  for (int64_t t = n - 1; t >= 0; --t) {
    auto k = keep.select(1, t);
    auto v_t = v.select(1, t);
    auto delta = r.select(1, t) + gamma * next_value - v_t;
    auto a_t = delta + (gamma * lambda) * next_adv;
    next_adv = torch::where(k, a_t, next_adv);
    next_value = torch::where(k, v_t, next_value);
    advantages[static_cast<size_t>(t)] = a_t.masked_fill(k.logical_not(), 0);
  }
  auto adv = n > 0 ? torch::stack(advantages, 1) : torch::zeros_like(r);
  auto returns = (adv + v).masked_fill(keep.logical_not(), 0);
  return {adv, returns};
}

// ---- GRPO and its variants ----------------------------------------------------------------------

PolicyLossType parse_policy_loss_type(const std::string& name) {
  if (name == "grpo") return PolicyLossType::grpo;
  if (name == "bnpo") return PolicyLossType::bnpo;
  if (name == "dapo") return PolicyLossType::dapo;
  if (name == "dr_grpo") return PolicyLossType::dr_grpo;
  throw std::invalid_argument("unknown loss_type '" + name + "' (known: bnpo, dapo, dr_grpo, grpo)");
}

namespace {

// The per-token losses of a minibatch as one number (see PolicyLossType).
// per_token, m: [B, N] (m float, 0/1) -> []
torch::Tensor aggregate_policy_loss(const torch::Tensor& per_token, const torch::Tensor& m,
                                    const GroupPolicyLossOptions& o) {
  const auto summed = per_token.masked_fill(m == 0, 0) * m;
  switch (o.type) {
    case PolicyLossType::grpo:
      return (summed.sum(1) / m.sum(1).clamp_min(1)).mean();
    case PolicyLossType::bnpo:
      return summed.sum() / m.sum().clamp_min(1);
    case PolicyLossType::dapo:
      TORCH_CHECK(o.tokens_per_rank > 0, "the dapo loss needs the minibatch's tokens per rank, got ",
                  o.tokens_per_rank);
      return summed.sum() / o.tokens_per_rank;
    case PolicyLossType::dr_grpo:
      TORCH_CHECK(o.max_new_tokens > 0, "the dr_grpo loss needs max_new_tokens, got ", o.max_new_tokens);
      return summed.sum() / static_cast<double>(per_token.size(0) * o.max_new_tokens);
  }
  TORCH_CHECK(false, "unknown PolicyLossType");
}

}  // namespace

// logprobs, old_logprobs, advantages, mask, ref_logprobs: [B, N] -> GroupPolicyLoss
GroupPolicyLoss group_policy_loss(const torch::Tensor& logprobs, const torch::Tensor& old_logprobs,
                                  const torch::Tensor& advantages, const torch::Tensor& mask,
                                  const torch::Tensor& ref_logprobs, const GroupPolicyLossOptions& options) {
  check_same_shape(logprobs, "logprobs", old_logprobs, "old_logprobs");
  check_same_shape(logprobs, "logprobs", advantages, "advantages");
  check_same_shape(logprobs, "logprobs", mask, "mask");
  TORCH_CHECK(options.epsilon_low > 0 && options.epsilon_low < 1, "epsilon_low must be in (0, 1), got ",
              options.epsilon_low);
  TORCH_CHECK(options.epsilon_high > 0, "epsilon_high must be positive, got ", options.epsilon_high);
  TORCH_CHECK(options.beta == 0 || ref_logprobs.defined(), "a KL weight beta = ", options.beta,
              " needs the reference's log-probs");
  const auto logp = to_compute(logprobs);
  const auto ratio = torch::exp(logp - to_compute(old_logprobs.detach()));
  const auto adv = to_compute(advantages.detach());
  const auto clipped_ratio = torch::clamp(ratio, 1.0 - options.epsilon_low, 1.0 + options.epsilon_high);
  auto per_token = -torch::min(ratio * adv, clipped_ratio * adv);
  GroupPolicyLoss out;
  const auto m = mask.to(logp.scalar_type());
  if (options.beta != 0) {
    const auto kl = kl_k3(logp, ref_logprobs.detach());
    per_token = per_token + options.beta * kl;
    out.kl = masked_mean(kl.detach(), m);
  }
  out.loss = aggregate_policy_loss(per_token, m, options);
  const auto low = (ratio < 1.0 - options.epsilon_low) & (adv < 0);
  const auto high = (ratio > 1.0 + options.epsilon_high) & (adv > 0);
  out.clip_low_fraction = masked_mean(low.to(logp.scalar_type()), m);
  out.clip_high_fraction = masked_mean(high.to(logp.scalar_type()), m);
  return out;
}

// ---- DPO -----------------------------------------------------------------------------------------

// all four: [B] -> DpoLoss
DpoLoss dpo_loss(const torch::Tensor& policy_chosen_logps,
                 const torch::Tensor& policy_rejected_logps,
                 const torch::Tensor& ref_chosen_logps, const torch::Tensor& ref_rejected_logps,
                 double beta, double label_smoothing) {
  TORCH_CHECK(policy_chosen_logps.dim() == 1, "policy_chosen_logps must be [B], got ",
              policy_chosen_logps.sizes());
  check_same_shape(policy_chosen_logps, "policy_chosen_logps", policy_rejected_logps,
                   "policy_rejected_logps");
  check_same_shape(policy_chosen_logps, "policy_chosen_logps", ref_chosen_logps,
                   "ref_chosen_logps");
  check_same_shape(policy_chosen_logps, "policy_chosen_logps", ref_rejected_logps,
                   "ref_rejected_logps");
  TORCH_CHECK(beta > 0, "DPO beta must be positive, got ", beta);
  TORCH_CHECK(label_smoothing >= 0 && label_smoothing <= 0.5,
              "DPO label_smoothing must be in [0, 0.5], got ", label_smoothing);
  auto chosen_logratio = to_compute(policy_chosen_logps) - to_compute(ref_chosen_logps.detach());
  auto rejected_logratio =
      to_compute(policy_rejected_logps) - to_compute(ref_rejected_logps.detach());
  auto z = beta * (chosen_logratio - rejected_logratio);  // [B]
  auto loss = (-(1.0 - label_smoothing) * torch::log_sigmoid(z) -
               label_smoothing * torch::log_sigmoid(-z))
                  .mean();
  auto chosen_rewards = beta * chosen_logratio.detach();
  auto rejected_rewards = beta * rejected_logratio.detach();
  auto accuracy = (chosen_rewards > rejected_rewards).to(chosen_rewards.scalar_type()).mean();
  auto margin = (chosen_rewards - rejected_rewards).mean();
  return {loss, chosen_rewards, rejected_rewards, accuracy, margin};
}

}  // namespace nurture
