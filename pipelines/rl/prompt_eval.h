// Evaluation of an on-policy stage's policy on its eval prompts: greedy replies to every prompt,
// their mean score from the stage's reward sources, exact-match accuracy over the prompts that have a
// reference, mean reply length and the share of replies that stopped.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "modules/generation/sampling.h"
#include "modules/model/transformer.h"
#include "modules/text/tokenizer.h"
#include "pipelines/rl/prompts.h"
#include "pipelines/rl/rewards.h"

namespace nurture::rl {

// {"eval_score", "eval_response_length", "eval_stopped_fraction"} and, when some prompt has a
// reference, "eval_accuracy"; `greedy` is the stage's sampling at temperature 0, batch_size prompts
// per generate call. With `functions` (scored as part of `score`), also each one's mean as
// "eval_<name>"; with `log_name`, the first two replies go to the log with their scores.
nlohmann::json evaluate_on_prompts(Transformer& policy, const PromptSet& set, const SamplingOptions& greedy,
                                   const Tokenizer& tokenizer, RewardSource& score, int64_t batch_size,
                                   const RewardFunctions* functions = nullptr, const std::string& log_name = "");

}  // namespace nurture::rl
