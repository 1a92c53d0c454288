// Evaluation on eval prompts against numbers worked out here: the mean score of the greedy replies
// (a reward source that scores each reply by its length), exact match over the prompts with a
// reference (one taken from the policy's own reply matches, another does not), reply length and the
// share that stopped.
#include "pipelines/rl/prompt_eval.h"

#include <gtest/gtest.h>

#include "modules/model/model_dir.h"
#include "pipelines/rl/rollout.h"
#include "tests/test_util.h"
#include "tests/tiny_world.h"

namespace nurture {
namespace {

using namespace nurture::testing;
namespace fs = std::filesystem;

// Scores a reply by its number of characters.
class ReplyLength : public rl::RewardSource {
 public:
  std::vector<double> score(const std::vector<const PromptExample*>&, const std::vector<Reply>& replies) override {
    std::vector<double> out;
    for (const auto& r : replies) out.push_back(static_cast<double>(r.text.size()));
    return out;
  }
};

TEST(PromptEval, ScoreAccuracyLengthAndStoppingOfTheGreedyReplies) {
  const fs::path dir = scratch_dir("PromptEval");
  const Tokenizer tokenizer = train_tiny_tokenizer(dir, "the red cat sat on the blue mat.\nthe dog ran to the sun.\n");
  Transformer policy = load_transformer(
      save_random_lm(dir / "policy", preset("llama_micro").block_size(48), tokenizer, /*seed=*/9, /*scale=*/6),
      torch::kCPU);
  policy->eval();
  const ChatMLTemplate chatml;
  const SamplingOptions greedy = rl::ReplySampling{10, 1.0, 0, 1.0}.greedy().options(tokenizer, chatml);
  const std::vector<std::string> prompts = {"the red cat", "the dog", "the sun"};
  rl::PromptSet set;
  std::vector<Reply> own;
  double length = 0;
  for (const auto& p : prompts) {
    set.ids.push_back(chatml.render(tokenizer, {{"user", p}}, true).ids);
    torch::NoGradGuard no_grad;
    const Generation g = generate(policy, {set.ids.back()}, greedy);
    own.push_back(decode_replies(g, tokenizer).front());
    length += g.response_mask.sum().item<double>();
  }
  ASSERT_FALSE(own[0].text.empty());
  set.examples = {{{{"user", prompts[0]}}, own[0].text}, {{{"user", prompts[1]}}, "zzz not it"}, {{{"user", prompts[2]}}, ""}};

  ReplyLength score;
  const auto m = rl::evaluate_on_prompts(policy, set, greedy, tokenizer, score, /*batch_size=*/1);
  double chars = 0, stopped = 0;
  for (const auto& r : own) chars += static_cast<double>(r.text.size()), stopped += r.stopped ? 1 : 0;
  EXPECT_DOUBLE_EQ(m["eval_score"].get<double>(), chars / 3);
  EXPECT_DOUBLE_EQ(m["eval_accuracy"].get<double>(), 0.5);  // of the two prompts with a reference
  EXPECT_DOUBLE_EQ(m["eval_response_length"].get<double>(), length / 3);
  EXPECT_DOUBLE_EQ(m["eval_stopped_fraction"].get<double>(), stopped / 3);

  set.examples[0].reference = set.examples[1].reference = "";
  EXPECT_FALSE(rl::evaluate_on_prompts(policy, set, greedy, tokenizer, score, 2).contains("eval_accuracy"));
}

}  // namespace
}  // namespace nurture
