// `nurture data demo|prepare` through the executable: the demo files with the counts printed for
// them, a prepared shard read back equal to the tokenizer's own encoding of the documents, and
// exit status 2 naming the flag or file for bad command lines and inputs.
#include <gmock/gmock.h>

#include <map>

#include "modules/text/tokenizer.h"
#include "pipelines/data/data.h"
#include "tests/test_util.h"
#include "tests/tiny_world.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

int64_t count_lines(const fs::path& file) {
  const std::string text = read_file(file);
  return static_cast<int64_t>(std::count(text.begin(), text.end(), '\n'));
}

// The ids a shard of these documents must hold: each document's encoding, then <|endoftext|>.
std::vector<int64_t> expected_tokens(const Tokenizer& tokenizer, const std::vector<std::string>& documents) {
  std::vector<int64_t> ids;
  for (const auto& document : documents) {
    const auto encoded = tokenizer.encode(document);
    ids.insert(ids.end(), encoded.begin(), encoded.end());
    ids.push_back(tokenizer.eot_id());
  }
  return ids;
}

// A tiny tokenizer trained once for the suite, in tok.model and in a model-directory-like folder.
class CliDataTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(scratch_dir("cli_data"));
    std::string corpus;
    for (int i = 0; i < 20; ++i)
      corpus += "The capital of France is Paris. What is " + std::to_string(i) + " plus " +
                std::to_string(2 * i) + "? Seoul is the capital of Korea; the river runs quietly.\n";
    tokenizer_ = new Tokenizer(train_tiny_tokenizer(*dir_, corpus, {/*vocab_size=*/360}));
    fs::create_directories(*dir_ / "model");
    tokenizer_->save((*dir_ / "model" / kTokenizerFileName).string());
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete dir_;
  }
  void SetUp() override { out_ = scratch_dir(::testing::UnitTest::GetInstance()->current_test_info()->name()); }

  static const Tokenizer& tokenizer() { return *tokenizer_; }
  static const fs::path& dir() { return *dir_; }
  static inline fs::path* dir_ = nullptr;
  static inline Tokenizer* tokenizer_ = nullptr;
  fs::path out_;
};

TEST_F(CliDataTest, DemoWritesEveryFileAndPrintsItsLineCount) {
  const fs::path world = out_ / "world";
  auto r = run_nurture("data demo --output " + world.string() + " --seed 3 --prose-repeats 2 --max-operand 4");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("[data] wrote the demo world into " + world.string() + " (seed 3)"));

  // "  FILE  COUNT  what it holds", one line per file.
  std::map<std::string, int64_t> printed;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("  ", 0) != 0) continue;
    std::istringstream words(line);
    std::string file;
    int64_t count = -1;
    words >> file >> count;
    printed[file] = count;
  }
  const std::vector<std::string> files = {"pretrain.txt",  "pretrain_val.txt",   "pretrain_lists.jsonl",
                                          "pretrain_dialogues.jsonl",
                                          "sft.jsonl",     "sft_val.jsonl",      "prefs.jsonl",
                                          "prefs_val.jsonl", "prompts.jsonl",    "eval_prompts.jsonl",
                                          "sums_prompts.jsonl", "sums_eval_prompts.jsonl", "icl.jsonl"};
  ASSERT_EQ(printed.size(), files.size()) << r.out;
  for (const auto& file : files) {
    ASSERT_TRUE(printed.count(file)) << file << " not listed in\n" << r.out;
    EXPECT_GT(printed[file], 0) << file;
    EXPECT_EQ(printed[file], count_lines(world / file)) << file;
  }
  int64_t written = 0;
  for (const auto& entry : fs::directory_iterator(world)) written += entry.is_regular_file();
  EXPECT_EQ(written, static_cast<int64_t>(files.size()));  // nothing written that is not listed

  // The flags reach the generator: twice the repeats, twice the prose.
  r = run_nurture("data demo --output " + (out_ / "more").string() + " --seed 3 --prose-repeats 4 --max-operand 4");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(count_lines(out_ / "more" / "pretrain.txt") + count_lines(out_ / "more" / "pretrain_val.txt"),
            2 * (printed["pretrain.txt"] + printed["pretrain_val.txt"]));

  // A split with a single held-out sum still finds it a wrong reply (from the other split).
  r = run_nurture("data demo --output " + (out_ / "one").string() + " --max-operand 1 --heldout-fraction 0.25");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(read_file(out_ / "one" / "prefs_val.jsonl"), HasSubstr("\"prompt\":\"What is "));
}

