// `nurture export` through the executable: nurture's format to Hugging Face's and back gives the
// same logits (fp32) or bf16's rounding (bf16), shards when asked, keeps the tokenizer, also for a
// Hugging Face directory written by transformers; flags and inputs that cannot work are usage
// errors (exit 2) naming the flag, and nothing is left under the output's name.
#include <gmock/gmock.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "modules/core/safetensors.h"
#include "modules/model/model_dir.h"
#include "tests/test_util.h"
#include "tests/tiny_world.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

class ExportCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_dir("ExportCommand");
    std::string corpus;
    for (int i = 0; i < 30; ++i) corpus += "Once upon a time a cat met dog " + std::to_string(i) + ".\n";
    const Tokenizer tokenizer = train_tiny_tokenizer(dir_, corpus);
    model_ = save_random_lm(dir_ / "model", preset("llama_micro").block_size(48), tokenizer, /*seed=*/4, 3.0);
  }
  torch::Tensor logits(const fs::path& dir) {
    torch::NoGradGuard no_grad;
    return load_transformer(dir, torch::kCPU, torch::kFloat32)->forward(idx_);
  }
  fs::path dir_, model_;
  torch::Tensor idx_ = torch::arange(3, 23, torch::kLong).reshape({2, 10});
};

TEST_F(ExportCommandTest, BothWaysKeepTheLogits) {
  auto r = run_nurture("export --model " + model_.string() + " --output " + (dir_ / "hf").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("(nurture, lm) -> " + (dir_ / "hf").string() + " (hf llama"));
  EXPECT_EQ(model_format_of(dir_ / "hf"), ModelFormat::kHuggingFace);
  EXPECT_TRUE(fs::exists(dir_ / "hf" / kTokenizerFileName));
  EXPECT_TRUE(torch::equal(logits(dir_ / "hf"), logits(model_)));

  r = run_nurture("export --model " + (dir_ / "hf").string() + " --output " + (dir_ / "back").string() +
                  " --format nurture");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir_ / "back" / "model.pt"));
  EXPECT_TRUE(torch::equal(logits(dir_ / "back"), logits(model_)));

  r = run_nurture("export --model " + model_.string() + " --output " + (dir_ / "bf16").string() +
                  " --dtype bf16 --shard-size 40KB");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir_ / "bf16" / "model.safetensors.index.json"));
  int shards = 0;
  for (const auto& entry : fs::directory_iterator(dir_ / "bf16"))
    shards += entry.path().extension() == ".safetensors" ? 1 : 0;
  EXPECT_GT(shards, 2);
  const auto diff = (logits(dir_ / "bf16") - logits(model_)).abs().max().item<double>();
  EXPECT_GT(diff, 0.0);
  EXPECT_LT(diff, 0.5);
  std::ifstream config(dir_ / "bf16" / "config.json");
  const auto json = nlohmann::json::parse(config);
  EXPECT_EQ(json["dtype"], "bfloat16");
  EXPECT_EQ(json["eos_token_id"], Tokenizer::load(model_.string()).eot_id());

  // A directory transformers wrote.
  const fs::path theirs = source_dir() / "tests" / "fixtures" / "hf" / "models" / "qwen3";
  r = run_nurture("export --model " + theirs.string() + " --output " + (dir_ / "qwen3").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("(hf, lm)"));
  EXPECT_THAT(r.out, HasSubstr("no tokenizer files"));
  torch::NoGradGuard no_grad;
  const auto ids = torch::arange(3, 13, torch::kLong).unsqueeze(0);
  EXPECT_TRUE(torch::equal(load_transformer(dir_ / "qwen3", torch::kCPU)->forward(ids),
                           load_transformer(theirs, torch::kCPU)->forward(ids)));
}

TEST_F(ExportCommandTest, WhatCannotWorkIsAUsageError) {
  const std::string out = (dir_ / "out").string();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"export --output " + out, "which model?"},
      {"export --model " + model_.string(), "where to?"},
      {"export --model " + model_.string() + " --output " + out + " --format onnx", "--format must be hf or nurture"},
      {"export --model " + model_.string() + " --output " + out + " --dtype int8", "--dtype must be fp32, bf16 or f16"},
      {"export --model " + model_.string() + " --output " + out + " --shard-size 5XB", "unknown unit 'XB'"},
      {"export --model " + model_.string() + " --output " + model_.string(), "exists; choose a new directory"},
      {"export --model " + (dir_ / "nothing").string() + " --output " + out, "no such directory"},
  };
  for (const auto& [command, message] : cases) {
    const auto r = run_nurture(command);
    EXPECT_EQ(r.exit_code, 2) << command;
    EXPECT_THAT(r.err, HasSubstr(message)) << command;
  }
  // A shape no Hugging Face architecture has: GPT-2's layout with rotary positions.
  const Tokenizer tokenizer = Tokenizer::load(model_.string());
  const fs::path odd = save_random_lm(dir_ / "odd", preset("gpt2_tiny").position(PositionKind::kRope), tokenizer, 1);
  auto r = run_nurture("export --model " + odd.string() + " --output " + out);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("no Hugging Face architecture has this model's shape"));
  // A damaged source: the message names the file, and no output appears.
  std::ofstream(dir_ / "odd" / "model.pt", std::ios::trunc) << "garbage";
  r = run_nurture("export --model " + odd.string() + " --output " + out + " --format nurture");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr((dir_ / "odd" / "model.pt").string()));
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".tmp"));
}

}  // namespace
}  // namespace nurture
