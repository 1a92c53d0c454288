// The data readers: formats, error messages naming file:line, skipping bad lines, token shards,
// and the deterministic orders that make resumed runs read what uninterrupted ones would.
#include <gmock/gmock.h>

#include <set>

#include "pipelines/data/data.h"
#include "tests/test_util.h"
#include "tests/tiny_world.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

class DataTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = scratch_dir(::testing::UnitTest::GetInstance()->current_test_info()->name()); }
  // A small tokenizer, trained once for the whole suite.
  static const Tokenizer& tokenizer() {
    static const Tokenizer tok = [] {
      const fs::path dir = scratch_dir("DataTestTokenizer");
      std::string text;
      for (int i = 0; i < 200; ++i)
        text += "the capital of country " + std::to_string(i % 17) + " is city " + std::to_string(i % 13) + ".\n";
      return train_tiny_tokenizer(dir, text, {/*vocab_size=*/300});
    }();
    return tok;
  }
  std::string error_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

TEST_F(DataTest, ChatFormatsBecomeConversations) {
  auto m = chat_record_to_messages(nlohmann::json::parse(
      R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})"));
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[1].role, "assistant");
  m = chat_record_to_messages(nlohmann::json::parse(R"({"system": "be brief", "prompt": "2+2?", "response": "4"})"));
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].role, "system");
  EXPECT_EQ(m[1].content, "2+2?");
  EXPECT_EQ(m[2].content, "4");
  m = alpaca_record_to_messages(nlohmann::json::parse(R"({"instruction": "Add", "input": "2 and 2", "output": "4"})"));
  EXPECT_EQ(m[0].content, "Add\n\n2 and 2");
}

TEST_F(DataTest, BadLinesNameFileAndLine) {
  const auto file = write_file(dir_ / "sft.jsonl",
                               "{\"prompt\": \"a\", \"response\": \"b\"}\n"
                               "\n"
                               "{\"prompt\": \"a\", \"response\": 3}\n"
                               "not json\n"
                               "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}\n");
  ChatMLTemplate chatml;
  ChatDataOptions o;
  EXPECT_EQ(error_of([&] { load_chat_data(file, tokenizer(), chatml, o); }),
            file.string() + ":3: \"response\": expected a string, got number (skip_bad_lines: true skips such lines)");
  o.skip_bad_lines = true;
  ChatData data = load_chat_data(file, tokenizer(), chatml, o);
  EXPECT_EQ(data.examples.size(), 1u);
  EXPECT_EQ(data.stats.lines, 4);
  EXPECT_EQ(data.stats.skipped, 3);

  const auto prefs = write_file(dir_ / "prefs.jsonl", "{\"prompt\": \"q\", \"chosen\": \"a\"}\n");
  EXPECT_EQ(error_of([&] { load_preferences(prefs, false); }),
            prefs.string() + ":1: missing key \"rejected\" (skip_bad_lines: true skips such lines)");
  const auto empty = write_file(dir_ / "empty.jsonl", "\n\n");
  EXPECT_EQ(error_of([&] { load_prompts(empty, false); }),
            empty.string() + ": no usable example (the data set is empty)");
  EXPECT_THAT(error_of([&] { load_prompts(dir_ / "missing.jsonl", false); }),
              HasSubstr("missing.jsonl: cannot read"));
}

TEST_F(DataTest, TruncationAndTheAssistantMask) {
  const auto file = write_file(dir_ / "sft.jsonl",
                               "{\"prompt\": \"the capital of country 3\", \"response\": \"city 4\"}\n"
                               "{\"prompt\": \"" + std::string(300, 'x') + "\", \"response\": \"city 4\"}\n");
  ChatMLTemplate chatml;
  ChatDataOptions o;
  o.max_length = 40;
  ChatData data = load_chat_data(file, tokenizer(), chatml, o);
  // The long one is cut inside the user turn: no assistant token is left, so it is dropped.
  EXPECT_EQ(data.examples.size(), 1u);
  EXPECT_EQ(data.truncated, 1);
  EXPECT_EQ(data.dropped, 1);
  const auto& e = data.examples[0];
  std::vector<int64_t> learned;
  for (size_t i = 0; i < e.ids.size(); ++i)
    if (e.loss_mask[i]) learned.push_back(e.ids[i]);
  EXPECT_EQ(tokenizer().decode(learned), "city 4<|im_end|>");
}

TEST_F(DataTest, TokenShardRoundTripsDocuments) {
  const auto a = write_file(dir_ / "a.txt", "the capital of country 1 is city 2.\n\nthe capital of country 3 is city 4.\n");
  const auto b = write_file(dir_ / "b.jsonl", "{\"text\": \"city 5\"}\n");
  PrepareOptions o;
  o.inputs = {a.string(), b.string()};
  ShardIndex index = prepare_token_shard(dir_ / "shard", tokenizer(), o);
  EXPECT_EQ(index.dtype, "uint16");
  EXPECT_EQ(index.num_documents, 3);
  EXPECT_TRUE(shard_is_current(dir_ / "shard", tokenizer(), o));
  TokenShard shard(dir_ / "shard");
  auto all = shard.read(0, shard.size());
  auto expected = tokenizer().encode("the capital of country 1 is city 2.");
  expected.push_back(tokenizer().eot_id());
  auto second = tokenizer().encode("the capital of country 3 is city 4.");
  expected.insert(expected.end(), second.begin(), second.end());
  expected.push_back(tokenizer().eot_id());
  auto third = tokenizer().encode("city 5");
  expected.insert(expected.end(), third.begin(), third.end());
  expected.push_back(tokenizer().eot_id());
  EXPECT_EQ(all, expected);

  // An edited input makes the shard stale; a truncated tokens.bin is refused with the reason.
  write_file(a, "changed\n");
  EXPECT_FALSE(shard_is_current(dir_ / "shard", tokenizer(), o));
  fs::resize_file(dir_ / "shard" / "tokens.bin", 6);
  EXPECT_THAT(error_of([&] { TokenShard broken(dir_ / "shard"); }), HasSubstr("truncated? prepare it again"));
}

TEST_F(DataTest, OrdersAreDeterministicPermutationsPerEpoch) {
  ShuffledOrder order(5, 10), again(5, 10), other(6, 10);
  std::set<int64_t> epoch0, epoch1;
  bool differs = false, epochs_differ = false;
  for (int64_t i = 0; i < 10; ++i) {
    epoch0.insert(order.at(i));
    differs |= order.at(i) != other.at(i);
  }
  for (int64_t i = 10; i < 20; ++i) epoch1.insert(order.at(i));
  for (int64_t i = 0; i < 10; ++i) epochs_differ |= again.at(i) != again.at(i + 10);
  EXPECT_EQ(epoch0.size(), 10u);  // each epoch visits every example once
  EXPECT_EQ(epoch1.size(), 10u);
  EXPECT_TRUE(differs);
  EXPECT_TRUE(epochs_differ);
  ShuffledOrder fresh(5, 10);
  EXPECT_EQ(fresh.at(13), order.at(13));  // a resumed reader jumps straight to position 13

  for (int64_t i = 0; i < 1000; ++i) {
    const int64_t off = window_offset(3, i, 100, 10);
    ASSERT_GE(off, 0);
    ASSERT_LE(off, 90);
  }
  EXPECT_EQ(window_offset(3, 42, 100, 10), window_offset(3, 42, 100, 10));
}

}  // namespace
}  // namespace nurture
