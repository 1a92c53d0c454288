// Named components, one Registry per kind: pipelines, model presets, reward functions, chat
// templates. Built-ins are registered once (pipelines/builtins.cpp); plugins add their own
// (pipelines/plugin.h). An unknown name is an error that lists the known ones.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "modules/chat_template.h"
#include "modules/transformer.h"
#include "pipelines/dataset_format.h"
#include "pipelines/pipeline.h"
#include "pipelines/rl/advantages.h"

namespace nurture {

template <class Entry>
class Registry {
 public:
  explicit Registry(std::string kind) : kind_(std::move(kind)) {}

  // Registering a name twice is a programming error: two components would silently compete.
  void add(const std::string& name, Entry entry) {
    if (!entries_.emplace(name, std::move(entry)).second)
      throw std::logic_error(kind_ + " '" + name + "' is registered twice");
  }
  bool contains(const std::string& name) const { return entries_.count(name) > 0; }
  const Entry& get(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) throw std::invalid_argument(unknown(name));
    return it->second;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& kv : entries_) out.push_back(kv.first);
    return out;
  }
  const std::string& kind() const { return kind_; }
  // "unknown pipeline 'sfft' (known: dpo, eval, ...); did you mean 'sft'?"
  std::string unknown(const std::string& name) const;

 private:
  std::string kind_;
  std::map<std::string, Entry> entries_;
};

// A reward function scores one sampled response (rule-based rewards for PPO and evaluation).
struct RewardInput {
  const std::string& prompt;     // the prompt text (last user message for chats)
  const std::string& response;   // the decoded response, without the stop token
  const std::string& reference;  // the data's `reference` answer, "" if none
};
using RewardFunction = std::function<double(const RewardInput&)>;

using PresetFactory = std::function<TransformerOptions()>;
using ChatTemplateFactory = std::function<std::shared_ptr<const ChatTemplate>()>;

struct Registries {
  Registry<PipelineEntry> pipelines{"pipeline"};
  Registry<PresetFactory> model_presets{"model preset"};
  Registry<RewardFunction> rewards{"reward function"};
  Registry<ChatTemplateFactory> chat_templates{"chat template"};
  Registry<DatasetEntry> datasets{"dataset format"};
  Registry<rl::AdvantageEstimator> advantages{"advantage estimator"};
};

// The process-wide registries, with the built-ins registered on first use.
Registries& registries();
// Registers nurture's own components (called once by registries()).
void register_builtins(Registries& r);

std::string join_names(const std::vector<std::string>& names);
std::string closest_name(const std::string& name, const std::vector<std::string>& known);

template <class Entry>
std::string Registry<Entry>::unknown(const std::string& name) const {
  std::string hint = closest_name(name, names());
  return "unknown " + kind_ + " '" + name + "' (known: " + join_names(names()) + ")" +
         (hint.empty() ? "" : "; " + hint);
}

}  // namespace nurture
