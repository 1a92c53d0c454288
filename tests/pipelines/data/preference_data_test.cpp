// Preference pairs as tokens: each side rendered as prompt + reply with the loss on the reply only,
// a too-long pair cut at the start of its prompt or dropped, and B pairs batched as 2B rows with the
// chosen sides first.
#include "pipelines/data/preference_data.h"

#include <gmock/gmock.h>

#include "modules/text/chat_template.h"
#include "tests/test_util.h"
#include "tests/tiny_world.h"

namespace nurture {
namespace {

using json = nlohmann::json;
using namespace nurture::testing;
namespace fs = std::filesystem;

class PreferenceDataTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = scratch_dir(::testing::UnitTest::GetInstance()->current_test_info()->name()); }
  static const Tokenizer& tokenizer() {
    static const Tokenizer tok = [] {
      std::string corpus;
      for (const auto& p : preference_pairs(200, 7))
        corpus += p["prompt"].get<std::string>() + " " + p["chosen"].get<std::string>() + "\n";
      return train_tiny_tokenizer(scratch_dir("PreferenceDataTokenizer"), corpus);
    }();
    return tok;
  }
  RenderedChat render(const std::vector<Message>& messages, bool generation_prompt = false) const {
    return chatml_.render(tokenizer(), messages, generation_prompt);
  }
  ChatMLTemplate chatml_;
  fs::path dir_;
};

TEST_F(PreferenceDataTest, EachSideIsPromptPlusReplyWithTheLossOnTheReply) {
  const fs::path file = write_file(dir_ / "pairs.jsonl", jsonl({{{"prompt", "Hi."}, {"chosen", "thanks red"},
                                                                  {"rejected", "blue"}}}));
  const PreferenceData data = load_preference_data(file, tokenizer(), chatml_, 256, false);
  ASSERT_EQ(data.pairs.size(), 1u);
  const RenderedChat full = render({{"user", "Hi."}, {"assistant", "thanks red"}});
  const size_t prompt = render({{"user", "Hi."}}).ids.size();
  const TokenizedExample& chosen = data.pairs[0].chosen;
  EXPECT_EQ(chosen.ids, full.ids);
  ASSERT_EQ(chosen.loss_mask.size(), full.ids.size());
  for (size_t i = 0; i < prompt; ++i) EXPECT_EQ(chosen.loss_mask[i], 0) << i;
  for (size_t i = prompt; i < full.ids.size(); ++i) EXPECT_EQ(chosen.loss_mask[i], full.loss_mask[i]) << i;
  EXPECT_GT(std::count(chosen.loss_mask.begin(), chosen.loss_mask.end(), 1), 2);  // the reply and <|im_end|>
  EXPECT_EQ(data.pairs[0].rejected.ids, render({{"user", "Hi."}, {"assistant", "blue"}}).ids);
}

TEST_F(PreferenceDataTest, TooLongPairsLoseThePromptStartOrAreDropped) {
  const std::string long_prompt = "Tell me about the red cat and the blue dog and the green tree and the moon.";
  const int64_t max_length = static_cast<int64_t>(render({{"user", "Hi."}, {"assistant", "thanks"}}).ids.size()) + 4;
  const fs::path file = write_file(dir_ / "pairs.jsonl",
                                   jsonl({{{"prompt", long_prompt}, {"chosen", "thanks"}, {"rejected", "red"}},
                                          {{"prompt", "Hi."}, {"chosen", long_prompt}, {"rejected", "red"}}}));
  const PreferenceData data = load_preference_data(file, tokenizer(), chatml_, max_length, false);
  ASSERT_EQ(data.pairs.size(), 1u);
  EXPECT_EQ(data.truncated, 1);
  EXPECT_EQ(data.dropped, 1);
  const auto full = render({{"user", long_prompt}, {"assistant", "thanks"}}).ids;
  ASSERT_GT(static_cast<int64_t>(full.size()), max_length);
  EXPECT_EQ(data.pairs[0].chosen.ids, std::vector<int64_t>(full.end() - max_length, full.end()));  // the end kept

  const fs::path hopeless = write_file(dir_ / "hopeless.jsonl", jsonl({{{"prompt", "Hi."}, {"chosen", long_prompt},
                                                                         {"rejected", "red"}}}));
  EXPECT_EQ(error_of<std::runtime_error>([&] { load_preference_data(hopeless, tokenizer(), chatml_, max_length, false); }),
            hopeless.string() + ": no pair fits max_length " + std::to_string(max_length) + " (1 dropped as too long)");
}

TEST_F(PreferenceDataTest, APairBatchHasTheChosenRowsFirst) {
  TokenizedPair a{{{1, 2, 3}, {0, 1, 1}, {}}, {{1, 4}, {0, 1}, {}}};
  TokenizedPair b{{{1, 5}, {0, 1}, {}}, {{1, 6, 7, 8}, {0, 1, 1, 1}, {}}};
  const PaddedBatch batch = pair_batch({&a, &b}, /*pad_id=*/0, torch::kCPU);
  ASSERT_EQ(batch.ids.sizes(), (std::vector<int64_t>{4, 4}));
  EXPECT_TRUE(batch.ids.equal(torch::tensor({1, 2, 3, 0, 1, 5, 0, 0, 1, 4, 0, 0, 1, 6, 7, 8}, torch::kInt64).view({4, 4})));
  EXPECT_TRUE(batch.loss_mask.sum(1).equal(torch::tensor({2, 1, 1, 3}, torch::kInt64)));
}

}  // namespace
}  // namespace nurture
