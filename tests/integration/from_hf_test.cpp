// recipes/from_hf.yaml end to end: it fine-tunes the Qwen2 chat model transformers wrote
// (tests/fixtures/hf/models/qwen2_chat), in that model's own chat template (recognised from its
// chat_template.jinja), and leaves a Hugging Face directory that scores the held-out replies
// better than the checkpoint it started from.
#include <gmock/gmock.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "modules/model/model_dir.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;
using json = nlohmann::json;

// Σ log-prob of the assistant replies of every conversation in `input`, as `nurture score` gives it.
double replies_logprob(const fs::path& model, const fs::path& input) {
  const auto r = run_nurture("score --model " + model.string() + " --input " + input.string());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  double total = 0;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) total += json::parse(line)["logprob"].get<double>();
  return total;
}

TEST(FromHf, FineTunesAHuggingFaceCheckpointAndHandsOneBack) {
  const fs::path out = scratch_dir("from_hf") / "run";
  const auto r = run_nurture("run recipes/from_hf.yaml --output " + out.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("[sft] model from tests/fixtures/hf/models/qwen2_chat"));

  const fs::path model = out / "sft" / "model";
  EXPECT_EQ(model_format_of(model), ModelFormat::kHuggingFace);
  for (const char* file : {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                           "tokenizer_config.json", "chat_template.jinja"})
    EXPECT_TRUE(fs::is_regular_file(model / file)) << file;
  const auto config = json::parse(read_file(model / "config.json"));
  EXPECT_EQ(config["architectures"], json::array({"Qwen2ForCausalLM"}));
  EXPECT_EQ(config["vocab_size"], 960);  // the padded embedding of the checkpoint, kept
  EXPECT_EQ(read_file(model / "chat_template.jinja"),
            read_file(source_dir() / "tests/fixtures/hf/models/qwen2_chat/chat_template.jinja"));

  // The held-out replies are likelier after the fine-tune than before it.
  const fs::path val = out / "data" / "sft_val.jsonl";
  const double before = replies_logprob(source_dir() / "tests/fixtures/hf/models/qwen2_chat", val);
  const double after = replies_logprob(model, val);
  EXPECT_GT(after, before + 0.03 * std::abs(before)) << "before " << before << ", after " << after;

  const auto summary = json::parse(read_file(out / "summary.json"));
  EXPECT_EQ(summary["stages"][2]["name"], "eval");
  EXPECT_TRUE(summary["stages"][2]["metrics"].contains("sft.stopped_fraction"));
}

}  // namespace
}  // namespace nurture
