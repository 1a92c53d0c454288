// Greedy evaluation on a prompt set (see prompt_eval.h).
#include "pipelines/rl/prompt_eval.h"

#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "pipelines/rl/reward_functions.h"
#include "pipelines/runtime/log.h"

namespace nurture::rl {

namespace {

// "sample 1: what is 3 plus 4? -> 7 (score 1.000)", the prompt and reply on one line each.
void log_sample(const std::string& log_name, size_t k, const PromptExample& example, const Reply& reply,
                double score) {
  auto one_line = [](std::string s) {
    std::replace(s.begin(), s.end(), '\n', ' ');
    return s;
  };
  log_line(log_name, "sample " + std::to_string(k + 1) + ": " + one_line(reward_prompt(example)) + " -> " +
                         one_line(reply.text) + " (score " + fixed(score, 3) + ")");
}

}  // namespace

nlohmann::json evaluate_on_prompts(Transformer& policy, const PromptSet& set, const SamplingOptions& greedy,
                                   const Tokenizer& tokenizer, RewardSource& score, int64_t batch_size,
                                   const RewardFunctions* functions, const std::string& log_name) {
  torch::NoGradGuard no_grad;
  const int64_t n = static_cast<int64_t>(set.examples.size());
  double score_sum = 0, correct = 0, length_sum = 0, stopped_sum = 0;
  int64_t with_reference = 0;
  std::map<std::string, double> function_sums;
  size_t logged = 0;
  for (int64_t start = 0; start < n; start += batch_size) {
    const PromptBatch batch = prompt_range(set, start, batch_size);
    Generation gen = generate(policy, batch.ids, greedy);
    const std::vector<Reply> replies = decode_replies(gen, tokenizer);
    const std::vector<double> scores = score.score(batch.examples, replies);
    for (double s : scores) score_sum += s;
    if (functions)
      for (const auto& [name, values] : functions->last_scores())
        for (double v : values) function_sums[name] += v;
    length_sum += gen.response_mask.sum().item<double>();
    for (size_t i = 0; i < replies.size(); ++i) {
      if (!log_name.empty() && logged < 2) log_sample(log_name, logged++, *batch.examples[i], replies[i], scores[i]);
      stopped_sum += replies[i].stopped ? 1 : 0;
      const PromptExample& example = *batch.examples[i];
      if (example.reference.empty()) continue;
      ++with_reference;
      correct += exact_match_score(replies[i].text, example.reference);
    }
  }
  nlohmann::json out = {{"eval_score", score_sum / n},
                        {"eval_response_length", length_sum / n},
                        {"eval_stopped_fraction", stopped_sum / n}};
  if (with_reference > 0) out["eval_accuracy"] = correct / with_reference;
  for (const auto& [name, sum] : function_sums) out["eval_" + name] = sum / n;
  return out;
}

}  // namespace nurture::rl
