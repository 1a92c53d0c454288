// `nurture chat` through the executable, driven by a script on stdin, on a tiny randomly
// initialised model: the first reply equals `nurture generate --chat`'s, later replies see the
// conversation (checked against a reference rendered and decoded here), /reset forgets it,
// /exit quits, and an outgrown conversation loses its oldest turns but keeps the system message.
#include <gmock/gmock.h>

#include "modules/generation/sampling.h"
#include "modules/model/model_dir.h"
#include "modules/text/chat_template.h"
#include "modules/text/tokenizer.h"
#include "tests/test_util.h"
#include "tests/tiny_world.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

// Occurrences of `part` in `text`.
int64_t count_of(const std::string& text, const std::string& part) {
  int64_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++n;
  return n;
}

// A model directory (llama_micro, block_size 128, random weights) with a tokenizer trained here.
class CliChatTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const fs::path dir = scratch_dir("cli_chat");
    std::string corpus;
    for (int i = 0; i < 20; ++i)
      corpus += "What is the capital of France? Paris. And of Korea? Seoul. What is " + std::to_string(i) +
                " plus " + std::to_string(i + 3) + "? Be brief, kind and exact.\n";
    const Tokenizer tokenizer = train_tiny_tokenizer(dir, corpus, {/*vocab_size=*/360});
    // Random weights sharpened (std 0.02 -> 0.16) so the replies depend on the whole conversation,
    // not only on its last tokens.
    model_dir_ = new fs::path(save_random_lm(dir / "model", preset("llama_micro"), tokenizer, /*seed=*/11,
                                             /*scale=*/8));
    loaded_ = new Transformer(load_transformer(*model_dir_, torch::kCPU));
    tokenizer_ = new Tokenizer(Tokenizer::load(model_dir_->string()));
  }
  static void TearDownTestSuite() {
    delete model_dir_;
    delete loaded_;
    delete tokenizer_;
  }
  void SetUp() override { dir_ = scratch_dir(::testing::UnitTest::GetInstance()->current_test_info()->name()); }

  static const fs::path& model_dir() { return *model_dir_; }

  // `nurture chat --model DIR FLAGS` with `script` on stdin.
  CommandResult chat(const std::string& flags, const std::string& script) {
    write_file(dir_ / "script.txt", script);
    return run_nurture("chat --model " + model_dir().string() + " " + flags + " < " + (dir_ / "script.txt").string());
  }

  // The prompt for the reply to `messages`.
  static std::vector<int64_t> prompt_for(const std::vector<Message>& messages) {
    return ChatMLTemplate().render(*tokenizer_, messages, /*add_generation_prompt=*/true).ids;
  }

  // The greedy reply to `messages`, computed here from the library's pieces.
  static std::string reference_reply(const std::vector<Message>& messages, int64_t max_new_tokens) {
    const auto out = generate(*loaded_, {prompt_for(messages)},
                              SamplingOptions()
                                  .max_new_tokens(max_new_tokens)
                                  .temperature(0)
                                  .stop_ids(ChatMLTemplate().stop_ids(*tokenizer_))
                                  .pad_id(tokenizer_->pad_id()));
    auto length = out.response_mask.sum().item<int64_t>();
    if (out.stopped[0].item<bool>()) --length;
    auto ids = out.response[0].narrow(0, 0, length).contiguous();
    return tokenizer_->decode({ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + length});
  }

  static inline fs::path* model_dir_ = nullptr;
  static inline Transformer* loaded_ = nullptr;  // the model directory, loaded as the CLI does
  static inline Tokenizer* tokenizer_ = nullptr;
  fs::path dir_;
};

const std::string kFirst = "What is the capital of France?";
const std::string kSecond = "And of Korea?";

