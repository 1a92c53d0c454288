// Registry<Entry>: named components of one kind. Each layer keeps the registries of what it
// defines, with its own built-ins registered on first use: chat templates
// (modules/text/chat_template.h), model presets (modules/model/transformer.h), dataset formats
// (pipelines/data/dataset_format.h), reward functions (pipelines/rl/rewards.h), advantage
// estimators (pipelines/rl/advantages.h) and stages (pipelines/stages/stages.h). Plugins reach
// them all through pipelines/runner/registries.h. An unknown name is an error that lists the
// known ones.
#pragma once
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "modules/core/names.h"

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
  std::string unknown(const std::string& name) const {
    const std::string hint = did_you_mean(name, names());
    return "unknown " + kind_ + " '" + name + "' (known: " + join_names(names()) + ")" +
           (hint.empty() ? "" : "; " + hint);
  }

 private:
  std::string kind_;
  std::map<std::string, Entry> entries_;
};

}  // namespace nurture
