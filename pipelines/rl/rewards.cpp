// Reward sources (see rewards.h).
#include "pipelines/rl/rewards.h"

#include <algorithm>
#include <optional>
#include <stdexcept>

#include "modules/model/model_dir.h"
#include "pipelines/data/batch.h"
#include "pipelines/runtime/log.h"

namespace nurture::rl {

std::string reward_prompt(const PromptExample& example) {
  const auto& messages = example.prompt;
  for (auto it = messages.rbegin(); it != messages.rend(); ++it)
    if (it->role == "user") return it->content;
  return messages.empty() ? std::string() : messages.back().content;
}

// ---- the reward model -------------------------------------------------------------------------------

RewardModelScorer::RewardModelScorer(RewardModel model, Tokenizer tokenizer,
                                     std::shared_ptr<const ChatTemplate> chat_template, int64_t batch_size,
                                     const torch::Device& device, Padding padding)
    : model_(std::move(model)),
      tokenizer_(std::move(tokenizer)),
      chat_template_(std::move(chat_template)),
      batch_size_(batch_size),
      device_(device),
      padding_(padding) {
  TORCH_CHECK(batch_size_ >= 1, "RewardModelScorer: batch_size must be at least 1, got ", batch_size_);
}

std::pair<torch::Tensor, torch::Tensor> RewardModelScorer::padded_batch(
    const std::vector<const PromptExample*>& examples, const std::vector<Reply>& replies, size_t first) const {
  const int64_t block = model_->options.block_size();
  const int64_t pad = std::max<int64_t>(tokenizer_.pad_id(), 0);
  std::vector<TokenizedExample> chats;
  for (size_t i = first; i < std::min(replies.size(), first + static_cast<size_t>(batch_size_)); ++i) {
    std::vector<Message> messages = examples[i]->prompt;
    messages.push_back({"assistant", replies[i].text});
    auto ids = chat_template_->render(tokenizer_, messages, /*add_generation_prompt=*/false).ids;
    if (static_cast<int64_t>(ids.size()) > block) ids.erase(ids.begin(), ids.end() - block);  // keep the reply
    chats.push_back({std::move(ids), {}});
  }
  if (padding_ == Padding::right) {
    std::vector<const TokenizedExample*> batch;
    for (const auto& chat : chats) batch.push_back(&chat);
    PaddedBatch b = right_pad(batch, pad, device_);
    return {b.ids, b.attention_mask};
  }
  std::vector<std::vector<int64_t>> sequences;
  for (auto& chat : chats) sequences.push_back(std::move(chat.ids));
  torch::Tensor mask;
  const auto ids = left_pad(sequences, pad, &mask);
  return {ids.to(device_), mask.to(device_)};
}

std::vector<double> RewardModelScorer::score(const std::vector<const PromptExample*>& examples,
                                             const std::vector<Reply>& replies) {
  torch::NoGradGuard no_grad;
  std::vector<double> out;
  for (size_t first = 0; first < replies.size(); first += static_cast<size_t>(batch_size_)) {
    const auto [ids, mask] = padded_batch(examples, replies, first);
    const auto scores = model_->forward(ids, mask).to(torch::kCPU, torch::kDouble).contiguous();
    out.insert(out.end(), scores.data_ptr<double>(), scores.data_ptr<double>() + scores.numel());
  }
  return out;
}

std::unique_ptr<RewardModelScorer> load_reward_scorer(const std::filesystem::path& dir,
                                                      const std::string& chat_template, const std::string& where,
                                                      int64_t batch_size, const torch::Device& device,
                                                      c10::optional<torch::Dtype> dtype, Padding padding) {
  RewardModel model = load_reward_model(dir, device, dtype);
  model->eval();
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  Tokenizer tokenizer = Tokenizer::load(dir.string());
  auto resolved = resolve_chat_template(chat_template, tokenizer, where);
  return std::make_unique<RewardModelScorer>(model, std::move(tokenizer), std::move(resolved), batch_size, device,
                                             padding);
}

// ---- reward functions -------------------------------------------------------------------------------

namespace {

// One entry of reward_functions (see parse_reward_functions); nullopt after appending its mistakes.
std::optional<RewardFunctionSpec> parse_reward_function(const ConfigNode& item, const std::string& path,
                                                        std::vector<std::string>& errors) {
  const ConfigNode* name = item.is_scalar() ? &item : item.is_map() ? item.find("name") : nullptr;
  if (name == nullptr || !name->is_scalar()) {
    errors.push_back(item.where().str() + ": " + path + ": each entry is a reward function's name or a map "
                     "{name: ..., weight: ..., and its parameters}, got " + item.kind_name() +
                     (item.is_map() ? " without a name" : ""));
    return std::nullopt;
  }
  const auto& registry = reward_function_registry();
  if (!registry.contains(name->text())) {
    errors.push_back(name->where().str() + ": " + path + ": " + registry.unknown(name->text()));
    return std::nullopt;
  }
  RewardFunctionSpec spec{name->text(), 1.0, {}};
  const std::string own_path = path + "." + spec.name;
  ConfigNode parameters = ConfigNode::map(item.where());
  for (const auto& e : item.is_map() ? item.entries() : std::vector<ConfigNode::Entry>{}) {
    if (e.key == "name") continue;
    if (e.key != "weight") {
      parameters.set(e.key, e.value, e.key_where);
    } else if (!e.value.is_scalar() || !parse_float(e.value.text(), &spec.weight)) {
      errors.push_back(e.value.where().str() + ": " + own_path + ".weight: expected a number, got '" +
                       e.value.text() + "'");
      return std::nullopt;
    }
  }
  const RewardFunctionEntry& entry = registry.get(spec.name);
  const auto schema = entry.schema ? entry.schema() : std::make_shared<const Schema>();
  ValidationContext ctx;
  schema->validate(parameters, own_path, ctx);
  if (!ctx.errors.empty()) {
    errors.insert(errors.end(), ctx.errors.begin(), ctx.errors.end());
    return std::nullopt;
  }
  try {
    spec.function = entry.make(Settings(schema->resolve(parameters), own_path));
  } catch (const std::exception& e) {  // a parameter its schema cannot judge (a bad regex), named by make
    errors.push_back(e.what());
    return std::nullopt;
  }
  return spec;
}

}  // namespace

std::vector<RewardFunctionSpec> parse_reward_functions(const ConfigNode& list, const std::string& path,
                                                       std::vector<std::string>& errors) {
  std::vector<RewardFunctionSpec> out;
  if (list.is_null()) return out;
  if (!list.is_sequence()) {
    errors.push_back(list.where().str() + ": " + path + ": expected a list of reward functions, e.g. "
                     "[math_answer, {name: format, pattern: \"...\", weight: 0.5}], got " + list.kind_name());
    return out;
  }
  for (const auto& item : list.items())
    if (auto spec = parse_reward_function(item, path, errors)) out.push_back(std::move(*spec));
  return out;
}

void add_reward_functions_field(Schema& schema, const std::string& help) {
  schema.add_any("reward_functions", help);
  schema.add_check([](const Settings& s, ValidationContext& ctx) {
    if (const ConfigNode* list = s.node().find("reward_functions"))
      parse_reward_functions(*list, s.path() + ".reward_functions", ctx.errors);
  });
}

RewardFunction reward_function(const std::string& name, const std::string& where) {
  if (!reward_function_registry().contains(name))
    throw std::runtime_error(where + ": " + reward_function_registry().unknown(name));
  const RewardFunctionEntry& entry = reward_function_registry().get(name);
  const auto schema = entry.schema ? entry.schema() : std::make_shared<const Schema>();
  const ConfigNode none = ConfigNode::map({});
  ValidationContext ctx;
  schema->validate(none, name, ctx);
  if (!ctx.errors.empty())
    throw std::runtime_error(where + ": " + name + " needs parameters, given as {name: " + name + ", ...}: " +
                             ctx.errors.front());
  return entry.make(Settings(schema->resolve(none), name));
}

RewardFunctions::RewardFunctions(const std::vector<std::string>& names, const std::string& where) {
  for (const auto& name : names) functions_.push_back({name, 1.0, reward_function(name, where)});
}

RewardFunctions::RewardFunctions(const ConfigNode& list, const std::string& path) {
  std::vector<std::string> errors;
  functions_ = parse_reward_functions(list, path, errors);
  if (!errors.empty()) throw std::runtime_error(errors.front());
}

std::vector<double> RewardFunctions::score(const std::vector<const PromptExample*>& examples,
                                           const std::vector<Reply>& replies) {
  last_scores_.clear();
  for (const auto& f : functions_) last_scores_.emplace_back(f.name, std::vector<double>());
  std::vector<double> out;
  for (size_t i = 0; i < replies.size(); ++i) {
    const std::string prompt = reward_prompt(*examples[i]);
    const RewardInput input{prompt, replies[i].text, examples[i]->reference, replies[i].tokens};
    double sum = 0.0;
    for (size_t k = 0; k < functions_.size(); ++k) {
      const double value = functions_[k].function(input);
      last_scores_[k].second.push_back(value);
      sum += functions_[k].weight * value;
    }
    out.push_back(sum);
  }
  return out;
}

std::vector<std::string> RewardFunctions::function_names() const {
  std::vector<std::string> out;
  for (const auto& f : functions_) out.push_back(f.name);
  return out;
}

std::string RewardFunctions::names() const {
  std::string out;
  for (const auto& f : functions_)
    out += (out.empty() ? "" : ", ") + f.name + (f.weight == 1.0 ? "" : " x" + fixed(f.weight, 2));
  return out;
}

// ---- penalties and sums -----------------------------------------------------------------------------

std::vector<double> MissingEosPenalty::score(const std::vector<const PromptExample*>& /*examples*/,
                                             const std::vector<Reply>& replies) {
  std::vector<double> out;
  for (const auto& reply : replies) out.push_back(reply.stopped ? 0.0 : penalty_);
  return out;
}

void WeightedRewards::add(double weight, std::unique_ptr<RewardSource> source) {
  sources_.emplace_back(weight, std::move(source));
}

// The totals start at +0.0, so adding a zero term never changes them: a source that gives 0
// (a reply that stopped, for MissingEosPenalty) is the same as no source.
std::vector<double> WeightedRewards::score(const std::vector<const PromptExample*>& examples,
                                           const std::vector<Reply>& replies) {
  std::vector<double> totals(replies.size(), 0.0);
  for (auto& [weight, source] : sources_) {
    const auto scores = source->score(examples, replies);
    TORCH_CHECK(scores.size() == replies.size(), "a reward source gave ", scores.size(), " scores for ",
                replies.size(), " replies");
    for (size_t i = 0; i < replies.size(); ++i) totals[i] += weight * scores[i];
  }
  return totals;
}

}  // namespace nurture::rl
