// Turning tokenized examples into padded tensors, shared by the stages that train on
// conversations (sft, reward_model, dpo) and the ones that score them (eval).
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "pipelines/data/data.h"

namespace nurture {

struct PaddedBatch {
  torch::Tensor ids;             // [B, T] int64: pad_id after each example's end
  torch::Tensor attention_mask;  // [B, T] int64: 1 on real tokens (a packed row: its segment ids)
  torch::Tensor loss_mask;       // [B, T] int64: the examples' loss masks, 0 on padding
  int64_t tokens = 0;            // real tokens in the batch
};

// A batch built on the host, onto `device`: on CUDA through pinned memory and asynchronously
// (the copy queues behind the step before it instead of stalling the host); else plain .to().
torch::Tensor to_device(const torch::Tensor& host, const torch::Device& device);

// Right-pads to the longest example and moves the tensors to `device`.
PaddedBatch right_pad(const std::vector<const TokenizedExample*>& examples, int64_t pad_id,
                      const torch::Device& device);

// Packing: concatenates examples, in the order given, into rows of at most `length` tokens (an
// example that does not fit starts a new row), numbering them 1, 2, ... within their row so that
// the Transformer keeps them apart (no attention across, positions restart). Fewer, fuller rows
// than padding each example: the same tokens in less compute when lengths vary.
std::vector<TokenizedExample> pack_examples(const std::vector<TokenizedExample>& examples, int64_t length);

}  // namespace nurture
