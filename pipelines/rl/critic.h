// The critic: a value model (a Transformer backbone with a value head, started with the head
// zeroed so that V = 0 everywhere) with its own AdamW, its values on a rollout and its clipped
// value loss on a minibatch.
//
// Letters: B rollout rows, N response positions, T = P + N.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <memory>

#include "modules/model/heads.h"
#include "modules/objectives/losses.h"
#include "pipelines/rl/logprobs.h"
#include "pipelines/rl/policy_update.h"
#include "pipelines/rl/rollout.h"

namespace nurture::rl {

// Value of the state before each response token: tokens: [B, T] -> [B, N]
torch::Tensor response_values(ValueModel& value_model, const torch::Tensor& tokens,
                              const torch::Tensor& attention_mask, int64_t prompt_length, int64_t response_length);

class Critic {
 public:
  // The value model on the backbone of the model directory `dir` (lm, reward or value), in
  // `dtype`, with a zeroed value head, in eval mode (no dropout).
  Critic(const std::filesystem::path& dir, const torch::Device& device, torch::Dtype dtype);
  // Its AdamW (see TrainedModel); before any update.
  void setup_optimizer(const TrainingOptions& options);
  TrainedModel& trainer() { return *trainer_; }
  ValueModel& model() { return model_; }

  // V on every response position of the rollout, in chunks of `chunk` rows, without gradients;
  // 0 where response_mask is 0. -> [B, N]
  torch::Tensor values(const Rollout& r, int64_t chunk);
  // The clipped value loss on rows `mb` against the rollout's values and returns; with gradients.
  ValueLoss loss(const Rollout& r, const RolloutRows& mb, double value_clip);

 private:
  ValueModel model_{nullptr};
  std::unique_ptr<TrainedModel> trainer_;
};

}  // namespace nurture::rl
