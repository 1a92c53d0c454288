// Greedy evaluation on a prompt set (see prompt_eval.h).
#include "pipelines/rl/prompt_eval.h"

#include <torch/torch.h>

#include <string>
#include <vector>

namespace nurture::rl {

nlohmann::json evaluate_on_prompts(Transformer& policy, const PromptSet& set, const SamplingOptions& greedy,
                                   const Tokenizer& tokenizer, RewardSource& score, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  const RewardFunction& exact_match = reward_function_registry().get("exact_match");
  const int64_t n = static_cast<int64_t>(set.examples.size());
  double score_sum = 0, correct = 0, length_sum = 0, stopped_sum = 0;
  int64_t with_reference = 0;
  for (int64_t start = 0; start < n; start += batch_size) {
    const PromptBatch batch = prompt_range(set, start, batch_size);
    Generation gen = generate(policy, batch.ids, greedy);
    const std::vector<Reply> replies = decode_replies(gen, tokenizer);
    for (double s : score.score(batch.examples, replies)) score_sum += s;
    length_sum += gen.response_mask.sum().item<double>();
    for (size_t i = 0; i < replies.size(); ++i) {
      stopped_sum += replies[i].stopped ? 1 : 0;
      const PromptExample& example = *batch.examples[i];
      if (example.reference.empty()) continue;
      ++with_reference;
      correct += exact_match(RewardInput{reward_prompt(example), replies[i].text, example.reference});
    }
  }
  nlohmann::json out = {{"eval_score", score_sum / n},
                        {"eval_response_length", length_sum / n},
                        {"eval_stopped_fraction", stopped_sum / n}};
  if (with_reference > 0) out["eval_accuracy"] = correct / with_reference;
  return out;
}

}  // namespace nurture::rl
