// The eval stage against numbers worked out here from the same model directories: exact match of
// the greedy answers (a reference taken from the model's own answer matches, another does not),
// the share that stopped, and perplexity on held-out text; one row per model.
#include <gmock/gmock.h>

#include <cmath>

#include "modules/generation/sampling.h"
#include "modules/model/model_dir.h"
#include "modules/text/chat_template.h"
#include "tests/recipe_files.h"
#include "tests/tiny_world.h"

namespace nurture {
namespace {

using json = nlohmann::json;
using namespace nurture::testing;
namespace fs = std::filesystem;

// The greedy reply to one prompt, alone in its batch (as the stage runs with batch_size 1).
Reply greedy_reply(Transformer& model, const Tokenizer& tokenizer, const std::string& prompt) {
  const ChatMLTemplate chatml;
  SamplingOptions o;
  o.max_new_tokens(12).temperature(0).stop_ids(chatml.stop_ids(tokenizer)).pad_id(std::max<int64_t>(tokenizer.pad_id(), 0));
  torch::NoGradGuard no_grad;
  const Generation g = generate(model, {chatml.render(tokenizer, {{"user", prompt}}, true).ids}, o);
  return decode_replies(g, tokenizer).front();
}

// exp(mean next-token loss) over the lines, each followed by <|endoftext|>, in one window.
double perplexity(Transformer& model, const Tokenizer& tokenizer, const std::vector<std::string>& lines) {
  std::vector<int64_t> stream;
  for (const auto& line : lines) {
    for (int64_t id : tokenizer.encode(line)) stream.push_back(id);
    stream.push_back(tokenizer.eot_id());
  }
  EXPECT_LE(static_cast<int64_t>(stream.size()), model->options.block_size());
  torch::NoGradGuard no_grad;
  const auto logp = torch::log_softmax(model->forward(torch::tensor(stream).unsqueeze(0))[0], -1);
  double nll = 0;
  for (size_t t = 1; t < stream.size(); ++t) nll -= logp[t - 1][stream[t]].item<double>();
  return std::exp(nll / static_cast<double>(stream.size() - 1));
}

TEST(EvalStage, ExactMatchStoppingAndPerplexityPerModel) {
  const StageRun run(scratch_dir("EvalStage"));
  const fs::path base = preference_model_dir(run.dir, "base");
  const Tokenizer tokenizer = Tokenizer::load((base / kTokenizerFileName).string());
  const fs::path other = save_random_lm(run.dir / "other", read_model_config(base), tokenizer, /*seed=*/5, 3.0);
  Transformer model = load_transformer(base, torch::kCPU);
  model->eval();

  const std::vector<std::string> prompts = {"Tell me about the red cat.", "Tell me about the sun.", "Hi."};
  const Reply own = greedy_reply(model, tokenizer, prompts[0]);
  ASSERT_FALSE(own.text.empty()) << "the random model's first reply is empty; pick another prompt";
  const fs::path prompt_file = write_file(run.dir / "prompts.jsonl",
                                          jsonl({{{"prompt", prompts[0]}, {"reference", own.text}},
                                                 {{"prompt", prompts[1]}, {"reference", "zzz not an answer"}},
                                                 {{"prompt", prompts[2]}}}));
  const std::vector<std::string> text = {"the red cat and the blue dog", "thanks moon tree"};
  const fs::path text_file = write_file(run.dir / "text.txt", text[0] + "\n" + text[1] + "\n");
  ASSERT_EQ(run("  eval:\n    pipeline: eval\n    models: [" + base.string() + ", " + other.string() +
                "]\n    prompts: " + prompt_file.string() + "\n    text: [" + text_file.string() +
                "]\n    max_new_tokens: 12\n    batch_size: 1\n    samples: 0\n"),
            0);
  const json m = run.stage_json("eval")["metrics"];
  EXPECT_DOUBLE_EQ(m["base.exact_match"].get<double>(), 0.5);  // of the two prompts with a reference
  double stopped = 0;
  for (const auto& p : prompts) stopped += greedy_reply(model, tokenizer, p).stopped ? 1 : 0;
  EXPECT_DOUBLE_EQ(m["base.stopped_fraction"].get<double>(), stopped / 3);
  EXPECT_NEAR(m["base.perplexity"].get<double>(), perplexity(model, tokenizer, text), 1e-4);
  Transformer other_model = load_transformer(other, torch::kCPU);
  other_model->eval();
  EXPECT_NEAR(m["other.perplexity"].get<double>(), perplexity(other_model, tokenizer, text), 1e-3);
  EXPECT_TRUE(m["summary"]["comparison"].contains("other"));
}

}  // namespace
}  // namespace nurture
