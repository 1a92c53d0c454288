// The demo world's promise: the held-out facts' questions never reach SFT, reward-model or PPO
// training data (only their validation sets and the eval prompts), while pre-training tells every
// one of them; and the world is the same for a seed.
#include "pipelines/data/demo_data.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "tests/test_util.h"

namespace nurture {
namespace {

using json = nlohmann::json;
using namespace nurture::testing;
namespace fs = std::filesystem;

std::vector<json> records(const fs::path& file) {
  std::vector<json> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

// Every user question of a training file: chat records ({messages} or {prompt, response}),
// preference pairs and prompts.
std::set<std::string> questions(const fs::path& file) {
  std::set<std::string> out;
  for (const auto& r : records(file)) {
    if (r.contains("prompt")) out.insert(r["prompt"].get<std::string>());
    if (r.contains("messages"))
      for (const auto& m : r["messages"])
        if (m["role"] == "user") out.insert(m["content"].get<std::string>());
  }
  return out;
}

TEST(DemoData, HeldOutQuestionsOnlyReachPretraining) {
  const fs::path dir = scratch_dir("DemoDataHeldOut");
  write_demo_data(dir, {});
  std::set<std::string> trained;
  for (const char* file : {"sft.jsonl", "prefs.jsonl", "prompts.jsonl"}) {
    const auto q = questions(dir / file);
    ASSERT_FALSE(q.empty()) << file;
    trained.insert(q.begin(), q.end());
  }
  const std::string pretrain = read_file(dir / "pretrain.txt");
  const auto held_out = records(dir / "eval_prompts.jsonl");
  ASSERT_GT(held_out.size(), 5u);
  std::set<std::string> asked;
  for (const auto& r : held_out) asked.insert(r["prompt"].get<std::string>());
  EXPECT_EQ(questions(dir / "sft_val.jsonl"), asked);  // validation asks exactly the held-out questions
  EXPECT_EQ(questions(dir / "prefs_val.jsonl"), asked);
  for (const auto& r : held_out) {
    const std::string question = r["prompt"].get<std::string>(), answer = r["reference"].get<std::string>();
    EXPECT_EQ(trained.count(question), 0u) << question;
    EXPECT_NE(pretrain.find(answer), std::string::npos) << answer;  // the fact itself was read
  }
}

TEST(DemoData, TheSameWorldForASeedAndAnotherForAnother) {
  const fs::path a = scratch_dir("DemoDataSeedA"), b = scratch_dir("DemoDataSeedB"), c = scratch_dir("DemoDataSeedC");
  const json counts = write_demo_data(a, {});
  EXPECT_EQ(write_demo_data(b, {}), counts);
  DemoDataOptions other;
  other.seed = 1;
  write_demo_data(c, other);
  for (const char* file : {"pretrain.txt", "sft.jsonl", "eval_prompts.jsonl"}) {
    EXPECT_EQ(read_file(a / file), read_file(b / file)) << file;
    EXPECT_NE(read_file(a / file), read_file(c / file)) << file;
  }
}

}  // namespace
}  // namespace nurture
