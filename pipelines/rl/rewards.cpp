// Reward sources (see rewards.h).
#include "pipelines/rl/rewards.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>

#include "modules/model/model_dir.h"
#include "pipelines/data/batch.h"

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

std::string normalize_answer(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isspace(c)) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += static_cast<char>(std::tolower(c));
    }
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == '.')) out.pop_back();
  return out;
}

}  // namespace


RewardFunctions::RewardFunctions(const std::vector<std::string>& names, const std::string& where) {
  for (const auto& name : names) {
    if (!reward_function_registry().contains(name))
      throw std::runtime_error(where + ": " + reward_function_registry().unknown(name));
    functions_.emplace_back(name, reward_function_registry().get(name));
  }
}

std::vector<double> RewardFunctions::score(const std::vector<const PromptExample*>& examples,
                                           const std::vector<Reply>& replies) {
  std::vector<double> out;
  for (size_t i = 0; i < replies.size(); ++i) {
    const std::string prompt = reward_prompt(*examples[i]);
    double sum = 0.0;
    for (const auto& [name, fn] : functions_) sum += fn(RewardInput{prompt, replies[i].text, examples[i]->reference});
    out.push_back(sum);
  }
  return out;
}

std::string RewardFunctions::names() const {
  std::string out;
  for (const auto& f : functions_) out += (out.empty() ? "" : ", ") + f.first;
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

namespace nurture {

Registry<RewardFunction>& reward_function_registry() {
  static Registry<RewardFunction> registry = [] {
    Registry<RewardFunction> r("reward function");
    r.add("exact_match", [](const RewardInput& in) {
      if (in.reference.empty()) return 0.0;
      return rl::normalize_answer(in.response) == rl::normalize_answer(in.reference) ? 1.0 : 0.0;
    });
    return r;
  }();
  return registry;
}

}  // namespace nurture