TEST_F(CliDataTest, PreparedShardHoldsTheEncodedDocuments) {
  const std::string text = "The capital of France is Paris.\n\n   \nWhat is 3 plus 6?\nSeoul, Korea 😀\n";
  write_file(out_ / "a.txt", text);
  write_file(out_ / "b.jsonl", "{\"text\": \"the river runs\"}\n\n{\"text\": \"two\\nlines\"}\n");
  const fs::path shard_dir = out_ / "shard";
  auto r = run_nurture("data prepare --tokenizer " + (dir() / "tok.model").string() + " --input " +
                       (out_ / "a.txt").string() + " --input " + (out_ / "b.jsonl").string() + " --output " +
                       shard_dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;

  const auto expected = expected_tokens(
      tokenizer(), {"The capital of France is Paris.", "What is 3 plus 6?", "Seoul, Korea 😀", "the river runs",
                    "two\nlines"});
  {
    TokenShard shard(shard_dir);
    EXPECT_EQ(shard.index().num_documents, 5);
    EXPECT_EQ(shard.index().dtype, "uint16");
    ASSERT_EQ(shard.size(), static_cast<int64_t>(expected.size()));
    EXPECT_EQ(shard.read(0, shard.size()), expected);
  }
  EXPECT_THAT(r.out, HasSubstr("[data] wrote " + shard_dir.string() + ": 5 documents, " +
                               std::to_string(expected.size()) + " tokens, uint16, " +
                               std::to_string(2 * expected.size()) + " bytes"));

  // A model directory as the tokenizer, whole files as documents; an earlier shard is replaced.
  r = run_nurture("data prepare --whole-files --tokenizer " + (dir() / "model").string() + " --output " +
                  shard_dir.string() + " " + (out_ / "a.txt").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  TokenShard whole(shard_dir);
  EXPECT_EQ(whole.index().num_documents, 1);
  EXPECT_EQ(whole.read(0, whole.size()), expected_tokens(tokenizer(), {text}));
}

TEST_F(CliDataTest, HelpListsBothActionsAndMistakesAreUsageErrors) {
  auto r = run_nurture("data --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("\n  prepare  tokenize pre-training text"));
  EXPECT_THAT(r.out, HasSubstr("\n  demo     write the quickstart's demo world"));
  r = run_nurture("data prepair");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown action 'prepair'; did you mean 'prepare'?"));
  r = run_nurture("data demo --output " + (out_ / "w").string() + " --max-operand 0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("nurture data demo: --max-operand must be in 1..99, got 0"));
  EXPECT_FALSE(fs::exists(out_ / "w"));
  r = run_nurture("data prepare --input a.txt --output " + (out_ / "shard").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("which tokenizer? e.g. --tokenizer"));
}

TEST_F(CliDataTest, PrepareNamesTheBadFlagOrFile) {
  const std::string tok = " --tokenizer " + (dir() / "tok.model").string();
  write_file(out_ / "a.txt", "some text\n");
  const std::string input = " --input " + (out_ / "a.txt").string();
  const std::string output = " --output " + (out_ / "shard").string();

  auto r = run_nurture("data prepare --tokenizer " + (out_ / "absent.model").string() + input + output);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--tokenizer " + (out_ / "absent.model").string() + ": no such file"));
  r = run_nurture("data prepare" + tok + input + " --input " + (out_ / "missing.txt").string() + output);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--input " + (out_ / "missing.txt").string() + " does not exist"));

  // A malformed JSONL line is named by file and line; no shard appears.
  write_file(out_ / "bad.jsonl", "{\"text\": \"fine\"}\n{\"txt\": \"oops\"}\n");
  r = run_nurture("data prepare" + tok + " --input " + (out_ / "bad.jsonl").string() + output);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr((out_ / "bad.jsonl").string() + ":2:"));
  EXPECT_FALSE(fs::exists(out_ / "shard"));

  // An output directory holding other files is never replaced.
  r = run_nurture("data prepare" + tok + input + " --output " + out_.string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--output " + out_.string() + " holds "));
  EXPECT_TRUE(fs::exists(out_ / "a.txt"));
}

}  // namespace
}  // namespace nurture
