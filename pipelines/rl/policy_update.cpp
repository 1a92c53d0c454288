// Policy updates over minibatches (see policy_update.h).
#include "pipelines/rl/policy_update.h"

#include <algorithm>
#include <limits>

#include "modules/core/compat.h"

namespace nurture::rl {

// ---- a trained model --------------------------------------------------------------------------------

TrainedModel::TrainedModel(torch::nn::Module& model, const TrainingOptions& options)
    : model_(model), grad_clip_(options.grad_clip), optimizer_(make_adamw(model, options)) {}

void TrainedModel::broadcast() {
  if (dist::world_size() > 1) dist::broadcast_module(model_);
}

void TrainedModel::sync_gradients(int64_t bucket_bytes) {
  if (dist::world_size() > 1) sync_ = std::make_unique<dist::GradientSync>(model_, bucket_bytes);
}

void TrainedModel::step(const torch::Tensor& loss, NonFiniteGuard& guard, int64_t update,
                        const std::string& last_checkpoint) {
  optimizer_->zero_grad();
  if (sync_) {
    sync_->arm();
    (loss / static_cast<double>(dist::world_size())).backward();
    sync_->finish();
  } else {
    loss.backward();
  }
  const double max_norm = grad_clip_ > 0 ? grad_clip_ : std::numeric_limits<double>::infinity();
  const auto norm = torch::nn::utils::clip_grad_norm_(model_.parameters(), max_norm);
  if (guard.admit(torch::Tensor(), torch::tensor(norm, torch::kFloat64), update, last_checkpoint))
    optimizer_->step();
  else
    optimizer_->zero_grad();
}

// ---- minibatches ------------------------------------------------------------------------------------

void for_each_minibatch(int64_t rows, int64_t minibatch, int64_t epochs, uint64_t seed, int64_t iteration,
                        const torch::Device& device, const std::function<void(const torch::Tensor&)>& step) {
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    auto generator = compat::make_generator(
        derive_seed(seed, static_cast<uint64_t>(iteration), static_cast<uint64_t>(epoch + 1)), torch::kCPU);
    auto order = torch::randperm(rows, generator, torch::kLong).to(device);
    for (int64_t start = 0; start < rows; start += minibatch) step(order.narrow(0, start, std::min(minibatch, rows - start)));
  }
}

PolicyLoss clipped_policy_loss(Transformer& policy, const Rollout& r, const RolloutRows& mb, double temperature,
                               double clip_eps) {
  const int64_t P = r.prompt_length, N = r.response_length;
  auto logits = response_logits(policy, mb.tokens, mb.attention_mask, P, N, temperature);
  return ppo_policy_loss(response_logprobs(logits, mb.tokens, P, N), r.logprobs.index_select(0, mb.rows),
                         r.advantages.index_select(0, mb.rows), mb.response_mask, clip_eps);
}

// ---- statistics -------------------------------------------------------------------------------------

void accumulate(torch::Tensor& sum, const torch::Tensor& x) {
  if (!x.defined()) return;
  sum = sum.defined() ? sum + x.detach() : x.detach().clone();
}

void UpdateStats::add(const PolicyLoss& p, const ValueLoss& v) {
  accumulate(policy_loss, p.loss);
  accumulate(clip_fraction, p.clip_fraction);
  accumulate(approx_kl, p.approx_kl);
  accumulate(value_loss, v.loss);
  accumulate(value_clip_fraction, v.clip_fraction);
  ++updates;
}

double UpdateStats::mean(const torch::Tensor& sum) const {
  return sum.defined() ? sum.item<double>() / static_cast<double>(updates) : 0.0;
}

}  // namespace nurture::rl
