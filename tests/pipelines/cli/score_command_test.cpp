// `nurture score` through the executable: every input form's log-prob equals the sum recomputed
// here from one forward pass of the unbatched sequence (so batching and padding change nothing),
// the per-token values add up, a reward model prints the library's reward, and a bad line is a
// usage error naming the file and line, printed before any score.
#include <gmock/gmock.h>

#include <optional>
#include <sstream>

#include "modules/model/model_dir.h"
#include "modules/text/chat_template.h"
#include "tests/test_util.h"
#include "tests/tiny_world.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;
using json = nlohmann::json;

class ScoreCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_dir("ScoreCommand");
    std::string corpus;
    for (int i = 0; i < 30; ++i) corpus += "Once upon a time a cat met dog " + std::to_string(i) + ".\n";
    tokenizer_ = train_tiny_tokenizer(dir_, corpus);
    model_ = save_random_lm(dir_ / "model", preset("llama_micro").block_size(96), *tokenizer_, /*seed=*/4, 3.0);
  }
  // Sum of log p(ids[t] | ids[..t-1]) over t with mask[t], from the sequence alone.
  double logprob(const std::vector<int64_t>& ids, const std::vector<uint8_t>& mask) {
    torch::NoGradGuard no_grad;
    Transformer model = load_transformer(model_, torch::kCPU);
    const auto logits = model->forward(torch::tensor(ids, torch::kLong).unsqueeze(0)).to(torch::kFloat64);
    const auto lp = torch::log_softmax(logits[0], -1);
    double total = 0;
    for (size_t t = 1; t < ids.size(); ++t)
      if (mask[t]) total += lp[static_cast<int64_t>(t - 1)][ids[t]].item<double>();
    return total;
  }
  std::vector<json> lines(const std::string& out) {
    std::vector<json> rows;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) rows.push_back(json::parse(line));
    return rows;
  }
  fs::path dir_, model_;
  std::optional<Tokenizer> tokenizer_;
};

TEST_F(ScoreCommandTest, EveryInputFormScoresWhatItSays) {
  const auto text = tokenizer_->encode("Once upon a time a cat");
  const auto prompt = tokenizer_->encode("Once upon a time"), completion = tokenizer_->encode(" a dog met a cat.");
  const std::vector<Message> chat = {{"user", "a cat"}, {"assistant", "met dog 3."}, {"user", "and"}, {"assistant", "a time"}};
  const RenderedChat rendered = ChatMLTemplate().render(*tokenizer_, chat, false);
  const std::vector<int64_t> ids = {5, 9, 14, 30, 2};
  write_file(dir_ / "in.jsonl", jsonl({{{"text", "Once upon a time a cat"}},
                                       {{"prompt", "Once upon a time"}, {"completion", " a dog met a cat."}},
                                       {{"messages", {{{"role", "user"}, {"content", "a cat"}}, {{"role", "assistant"}, {"content", "met dog 3."}},
                                                      {{"role", "user"}, {"content", "and"}}, {{"role", "assistant"}, {"content", "a time"}}}}},
                                       {{"ids", ids}}}));
  auto joined = prompt;
  joined.insert(joined.end(), completion.begin(), completion.end());
  std::vector<uint8_t> completion_mask(prompt.size(), 0);
  completion_mask.resize(joined.size(), 1);
  auto masked = rendered.loss_mask;
  masked[0] = 0;
  const std::vector<std::pair<double, int64_t>> expected = {
      {logprob(text, std::vector<uint8_t>(text.size(), 1)), static_cast<int64_t>(text.size()) - 1},
      {logprob(joined, completion_mask), static_cast<int64_t>(completion.size())},
      {logprob(rendered.ids, masked), std::count(masked.begin(), masked.end(), 1)},
      {logprob(ids, std::vector<uint8_t>(ids.size(), 1)), 4}};
  for (const std::string batch : {"1", "3"}) {
    auto r = run_nurture("score --model " + model_.string() + " --input " + (dir_ / "in.jsonl").string() +
                         " --per-token --batch " + batch);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto rows = lines(r.out);
    ASSERT_EQ(rows.size(), expected.size()) << r.out;
    for (size_t i = 0; i < rows.size(); ++i) {
      SCOPED_TRACE("line " + std::to_string(i + 1) + " batch " + batch);
      EXPECT_NEAR(rows[i]["logprob"].get<double>(), expected[i].first, 1e-4);
      EXPECT_EQ(rows[i]["tokens"], expected[i].second);
      EXPECT_NEAR(rows[i]["perplexity"].get<double>(), std::exp(-expected[i].first / expected[i].second), 1e-3);
      double sum = 0;
      for (const auto& v : rows[i]["token_logprobs"]) sum += v.get<double>();
      EXPECT_NEAR(sum, rows[i]["logprob"].get<double>(), 1e-9);
      EXPECT_EQ(rows[i]["token_logprobs"].size(), static_cast<size_t>(expected[i].second));
    }
  }
  EXPECT_GT(expected[1].second, 0);
  EXPECT_LT(expected[2].second, static_cast<int64_t>(rendered.ids.size()) - 1);  // only the replies
}

