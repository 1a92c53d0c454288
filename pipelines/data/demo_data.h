// The quickstart's self-made world: countries with their capitals and continents, and small sums,
// rendered as every data format the lifecycle uses (prose, lists and dialogues for pre-training, chat Q&A for
// SFT, right-vs-wrong answer pairs for the reward model, prompts with reference answers for PPO and
// evaluation, "X -> Y" tasks for in-context learning). Deterministic for a seed.
//
// Pre-training tells every fact: it is the model's knowledge. A held-out share of the facts never
// appears in SFT, reward-model or PPO training data; evaluating on them shows whether the later
// stages taught the model to use what it read, not to recite what they showed it.
#pragma once
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

namespace nurture {

struct DemoDataOptions {
  uint64_t seed = 0;
  int64_t prose_repeats = 8;        // how many times each fact is told in pre-training prose
  int64_t max_operand = 9;          // sums a + b with 0 <= a, b <= max_operand
  double heldout_fraction = 0.25;   // facts whose Q&A never appears in SFT/RM/PPO training data
};

// Writes into `dir`: pretrain.txt, pretrain_val.txt, pretrain_lists.jsonl (lists, one per document,
// for in-context learning), pretrain_dialogues.jsonl (Q&A transcripts, one per document), sft.jsonl, sft_val.jsonl, prefs.jsonl,
// prefs_val.jsonl, prompts.jsonl (PPO training prompts), eval_prompts.jsonl (held-out),
// icl.jsonl (in-context tasks). Returns counts of each, for the stage's metrics.
nlohmann::json write_demo_data(const std::filesystem::path& dir, const DemoDataOptions& options);

}  // namespace nurture
