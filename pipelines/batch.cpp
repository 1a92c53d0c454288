// right_pad(): tokenized examples -> padded tensors.
#include "pipelines/batch.h"

#include <algorithm>

namespace nurture {

PaddedBatch right_pad(const std::vector<const TokenizedExample*>& examples, int64_t pad_id,
                      const torch::Device& device) {
  TORCH_CHECK(!examples.empty(), "right_pad: no examples");
  size_t length = 0;
  for (const auto* e : examples) length = std::max(length, e->ids.size());
  const auto b = static_cast<int64_t>(examples.size());
  const auto t = static_cast<int64_t>(length);
  auto ids = torch::full({b, t}, pad_id, torch::kInt64);
  auto attention = torch::zeros({b, t}, torch::kInt64);
  auto loss = torch::zeros({b, t}, torch::kInt64);
  auto ids_a = ids.accessor<int64_t, 2>();
  auto attention_a = attention.accessor<int64_t, 2>();
  auto loss_a = loss.accessor<int64_t, 2>();
  PaddedBatch batch;
  for (int64_t i = 0; i < b; ++i) {
    const TokenizedExample& e = *examples[i];
    for (size_t j = 0; j < e.ids.size(); ++j) {
      ids_a[i][j] = e.ids[j];
      attention_a[i][j] = 1;
      loss_a[i][j] = j < e.loss_mask.size() ? e.loss_mask[j] : 0;
    }
    batch.tokens += static_cast<int64_t>(e.ids.size());
  }
  batch.ids = ids.to(device);
  batch.attention_mask = attention.to(device);
  batch.loss_mask = loss.to(device);
  return batch;
}

}  // namespace nurture
