// Preference pairs as tokens, shared by the stages that train on them (reward_model, dpo): their
// data settings, each side rendered as prompt + reply through the chat template, cut to
// max_length, and batched as [2B, T] (chosen rows first).
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "modules/text/chat_template.h"
#include "modules/text/tokenizer.h"
#include "pipelines/data/batch.h"
#include "pipelines/data/data.h"
#include "pipelines/recipe/schema.h"

namespace nurture {

// Both sides of a pair rendered as prompt + reply; loss_mask is 1 on the final reply only (its
// content and closing token), not on assistant turns inside the prompt.
struct TokenizedPair {
  TokenizedExample chosen, rejected;
};

struct PreferenceData {
  std::vector<TokenizedPair> pairs;
  int64_t truncated = 0;  // lost the start of their prompt to fit max_length
  int64_t dropped = 0;    // a reply's turn alone was longer than max_length
  ReadStats stats;
};

// Reads {prompt, chosen, rejected} JSONL and renders every pair. A pair whose reply alone exceeds
// max_length is dropped; otherwise the start of the prompt is cut until it fits. No usable pair:
// std::runtime_error naming the file.
PreferenceData load_preference_data(const std::filesystem::path& file, const Tokenizer& tokenizer,
                                    const ChatTemplate& chat_template, int64_t max_length,
                                    bool skip_bad_lines);

// B pairs as one [2B, T] batch: rows [0, B) the chosen sides, [B, 2B) the rejected ones.
PaddedBatch pair_batch(const std::vector<const TokenizedPair*>& pairs, int64_t pad_id,
                       const torch::Device& device);

// ---- a stage's preference data ---------------------------------------------------------------------

// The data settings of a stage that trains on pairs: train, val, chat_template, max_length,
// skip_bad_lines.
void add_preference_data_fields(Schema& schema);

// What such a stage trains and evaluates on, read as its settings say.
struct PreferenceSplits {
  std::shared_ptr<const ChatTemplate> chat_template;
  int64_t pad_id = 0;
  PreferenceData train, val;  // val: empty when the stage has none

  // The counts summary.json records: train_pairs, truncated, dropped, skipped_lines.
  void add_counts(nlohmann::json& metrics) const;
  // Held-out pairs [first, last), in file order.
  std::vector<const TokenizedPair*> val_pairs(int64_t first, int64_t last) const;
};

// Reads `train` (and `val`) of the stage's settings `s` for a model of `block_size` positions
// (max_length is capped there), logging what it read under `component`.
PreferenceSplits read_preference_splits(const Settings& s, const std::string& component,
                                        const Tokenizer& tokenizer,
                                        std::shared_ptr<const ChatTemplate> chat_template,
                                        int64_t block_size);

}  // namespace nurture