TEST_F(CliChatTest, RepliesFollowTheConversationResetAndExit) {
  auto generated = run_nurture("generate --model " + model_dir().string() +
                               " --chat --temperature 0 --max-new-tokens 16 --prompt '" + kFirst + "'");
  ASSERT_EQ(generated.exit_code, 0) << generated.err;
  ASSERT_FALSE(generated.out.empty());
  const std::string first = generated.out.substr(0, generated.out.size() - 1);  // without the newline
  EXPECT_EQ(first, reference_reply({{"user", kFirst}}, 16));

  // The second turn sees the first; the model must tell the two prompts apart for this to mean
  // anything.
  const std::string second = reference_reply({{"user", kFirst}, {"assistant", first}, {"user", kSecond}}, 16);
  ASSERT_NE(second, reference_reply({{"user", kSecond}}, 16));

  // An unknown command is reported and skipped, so are blank lines; /reset forgets the
  // conversation (the third reply is the first again); /exit quits before the last line.
  auto r = chat("--temperature 0 --max-new-tokens 16", "/frobnicate\n" + kFirst + "\n\n" + kSecond +
                                                           "\n/reset\n" + kFirst + "\n/exit\n" + kSecond + "\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, first + "\n" + second + "\n" + first + "\n");  // plain lines: no prompts on a pipe
  EXPECT_EQ(r.err, "[chat] warning: stdin:1: unknown command '/frobnicate' (commands: /reset, /exit; start a "
                   "message with // to send a /)\n");
}

TEST_F(CliChatTest, OutgrownConversationForgetsOldestTurnsButKeepsTheSystemMessage) {
  // The reply budget leaves room for one exchange only (block_size 128), so every turn after the
  // first forgets the ones before it and is answered as if it were the first.
  const std::string system = "You are a helpful assistant. Be brief, kind and exact.";
  const auto longest = std::max(prompt_for({{"system", system}, {"user", kFirst}}).size(),
                                prompt_for({{"system", system}, {"user", kSecond}}).size());
  const int64_t budget = 128 - static_cast<int64_t>(longest);
  auto r = chat("--temperature 0 --max-new-tokens " + std::to_string(budget) + " --system '" + system + "'",
                kFirst + "\n" + kSecond + "\n" + kFirst + "\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string first = reference_reply({{"system", system}, {"user", kFirst}}, budget);
  const std::string second = reference_reply({{"system", system}, {"user", kSecond}}, budget);
  EXPECT_EQ(r.out, first + "\n" + second + "\n" + first + "\n");
  EXPECT_EQ(count_of(r.err, "forgetting its oldest turns, keeping the system message;"), 1) << r.err;
  // Without the system message the replies differ, so it was kept.
  EXPECT_NE(first, reference_reply({{"user", kFirst}}, budget));
}

TEST_F(CliChatTest, BadModelFlagsAndInputsAreUsageErrors) {
  const fs::path absent = dir_ / "no_such_model";
  auto r = run_nurture("chat --model " + absent.string() + " < /dev/null");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--model " + absent.string() + ": no such directory"));
  // A tokenizer with more pieces than the model has embedding rows is not the model's.
  const fs::path other = dir_ / "other_tokenizer";
  fs::copy(model_dir(), other, fs::copy_options::recursive);
  std::string corpus;
  for (int i = 0; i < 3000; ++i) {  // many different words: enough merges for 500 pieces
    for (int v = i * 7919 % 17576, k = 0; k < 3; ++k, v /= 26) corpus += static_cast<char>('a' + v % 26);
    corpus += i % 12 == 11 ? "\n" : " ";
  }
  write_file(dir_ / "corpus.txt", corpus);
  TokenizerTrainOptions bigger;
  bigger.inputs = {(dir_ / "corpus.txt").string()};
  bigger.output = (other / kTokenizerFileName).string();
  bigger.vocab_size = 500;
  ASSERT_GT(Tokenizer::train(bigger).vocab_size(), 360);
  r = run_nurture("chat --model " + other.string() + " < /dev/null");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr((other / kTokenizerFileName).string() + " has 500 pieces but " +
                               (other / "config.json").string() +
                               " says vocab_size 360: the tokenizer is not the one the model was trained with"));
  // A scripted message too long for the model's context stops the script, naming its line.
  std::string long_message;
  for (int i = 0; i < 60; ++i) long_message += "Paris Seoul ";
  r = chat("--temperature 0 --max-new-tokens 4", "hello\n" + long_message + "\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("stdin:2: this message makes a "));
  EXPECT_EQ(count_of(r.out, "\n"), 1);  // the first message was answered
}

}  // namespace
}  // namespace nurture
