// What a stage produces, so that consumers ask for a kind rather than for pipeline names: a
// pipeline declares its kinds on its registry entry (StageEntry::produces), a setting that
// reads an earlier stage declares the kind it needs (Field::producing), and validation matches
// the two. `init_from: my_plugin_stage` works as soon as the plugin's pipeline produces an lm.
#pragma once
#include <string>
#include <vector>

namespace nurture {

enum class Kind {
  data,       // data files (JSONL, text) later stages read by path
  tokenizer,  // <stage>/tokenizer.model
  lm,         // a language model directory, <stage>/model (kind "lm")
  reward,     // a reward model directory, <stage>/model (kind "reward")
  value,      // a value model directory, <stage>/model (kind "value")
};

// "lm", as recipes, model directories and messages spell it.
inline const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::data: return "data";
    case Kind::tokenizer: return "tokenizer";
    case Kind::lm: return "lm";
    case Kind::reward: return "reward";
    case Kind::value: return "value";
  }
  return "?";
}

// "lm and tokenizer", or "nothing" for a stage that produces nothing later stages read (eval).
inline std::string kind_names(const std::vector<Kind>& kinds) {
  std::string out;
  for (size_t i = 0; i < kinds.size(); ++i)
    out += (i == 0 ? "" : i + 1 == kinds.size() ? " and " : ", ") + std::string(kind_name(kinds[i]));
  return out.empty() ? "nothing" : out;
}

}  // namespace nurture
