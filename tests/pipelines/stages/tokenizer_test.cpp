// The tokenizer stage: a SentencePiece model of the asked size trained on the recipe's inputs,
// with the chat tokens, and the compression it reaches on them.
#include <gmock/gmock.h>

#include <fstream>

#include "modules/text/tokenizer.h"
#include "tests/recipe_files.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

TEST(TokenizerStage, TrainsTheAskedVocabularyWithTheChatTokens) {
  const StageRun run(scratch_dir("TokenizerStage"));
  std::string corpus;
  for (int i = 0; i < 300; ++i)
    corpus += "the capital of country " + std::to_string(i % 23) + " is city " + std::to_string(i % 19) + ".\n";
  const fs::path input = write_file(run.dir / "corpus.txt", corpus);
  ASSERT_EQ(run("  tok:\n    pipeline: tokenizer\n    inputs: [" + input.string() + "]\n    vocab_size: 320\n"), 0);
  const auto metrics = run.stage_json("tok")["metrics"];
  EXPECT_EQ(metrics["vocab_size"], 320);
  const Tokenizer tokenizer = Tokenizer::load((run.stage_dir("tok") / "tokenizer.model").string());
  EXPECT_EQ(tokenizer.vocab_size(), 320);
  EXPECT_GE(tokenizer.im_start_id(), 0);
  EXPECT_GE(tokenizer.im_end_id(), 0);
  const std::string line = "the capital of country 7 is city 3.";
  EXPECT_EQ(tokenizer.decode(tokenizer.encode(line)), line);
  // bytes_per_token: the corpus's bytes (newlines aside) over its tokens, line by line.
  int64_t bytes = 0, tokens = 0;
  std::ifstream in(input);
  for (std::string l; std::getline(in, l);) bytes += static_cast<int64_t>(l.size()), tokens += tokenizer.encode(l).size();
  EXPECT_NEAR(metrics["bytes_per_token"].get<double>(), static_cast<double>(bytes) / tokens, 1e-12);
  EXPECT_GT(metrics["bytes_per_token"].get<double>(), 2.0);  // it learned whole words
}

TEST(TokenizerStage, AVocabularyTheTextCannotFillIsAnErrorNamingTheKey) {
  const StageRun run(scratch_dir("TokenizerStageTooSmall"));
  const fs::path input = write_file(run.dir / "tiny.txt", "a b c\n");
  EXPECT_EQ(run("  tok:\n    pipeline: tokenizer\n    inputs: [" + input.string() + "]\n    vocab_size: 2000\n"), 1);
  const auto stage = run.stage_json("tok");
  EXPECT_EQ(stage["status"], "failed");
  EXPECT_THAT(stage["error"].get<std::string>(),
              HasSubstr((run.dir / "r.yaml").string() + ":7:17: stages.tok.vocab_size: tokenizer training for "));
  EXPECT_THAT(stage["error"].get<std::string>(), HasSubstr("Vocabulary size too high (2000)"));
  EXPECT_FALSE(fs::exists(run.stage_dir("tok") / "tokenizer.model"));
}

}  // namespace
}  // namespace nurture
