// Reward sources behind one interface: the reward model's score of the rendered conversation, the
// registered reward functions' sum, the missing-EOS penalty, and a weighted sum of any of them.
// PPO's score and the eval stage's mean_reward are both computed here.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "modules/core/registry.h"
#include "modules/generation/sampling.h"
#include "modules/model/heads.h"
#include "modules/text/chat_template.h"
#include "modules/text/tokenizer.h"
#include "pipelines/data/jsonl.h"
#include "pipelines/recipe/schema.h"

namespace nurture {

// A reward function scores one sampled response (rule-based rewards for PPO, GRPO and evaluation).
struct RewardInput {
  const std::string& prompt;     // the prompt text (last user message for chats)
  const std::string& response;   // the decoded response, without the stop token
  const std::string& reference;  // the data's `reference` (or `answer`), "" if none
  int64_t response_tokens = 0;   // the response's length in tokens, without the stop token
};
using RewardFunction = std::function<double(const RewardInput&)>;

// A reward function as registered: what it does, the parameters a recipe may give it (a Schema,
// as a pipeline's; none when `schema` is empty) and how it is made from them. A function without
// parameters registers as itself: registry.add("shorter_is_better", fn). `make` throws a
// std::runtime_error naming the parameter (Settings::where) for a value its schema cannot judge.
struct RewardFunctionEntry {
  std::string help;
  std::function<std::shared_ptr<const Schema>()> schema;
  std::function<RewardFunction(const Settings& parameters)> make;

  RewardFunctionEntry(std::string help, std::function<std::shared_ptr<const Schema>()> schema,
                      std::function<RewardFunction(const Settings&)> make)
      : help(std::move(help)), schema(std::move(schema)), make(std::move(make)) {}
  template <class F, std::enable_if_t<std::is_invocable_r_v<double, F, const RewardInput&>, int> = 0>
  RewardFunctionEntry(F function)  // NOLINT(google-explicit-constructor): add("name", fn)
      : make([function](const Settings&) { return RewardFunction(function); }) {}
};

// The reward functions a recipe's `reward_functions` may name (pipelines/rl/reward_functions.h):
// exact_match, math_answer, format, length, registered on first use, and those plugins add.
Registry<RewardFunctionEntry>& reward_function_registry();

}  // namespace nurture

namespace nurture::rl {

// The prompt text reward functions see (RewardInput::prompt): the last user message, else the
// last message.
std::string reward_prompt(const PromptExample& example);

class RewardSource {
 public:
  virtual ~RewardSource() = default;
  // One score per reply; replies[i] answers examples[i].
  virtual std::vector<double> score(const std::vector<const PromptExample*>& examples,
                                    const std::vector<Reply>& replies) = 0;
};

// How the conversations of one forward pass are padded to the same length. The score is the same
// up to rounding (the reward model reads the last real token either way); PPO pads on the left as
// its rollouts are, eval on the right as it always has, so that its figures stay bit for bit.
enum class Padding { left, right };

// The reward model's score of each conversation prompt + reply, rendered with the chat template as
// the reward_model stage renders its pairs (a too-long conversation loses its start), batch_size
// conversations per forward pass. A reply cut off at max_new_tokens is rendered as if it had ended
// (MissingEosPenalty accounts for that).
class RewardModelScorer : public RewardSource {
 public:
  RewardModelScorer(RewardModel model, Tokenizer tokenizer, std::shared_ptr<const ChatTemplate> chat_template,
                    int64_t batch_size, const torch::Device& device, Padding padding = Padding::left);
  std::vector<double> score(const std::vector<const PromptExample*>& examples,
                            const std::vector<Reply>& replies) override;
  const RewardModel& model() const { return model_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }

 private:
  RewardModel model_;
  Tokenizer tokenizer_;
  std::shared_ptr<const ChatTemplate> chat_template_;
  // The rendered conversations of replies [first, first + batch_size) as one padded batch.
  std::pair<torch::Tensor, torch::Tensor> padded_batch(const std::vector<const PromptExample*>& examples,
                                                       const std::vector<Reply>& replies, size_t first) const;

