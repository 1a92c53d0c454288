// The objectives of a language model's life: next-token cross-entropy (pre-training, SFT), the
// Bradley–Terry pairwise loss (reward model), the PPO pieces (masked statistics, clipped policy
// and value losses, KL estimators against the reference policy, GAE), the critic-free policy loss
// of GRPO and its variants, and the DPO loss.
//
// None of these synchronises with the host: every result is a tensor (no .item()), so a training
// step can queue its kernels and read the numbers back only when it logs.
//
// Letters: B batch, T time (tokens of prompt + response), V vocab, N response tokens.
// Masks are 0/1 (bool, integer or floating); a masked mean over an empty mask is 0, not NaN.
// Log-probabilities and losses are computed in float32 even for bf16/fp16 logits (float64 inputs
// stay float64, which the finite-difference tests rely on).
#pragma once
#include <torch/torch.h>

#include <string>

namespace nurture {

// ---- Language modelling --------------------------------------------------------------------------

// Summed next-token loss and the number of tokens it covers. Gradient accumulation and
// data-parallel ranks add `sum` and `count` separately and divide once, so every token weighs
// the same however the batch was split.
struct LMLoss {
  torch::Tensor sum;    // [] float32: Σ over target tokens of −log p(token)
  torch::Tensor count;  // [] float32: number of target tokens (Σ of the target mask)
  torch::Tensor mean() const;  // sum / max(count, 1)
};

// Shifted cross-entropy: logits[:, t] predicts tokens[:, t + 1].
// `loss_mask` weights the TARGET positions: loss_mask[:, 1:] weights tokens[:, 1:] (so an SFT mask
// that is 1 on the assistant's tokens trains exactly those); undefined = every target counts.
// logits: [B, T, V], tokens: [B, T] int64, loss_mask: [B, T] or undefined -> LMLoss of scalars
LMLoss lm_loss(const torch::Tensor& logits, const torch::Tensor& tokens,
               const torch::Tensor& loss_mask = {});

// log p(tokens[:, t + 1] | tokens[:, ..t]) under softmax(logits[:, t]).
// logits: [B, T, V], tokens: [B, T] -> [B, T - 1] float32
torch::Tensor token_logprobs(const torch::Tensor& logits, const torch::Tensor& tokens);

// Entropy of softmax(logits) at every position (nats).
// logits: [B, T, V] -> [B, T] float32
torch::Tensor entropy_from_logits(const torch::Tensor& logits);

// Σ of the masked target log-probs of each sequence, shifted as lm_loss (the mask is on the target
// positions; mask[:, 0] is ignored). Undefined mask = all targets.
// logits: [B, T, V], tokens: [B, T], mask: [B, T] or undefined -> [B] float32
torch::Tensor sequence_logprob(const torch::Tensor& logits, const torch::Tensor& tokens,
                               const torch::Tensor& mask = {});

// ---- Reward model --------------------------------------------------------------------------------

struct PairwiseLoss {
  torch::Tensor loss;      // [] mean(−log σ(chosen − rejected))
  torch::Tensor accuracy;  // [] mean(chosen > rejected), no gradient
  torch::Tensor margin;    // [] mean(chosen − rejected), no gradient
};

// Bradley–Terry: P(chosen ≻ rejected) = σ(r_chosen − r_rejected).
// chosen: [B], rejected: [B] -> PairwiseLoss of scalars
PairwiseLoss bradley_terry_loss(const torch::Tensor& chosen, const torch::Tensor& rejected);

// ---- Masked statistics ---------------------------------------------------------------------------

// Σ(x·mask) / Σ(mask) over all elements, or along `dim` (that dimension removed). Entries where
// mask is 0 never reach the result, even NaN or inf. An empty mask gives 0.
// x: [...], mask: same shape as x -> [] (or x's shape without `dim`)
torch::Tensor masked_mean(const torch::Tensor& x, const torch::Tensor& mask,
                          c10::optional<int64_t> dim = c10::nullopt);

// Variance of the masked entries; `unbiased` applies Bessel's n / (n − 1) (n = Σ mask; with one
// entry the variance is 0).
// x: [...], mask: same shape -> []
torch::Tensor masked_var(const torch::Tensor& x, const torch::Tensor& mask, bool unbiased = true);

// (x − mean) / sqrt(var + 1e-8) over the masked entries (unbiased variance); with
// shift_mean = false the mean is added back (only the scale changes). Entries where mask is 0 are
// returned unchanged.
// x: [...], mask: same shape -> same shape
torch::Tensor masked_whiten(const torch::Tensor& x, const torch::Tensor& mask,
                            bool shift_mean = true);

// The same with a given mean and variance ([] each), e.g. statistics summed over data-parallel
// ranks: (x − mean) / sqrt(var + 1e-8) where mask != 0, x elsewhere.
torch::Tensor masked_whiten_with(const torch::Tensor& x, const torch::Tensor& mask, const torch::Tensor& mean,
                                 const torch::Tensor& var, bool shift_mean = true);

// ---- PPO -----------------------------------------------------------------------------------------

struct PolicyLoss {
  torch::Tensor loss;           // [] masked mean over tokens of max(−A·ρ, −A·clip(ρ, 1 ± ε))
  torch::Tensor clip_fraction;  // [] share of masked tokens where the clipped term was chosen
  torch::Tensor approx_kl;      // [] masked mean of ½(logp − old_logp)², no gradient
};

// Clipped surrogate of PPO with ρ = exp(logprobs − old_logprobs), averaged over every masked
// token of the batch (token-level mean, as TRL and OpenRLHF). `approx_kl` is the k2 estimator
// ½(log ρ)² of KL(old ‖ new) (TRL's), a diagnostic for early stopping.
// logprobs, old_logprobs, advantages, mask: [B, N] -> PolicyLoss of scalars
PolicyLoss ppo_policy_loss(const torch::Tensor& logprobs, const torch::Tensor& old_logprobs,
                           const torch::Tensor& advantages, const torch::Tensor& mask,
                           double clip_eps);

struct ValueLoss {
  torch::Tensor loss;           // [] ½ · masked mean of max((v − R)², (v_clipped − R)²)
  torch::Tensor clip_fraction;  // [] share of masked tokens where the clipped error was larger
};

// Clipped value loss: v_clipped = old_values + clamp(values − old_values, −clip, clip).
// values, old_values, returns, mask: [B, N] -> ValueLoss of scalars
ValueLoss ppo_value_loss(const torch::Tensor& values, const torch::Tensor& old_values,
                         const torch::Tensor& returns, const torch::Tensor& mask, double clip);

// Per-token estimators of KL(π ‖ π_ref) from samples of π (Schulman, "Approximating KL
// Divergence", 2020). k1 = log π − log π_ref (unbiased, can be negative);
// k3 = (r − 1) − log r with r = π_ref / π (unbiased, always ≥ 0).
// logprobs, ref_logprobs: [B, N] -> [B, N]
torch::Tensor kl_k1(const torch::Tensor& logprobs, const torch::Tensor& ref_logprobs);
torch::Tensor kl_k3(const torch::Tensor& logprobs, const torch::Tensor& ref_logprobs);

struct Gae {
  torch::Tensor advantages;  // [B, N], 0 where mask is 0
  torch::Tensor returns;     // [B, N] advantages + values, 0 where mask is 0
};

// Generalised advantage estimation over the response tokens, computed on detached inputs:
//   δ_t = r_t + γ·V_next − V_t,   A_t = δ_t + γλ·A_next
// where "next" is the next position with mask 1: positions with mask 0 are skipped (they neither
// receive nor pass on anything), and after a row's last masked token V_next = 0 and A_next = 0
// (a response shorter than N, right-padded, ends there).
// rewards, values, mask: [B, N] -> Gae
Gae gae(const torch::Tensor& rewards, const torch::Tensor& values, const torch::Tensor& mask,
        double gamma, double lambda);

// ---- GRPO and its variants ----------------------------------------------------------------------

// How the per-token losses of a minibatch become one number (TRL's loss_type):
//   grpo     the mean over each reply's tokens, then over the replies (a long reply's tokens weigh
//            less each: the length bias Dr. GRPO points out)
//   bnpo     the mean over the minibatch's tokens on this rank
//   dapo     the sum over tokens / the minibatch's tokens on every rank (each token weighs the same
//            however the ranks split the batch; DAPO's token-level loss)
//   dr_grpo  the sum over tokens / (replies × max_new_tokens): a constant divisor, no length bias
enum class PolicyLossType { grpo, bnpo, dapo, dr_grpo };
// "grpo" | "bnpo" | "dapo" | "dr_grpo"; anything else is a std::invalid_argument.
PolicyLossType parse_policy_loss_type(const std::string& name);

struct GroupPolicyLossOptions {
  double epsilon_low = 0.2, epsilon_high = 0.2;  // ρ is clipped to [1 − ε_low, 1 + ε_high] (DAPO)
  double beta = 0.0;  // weight of the per-token k3 KL to the reference in the loss (0: no reference)
  PolicyLossType type = PolicyLossType::grpo;
  int64_t max_new_tokens = 0;   // dr_grpo's divisor, with the replies
  double tokens_per_rank = 0;   // dapo's divisor: the minibatch's tokens of all ranks / ranks
};

struct GroupPolicyLoss {
  torch::Tensor loss;                // []
  torch::Tensor clip_low_fraction;   // [] share of tokens held at 1 − ε_low (ρ below it, A < 0)
  torch::Tensor clip_high_fraction;  // [] share of tokens held at 1 + ε_high (ρ above it, A > 0)
  torch::Tensor kl;                  // [] token mean of k3(π ‖ π_ref); undefined without a reference
};

// Per token: −min(ρ·A, clip(ρ, 1 − ε_low, 1 + ε_high)·A) + β·k3, with ρ = exp(logprobs −
// old_logprobs), aggregated as `type` says. Shares and KL are token means over the minibatch.
// logprobs, old_logprobs, advantages, mask, ref_logprobs (undefined when β = 0): [B, N]
GroupPolicyLoss group_policy_loss(const torch::Tensor& logprobs, const torch::Tensor& old_logprobs,
                                  const torch::Tensor& advantages, const torch::Tensor& mask,
                                  const torch::Tensor& ref_logprobs, const GroupPolicyLossOptions& options);

// ---- DPO -----------------------------------------------------------------------------------------

struct DpoLoss {
  torch::Tensor loss;              // [] mean over pairs
  torch::Tensor chosen_rewards;    // [B] β·(log π(y_w) − log π_ref(y_w)), no gradient
  torch::Tensor rejected_rewards;  // [B] β·(log π(y_l) − log π_ref(y_l)), no gradient
  torch::Tensor accuracy;          // [] mean(chosen_rewards > rejected_rewards)
  torch::Tensor margin;            // [] mean(chosen_rewards − rejected_rewards)
};

// Sigmoid DPO loss (Rafailov et al. 2023) with conservative label smoothing ε:
//   z = β·((log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l)))
//   loss = mean(−(1 − ε)·log σ(z) − ε·log σ(−z))
// The log-probs are whole-sequence sums (sequence_logprob over the response tokens).
// all four: [B] -> DpoLoss
DpoLoss dpo_loss(const torch::Tensor& policy_chosen_logps,
                 const torch::Tensor& policy_rejected_logps,
                 const torch::Tensor& ref_chosen_logps, const torch::Tensor& ref_rejected_logps,
                 double beta, double label_smoothing = 0.0);

}  // namespace nurture
