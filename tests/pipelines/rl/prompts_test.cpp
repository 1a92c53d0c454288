// Prompt sets of the on-policy stages: prompts rendered with the generation prompt (one that leaves
// no room for the reply is left out and counted), batches of several samples per prompt, and the
// seeded order each pass draws them in.
#include "pipelines/rl/prompts.h"

#include <gmock/gmock.h>

#include <set>

#include "modules/text/chat_template.h"
#include "tests/test_util.h"
#include "tests/tiny_world.h"

namespace nurture {
namespace {

using json = nlohmann::json;
using namespace nurture::testing;
namespace fs = std::filesystem;

TEST(Prompts, PromptsThatLeaveNoRoomForTheReplyAreLeftOutAndCounted) {
  const fs::path dir = scratch_dir("PromptsLeftOut");
  const Tokenizer tokenizer = train_tiny_tokenizer(dir, "the capital of country one is city two.\n"
                                                        "tell me about the red cat and the blue dog.\n");
  const ChatMLTemplate chatml;
  const std::string long_prompt = "tell me about the red cat and the blue dog and the capital of country one.";
  const fs::path file = write_file(dir / "prompts.jsonl",
                                   jsonl({{{"prompt", "the red cat"}},
                                          {{"prompt", long_prompt}, {"reference", "two"}},
                                          {{"prompt", "the blue dog"}, {"reference", "city"}}}));
  const auto ids = [&](const std::string& prompt) { return chatml.render(tokenizer, {{"user", prompt}}, true).ids; };
  const int64_t room = static_cast<int64_t>(std::max(ids("the red cat").size(), ids("the blue dog").size()));
  ASSERT_GT(static_cast<int64_t>(ids(long_prompt).size()), room);

  const rl::PromptSet set = rl::load_prompt_set(file, false, tokenizer, chatml, room);
  ASSERT_EQ(set.examples.size(), 2u);
  EXPECT_EQ(set.too_long, 1);
  EXPECT_EQ(set.ids[0], ids("the red cat"));
  EXPECT_EQ(set.examples[1].reference, "city");
  EXPECT_EQ(rl::describe_prompt_set("prompts", "p.jsonl", set),
            "prompts: 2 from p.jsonl (0 bad lines skipped, 1 too long for max_new_tokens)");
  EXPECT_EQ(error_of<std::runtime_error>([&] { rl::load_prompt_set(file, false, tokenizer, chatml, 3); }),
            file.string() + ": no prompt fits in 3 tokens (3 too long). HINT: lower max_new_tokens or shorten "
                            "the prompts");
}

TEST(Prompts, APromptFormatRewritesTheLastUserTurnOnly) {
  std::vector<Message> chat = {{"system", "Be brief."}, {"user", "What is 2 + 2?"}, {"assistant", "4."},
                               {"user", "What is 3 + 4?"}};
  rl::format_prompt(chat, "{prompt} Let's think step by step.");
  EXPECT_EQ(chat[1].content, "What is 2 + 2?");
  EXPECT_EQ(chat[3].content, "What is 3 + 4? Let's think step by step.");
  EXPECT_EQ(chat[0].content, "Be brief.");
  std::vector<Message> one = {{"user", "hi"}};
  rl::format_prompt(one, "Q: {prompt}\nA:");
  EXPECT_EQ(one[0].content, "Q: hi\nA:");
  rl::format_prompt(one, "{prompt}");
  EXPECT_EQ(one[0].content, "Q: hi\nA:");

  // Rendered prompt sets carry the formatted turn: what is sampled from is what the recipe asked.
  const fs::path dir = scratch_dir("PromptsFormatted");
  const Tokenizer tokenizer = train_tiny_tokenizer(dir, "what is two and three? think first.\n");
  const ChatMLTemplate chatml;
  const fs::path file = write_file(dir / "prompts.jsonl", jsonl({{{"prompt", "what is two and three?"}}}));
  const rl::PromptSet set = rl::load_prompt_set(file, false, tokenizer, chatml, 100, "{prompt} think first.");
  EXPECT_EQ(set.ids[0], chatml.render(tokenizer, {{"user", "what is two and three? think first."}}, true).ids);
  EXPECT_EQ(set.examples[0].prompt.back().content, "what is two and three? think first.");
}

TEST(Prompts, SeveralSamplesPerPromptAreNeighbours) {
  rl::PromptSet set;
  set.examples = {{{{"user", "a"}}, "A"}, {{{"user", "b"}}, "B"}, {{{"user", "c"}}, ""}};
  set.ids = {{1}, {2, 2}, {3, 3, 3}};
  const rl::PromptBatch once = rl::prompt_batch(set, {2, 0});
  ASSERT_EQ(once.ids.size(), 2u);
  EXPECT_EQ(once.ids[0], (std::vector<int64_t>{3, 3, 3}));
  EXPECT_EQ(once.examples[1], &set.examples[0]);
  const rl::PromptBatch three = rl::prompt_batch(set, {2, 0}, 3);
  ASSERT_EQ(three.ids.size(), 6u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(three.examples[i], &set.examples[2]);
    EXPECT_EQ(three.examples[3 + i], &set.examples[0]);
  }
  const rl::PromptBatch tail = rl::prompt_range(set, 2, 5);
  ASSERT_EQ(tail.ids.size(), 1u);
  EXPECT_EQ(tail.examples[0], &set.examples[2]);
}

// Each pass over the set is a seeded permutation read at the data cursor, so a resumed run (same
// cursor) draws the same rows.
TEST(Prompts, EveryPassIsASeededPermutationReadAtTheCursor) {
  rl::PromptOrder order(/*seed=*/5, /*size=*/6);
  TrainingState state;
  std::vector<int64_t> first_pass;
  for (int i = 0; i < 3; ++i)
    for (int64_t row : order.next(state, 2)) first_pass.push_back(row);
  EXPECT_EQ(state.data_position, 6);
  EXPECT_EQ(std::set<int64_t>(first_pass.begin(), first_pass.end()), (std::set<int64_t>{0, 1, 2, 3, 4, 5}));
  const std::vector<int64_t> second_pass = order.next(state, 6);
  EXPECT_NE(second_pass, first_pass);  // the next pass is shuffled again
  EXPECT_EQ(std::set<int64_t>(second_pass.begin(), second_pass.end()).size(), 6u);

  rl::PromptOrder again(5, 6);
  TrainingState resumed;
  resumed.data_position = 2;
  EXPECT_EQ(again.next(resumed, 4), std::vector<int64_t>(first_pass.begin() + 2, first_pass.end()));
}

}  // namespace
}  // namespace nurture
