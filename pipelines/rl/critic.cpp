// The critic (see critic.h).
#include "pipelines/rl/critic.h"

#include <algorithm>
#include <vector>

#include "modules/model/model_dir.h"

namespace nurture::rl {

torch::Tensor response_values(ValueModel& value_model, const torch::Tensor& tokens,
                              const torch::Tensor& attention_mask, int64_t prompt_length, int64_t response_length) {
  return value_model->forward(tokens, attention_mask).narrow(1, prompt_length - 1, response_length);
}

Critic::Critic(const std::filesystem::path& dir, const torch::Device& device, torch::Dtype dtype)
    : model_(load_value_model(dir, device, dtype)) {
  {
    torch::NoGradGuard no_grad;  // V = 0 everywhere at the start
    model_->value_head->weight.zero_();
    model_->value_head->bias.zero_();
  }
  model_->eval();
}

void Critic::setup_optimizer(const TrainingOptions& options) {
  trainer_ = std::make_unique<TrainedModel>(*model_, options);
}

torch::Tensor Critic::values(const Rollout& r, int64_t chunk) {
  torch::NoGradGuard no_grad;
  const int64_t B = r.tokens.size(0), P = r.prompt_length, N = r.response_length;
  std::vector<torch::Tensor> values;
  for (int64_t start = 0; start < B; start += chunk) {
    const int64_t b = std::min(chunk, B - start);
    values.push_back(response_values(model_, r.tokens.narrow(0, start, b), r.attention_mask.narrow(0, start, b), P, N));
  }
  return torch::cat(values) * r.response_mask;
}

ValueLoss Critic::loss(const Rollout& r, const RolloutRows& mb, double value_clip) {
  auto values = response_values(model_, mb.tokens, mb.attention_mask, r.prompt_length, r.response_length);
  return ppo_value_loss(values, r.values.index_select(0, mb.rows), r.returns.index_select(0, mb.rows),
                        mb.response_mask, value_clip);
}

}  // namespace nurture::rl
