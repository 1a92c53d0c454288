// `nurture generate` through the executable: a greedy completion equals the one the library's
// generate() gives, in plain and --chat form, and flags that cannot work are usage errors (exit 2)
// naming the flag.
#include <gmock/gmock.h>

#include "modules/generation/sampling.h"
#include "modules/model/model_dir.h"
#include "modules/text/chat_template.h"
#include "tests/test_util.h"
#include "tests/tiny_world.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

class GenerateCommandTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const fs::path dir = scratch_dir("GenerateCommand");
    std::string corpus;
    for (int i = 0; i < 30; ++i) corpus += "Once upon a time a cat met dog " + std::to_string(i) + ". The end.\n";
    const Tokenizer tokenizer = train_tiny_tokenizer(dir, corpus);
    model_dir_ = new fs::path(save_random_lm(dir / "model", preset("llama_micro").block_size(48), tokenizer,
                                             /*seed=*/4, /*scale=*/6));
  }
  static void TearDownTestSuite() { delete model_dir_; }

  // The greedy continuation of `prompt` ids, stopped by `stop_ids`, decoded without the stop token.
  static std::string greedy(const std::vector<int64_t>& prompt, const std::vector<int64_t>& stop_ids) {
    Transformer model = load_transformer(*model_dir_, torch::kCPU);
    const Tokenizer tokenizer = Tokenizer::load(model_dir_->string());
    const Generation g =
        generate(model, {prompt}, SamplingOptions().max_new_tokens(12).temperature(0).stop_ids(stop_ids).pad_id(0));
    return decode_replies(g, tokenizer).front().text;
  }
  static std::string model() { return model_dir_->string(); }
  static inline fs::path* model_dir_ = nullptr;
};

TEST_F(GenerateCommandTest, GreedyCompletionsAreTheLibrarysOwn) {
  const Tokenizer tokenizer = Tokenizer::load(model());
  auto r = run_nurture("generate --model " + model() + " --prompt 'Once upon a time' --temperature 0 --max-new-tokens 12");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string plain = greedy(tokenizer.encode("Once upon a time"), {tokenizer.eot_id()});
  ASSERT_FALSE(plain.empty());
  EXPECT_EQ(r.out, plain + "\n");

  r = run_nurture("generate --model " + model() + " --chat --prompt 'a cat' --temperature 0 --max-new-tokens 12");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const ChatMLTemplate chatml;
  const std::string reply = greedy(chatml.render(tokenizer, {{"user", "a cat"}}, true).ids, chatml.stop_ids(tokenizer));
  ASSERT_FALSE(reply.empty());
  EXPECT_EQ(r.out, reply + "\n");
}

TEST_F(GenerateCommandTest, FlagsThatCannotWorkAreUsageErrors) {
  auto r = run_nurture("generate --prompt hi");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("nurture generate: which model?"));
  r = run_nurture("generate --model " + model() + " --prompt hi --system 'be brief'");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("nurture generate: --system needs --chat"));
  std::string long_prompt;
  for (int i = 0; i < 60; ++i) long_prompt += "cat ";
  r = run_nurture("generate --model " + model() + " --prompt '" + long_prompt + "'");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("which leaves no room to generate within the model's block_size of 48 tokens"));
  r = run_nurture("generate --model " + (fs::path(model()) / "absent").string() + " --prompt hi");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("absent"));
}

}  // namespace
}  // namespace nurture
