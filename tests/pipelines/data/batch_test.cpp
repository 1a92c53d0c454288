// Batches of tokenized examples: right padding with the masks that go with it, and packing several
// examples into one row, numbered so that the Transformer keeps them apart.
#include "pipelines/data/batch.h"

#include <gtest/gtest.h>

namespace nurture {
namespace {

TokenizedExample tokens(std::vector<int64_t> ids, std::vector<uint8_t> loss_mask) {
  TokenizedExample e;
  e.ids = std::move(ids);
  e.loss_mask = std::move(loss_mask);
  return e;
}

TEST(Batch, RightPaddingMasksThePadding) {
  const TokenizedExample a = tokens({5, 6, 7}, {0, 1, 1}), b = tokens({8}, {1});
  const PaddedBatch batch = right_pad({&a, &b}, /*pad_id=*/2, torch::kCPU);
  EXPECT_TRUE(batch.ids.equal(torch::tensor({5, 6, 7, 8, 2, 2}, torch::kInt64).view({2, 3})));
  EXPECT_TRUE(batch.attention_mask.equal(torch::tensor({1, 1, 1, 1, 0, 0}, torch::kInt64).view({2, 3})));
  EXPECT_TRUE(batch.loss_mask.equal(torch::tensor({0, 1, 1, 1, 0, 0}, torch::kInt64).view({2, 3})));
  EXPECT_EQ(batch.tokens, 4);
  EXPECT_TRUE(to_device(batch.ids, torch::kCPU).equal(batch.ids));
}

// Packing: examples fill rows in order, each numbered within its row; a document's first token is
// never a target; right_pad hands the numbers to the model as its attention mask.
TEST(Batch, PackingFillsRowsAndNumbersDocuments) {
  auto example = [](int64_t first, int64_t n) {
    TokenizedExample e;
    for (int64_t i = 0; i < n; ++i) e.ids.push_back(first + i), e.loss_mask.push_back(1);
    return e;
  };
  const std::vector<TokenizedExample> examples = {example(10, 5), example(20, 4), example(30, 6)};
  const auto rows = pack_examples(examples, 10);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].ids, (std::vector<int64_t>{10, 11, 12, 13, 14, 20, 21, 22, 23}));
  EXPECT_EQ(rows[0].segments, (std::vector<int32_t>{1, 1, 1, 1, 1, 2, 2, 2, 2}));
  EXPECT_EQ(rows[0].loss_mask, (std::vector<uint8_t>{0, 1, 1, 1, 1, 0, 1, 1, 1}));
  EXPECT_EQ(rows[1].segments, (std::vector<int32_t>(6, 1)));

  const PaddedBatch b = right_pad({&rows[0], &rows[1]}, 0, torch::kCPU);
  EXPECT_TRUE(b.attention_mask[0].equal(torch::tensor({1, 1, 1, 1, 1, 2, 2, 2, 2}, torch::kInt64)));
  EXPECT_TRUE(b.attention_mask[1].equal(torch::tensor({1, 1, 1, 1, 1, 1, 0, 0, 0}, torch::kInt64)));
  EXPECT_EQ(b.tokens, 15);

  EXPECT_THROW(pack_examples({example(0, 11)}, 10), c10::Error);
}

}  // namespace
}  // namespace nurture