TEST_F(ScoreCommandTest, ARewardModelPrintsItsReward) {
  torch::manual_seed(3);
  const auto options = preset("llama_micro").block_size(96).vocab_size(tokenizer_->vocab_size());
  RewardModel reward(options);
  const fs::path dir = dir_ / "rm";
  save_model(dir, *reward, options, "reward", ModelFormat::kAuto);
  tokenizer_->save((dir / kTokenizerFileName).string());
  write_file(dir_ / "rm.jsonl", jsonl({{{"text", "a cat met dog"}}, {{"text", "Once upon a time"}}}));
  const auto r = run_nurture("score --model " + dir.string() + " --input " + (dir_ / "rm.jsonl").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rows = lines(r.out);
  ASSERT_EQ(rows.size(), 2u);
  torch::NoGradGuard no_grad;
  reward->eval();
  for (const auto& [i, text] : std::vector<std::pair<int, std::string>>{{0, "a cat met dog"}, {1, "Once upon a time"}}) {
    const auto ids = torch::tensor(tokenizer_->encode(text), torch::kLong).unsqueeze(0);
    EXPECT_NEAR(rows[i]["reward"].get<double>(), reward->forward(ids).item<double>(), 1e-5);
  }
}

TEST_F(ScoreCommandTest, ABadLineIsNamedBeforeAnyScoreIsPrinted) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"text\": \"a cat\"}\nnot json\n", ":2: not valid JSON"},
      {"{\"text\": \"a cat\"}\n{\"words\": \"a\"}\n", ":2: expected \"text\", \"prompt\" and \"completion\", \"messages\" or \"ids\""},
      {"{\"ids\": [1, 100000]}\n", ":1: ids: 100000 is not a token id of this model"},
      {"{\"text\": 5}\n", ":1: text: expected a string, got 5"},
      {"{\"ids\": [1" + [] { std::string s; for (int i = 0; i < 99; ++i) s += ", 1"; return s; }() + "]}\n",
       ":1: 100 tokens, more than the model's context of 96"},
  };
  for (const auto& [content, message] : cases) {
    write_file(dir_ / "bad.jsonl", content);
    const auto r = run_nurture("score --model " + model_.string() + " --input " + (dir_ / "bad.jsonl").string());
    EXPECT_EQ(r.exit_code, 2) << content;
    EXPECT_THAT(r.err, HasSubstr((dir_ / "bad.jsonl").string() + message)) << content;
    EXPECT_EQ(r.out, "") << content;
  }
  const auto r = run_nurture("score --model " + model_.string() + " --input x.jsonl --batch 0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--batch must be at least 1"));
}

// A directory without tokenizer files (config.json and the weights only) scores given ids, and a line
// that needs text encoded says why it cannot be.
TEST_F(ScoreCommandTest, WithoutATokenizerOnlyIdsAreScored) {
  const fs::path bare = dir_ / "bare";
  fs::create_directories(bare);
  for (const char* file : {"config.json", "model.safetensors", "model.pt", "generation_config.json"})
    if (fs::exists(model_ / file)) fs::copy_file(model_ / file, bare / file);
  const std::vector<int64_t> ids = {3, 17, 5, 9, 40};
  write_file(dir_ / "ids.jsonl", jsonl({{{"ids", ids}}}));
  auto r = run_nurture("score --model " + bare.string() + " --input " + (dir_ / "ids.jsonl").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NEAR(lines(r.out).at(0)["logprob"].get<double>(), logprob(ids, {0, 1, 1, 1, 1}), 1e-9);
  write_file(dir_ / "text.jsonl", "{\"ids\": [1, 2]}\n{\"text\": \"a cat\"}\n");
  r = run_nurture("score --model " + bare.string() + " --input " + (dir_ / "text.jsonl").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("text.jsonl:2: " + bare.string() + " has no tokenizer (tokenizer.model or "
                               "tokenizer.json): only {\"ids\": [...]} lines can be scored with it"));
  EXPECT_EQ(r.out, "");
}

}  // namespace
}  // namespace nurture
