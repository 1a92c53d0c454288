// right_pad(): tokenized examples -> padded tensors; to_device(): host batches onto the device.
#include "pipelines/data/batch.h"

#include <algorithm>

namespace nurture {

torch::Tensor to_device(const torch::Tensor& host, const torch::Device& device) {
  if (!device.is_cuda() || !host.device().is_cpu()) return host.to(device);
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

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
      attention_a[i][j] = e.segments.empty() ? 1 : e.segments[j];
      loss_a[i][j] = j < e.loss_mask.size() ? e.loss_mask[j] : 0;
    }
    batch.tokens += static_cast<int64_t>(e.ids.size());
  }
  batch.ids = to_device(ids, device);
  batch.attention_mask = to_device(attention, device);
  batch.loss_mask = to_device(loss, device);
  return batch;
}

std::vector<TokenizedExample> pack_examples(const std::vector<TokenizedExample>& examples, int64_t length) {
  TORCH_CHECK(length > 0, "pack_examples: length must be positive, got ", length);
  std::vector<TokenizedExample> rows;
  TokenizedExample row;
  int32_t segment = 0;
  for (const TokenizedExample& e : examples) {
    TORCH_CHECK(static_cast<int64_t>(e.ids.size()) <= length, "pack_examples: an example of ", e.ids.size(),
                " tokens does not fit in rows of ", length);
    if (static_cast<int64_t>(row.ids.size() + e.ids.size()) > length) {
      rows.push_back(std::move(row));
      row = TokenizedExample{};
      segment = 0;
    }
    ++segment;
    row.ids.insert(row.ids.end(), e.ids.begin(), e.ids.end());
    // A document's first token has nothing of its own before it: never a target (as in a row alone).
    for (size_t j = 0; j < e.ids.size(); ++j)
      row.loss_mask.push_back(j > 0 && j < e.loss_mask.size() ? e.loss_mask[j] : 0);
    row.segments.insert(row.segments.end(), e.ids.size(), segment);
  }
  if (!row.ids.empty()) rows.push_back(std::move(row));
  return rows;
}

}  // namespace nurture