  int64_t batch_size_;
  torch::Device device_;
  Padding padding_;
};

// A reward model directory's model and tokenizer, frozen (eval mode, no gradients), in `dtype`
// when given; `chat_template` (a registered name or "auto", resolved for the reward model's own
// tokenizer; `where` starts its errors) renders what it scores.
std::unique_ptr<RewardModelScorer> load_reward_scorer(const std::filesystem::path& dir,
                                                      const std::string& chat_template, const std::string& where,
                                                      int64_t batch_size, const torch::Device& device,
                                                      c10::optional<torch::Dtype> dtype = c10::nullopt,
                                                      Padding padding = Padding::left);

// The registered function `name` made without parameters; an unknown name, or one that needs
// parameters, is a std::runtime_error starting with `where`.
RewardFunction reward_function(const std::string& name, const std::string& where);

// One entry of a recipe's reward_functions: a registered name, or a map of the name, a weight
// and the function's parameters ({name: format, pattern: "...", weight: 0.5}).
struct RewardFunctionSpec {
  std::string name;
  double weight = 1.0;
  RewardFunction function;
};

// The entries of `list` (a ConfigNode sequence at `path`, e.g. "stages.grpo.reward_functions"),
// each looked up and made with its parameters checked against the function's schema. Every
// mistake is appended to `errors` as "file:line: path...: what" (the recipe check collects them
// before anything runs); entries with mistakes are left out.
std::vector<RewardFunctionSpec> parse_reward_functions(const ConfigNode& list, const std::string& path,
                                                       std::vector<std::string>& errors);

// The `reward_functions` field of an on-policy stage (ppo, grpo): a list of names or maps, checked
// with the recipe (unknown names, parameters, weights) before anything runs.
void add_reward_functions_field(Schema& schema, const std::string& help);

// Σ_k weight_k · f_k(reward_prompt, reply, reference) of registered reward functions; the last
// scoring's mean of each function is kept for the logs.
class RewardFunctions : public RewardSource {
 public:
  // Looks every name up in reward_function_registry(); an unknown one is a std::runtime_error
  // "<where>: unknown reward function ...".
  RewardFunctions(const std::vector<std::string>& names, const std::string& where);
  // The recipe's entries (parse_reward_functions); the first mistake is a std::runtime_error.
  RewardFunctions(const ConfigNode& list, const std::string& path);
  std::vector<double> score(const std::vector<const PromptExample*>& examples,
                            const std::vector<Reply>& replies) override;
  bool empty() const { return functions_.empty(); }
  std::string names() const;  // "exact_match, length x0.50"
  std::vector<std::string> function_names() const;  // {"exact_match", "length"}
  // Each function's scores of the last score() call, unweighted: name -> one per reply.
  const std::vector<std::pair<std::string, std::vector<double>>>& last_scores() const { return last_scores_; }

 private:
  std::vector<RewardFunctionSpec> functions_;
  std::vector<std::pair<std::string, std::vector<double>>> last_scores_;
};

// `penalty` for a reply that ended without its stop token, 0 for one that stopped.
class MissingEosPenalty : public RewardSource {
 public:
  explicit MissingEosPenalty(double penalty) : penalty_(penalty) {}
  std::vector<double> score(const std::vector<const PromptExample*>& examples,
                            const std::vector<Reply>& replies) override;

 private:
  double penalty_;
};

// Σ_k weight_k · source_k, summed in the order the sources were added.
class WeightedRewards : public RewardSource {
 public:
  void add(double weight, std::unique_ptr<RewardSource> source);
  bool empty() const { return sources_.empty(); }
  std::vector<double> score(const std::vector<const PromptExample*>& examples,
                            const std::vector<Reply>& replies) override;

 private:
  std::vector<std::pair<double, std::unique_ptr<RewardSource>>> sources_;
};

}  // namespace nurture::rl
