// Prompt sets of the on-policy stages: JSONL prompts rendered with the chat template's generation
// prompt (a prompt that leaves no room for max_new_tokens is left out), the seeded order they are
// drawn in, and the batch of one iteration (each prompt repeated samples_per_prompt times).
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "modules/text/chat_template.h"
#include "modules/text/tokenizer.h"
#include "pipelines/data/data.h"
#include "pipelines/recipe/schema.h"
#include "pipelines/train/checkpoint.h"

namespace nurture::rl {

// Prompts rendered with the generation prompt, ready to sample from.
struct PromptSet {
  std::vector<PromptExample> examples;
  std::vector<std::vector<int64_t>> ids;
  int64_t too_long = 0;  // left out: no room for max_new_tokens in the block
  ReadStats stats;
};

// Reads `file` and renders every prompt, its last user turn written through `prompt_format` (see
// format_prompt); a std::runtime_error naming the file when none fits in max_prompt_tokens.
PromptSet load_prompt_set(const std::filesystem::path& file, bool skip_bad_lines, const Tokenizer& tokenizer,
                          const ChatTemplate& chat_template, int64_t max_prompt_tokens,
                          const std::string& prompt_format = "{prompt}");

// The last user turn of `prompt` with its text put where `format` says "{prompt}", e.g. "{prompt}
// Let's think step by step." (a recipe's instruction to every prompt; "{prompt}" leaves it as it is).
void format_prompt(std::vector<Message>& prompt, const std::string& format);

// The data settings every on-policy stage has: prompts (required), eval_prompts, prompt_format,
// skip_bad_lines and chat_template. `answers` says what a line's reference feeds.
void add_prompt_fields(Schema& s, const std::string& answers);

// The prompt sets those settings name, every prompt leaving max_new_tokens of room in the model's
// block_size, each described in the log of `stage`.
struct StagePrompts {
  PromptSet train;
  std::optional<PromptSet> eval;  // when eval_prompts is set
};
StagePrompts load_stage_prompts(const Settings& s, const std::string& stage, const Tokenizer& tokenizer,
                                const ChatTemplate& chat_template, int64_t block_size, int64_t max_new_tokens);

// "prompts: 120 from FILE (0 bad lines skipped, 3 too long for max_new_tokens)"
std::string describe_prompt_set(const std::string& what, const std::string& file, const PromptSet& set);

// The prompts of one generation batch, in row order; the examples point into a PromptSet.
struct PromptBatch {
  std::vector<std::vector<int64_t>> ids;
  std::vector<const PromptExample*> examples;
};

// Rows `rows` of `set`, each repeated samples_per_prompt times in a row (a prompt's samples are
// neighbours: rows [k·S, (k + 1)·S) answer the k-th prompt).
PromptBatch prompt_batch(const PromptSet& set, const std::vector<int64_t>& rows, int64_t samples_per_prompt = 1);
// Rows [first, first + count) of `set` (fewer at its end), once each: evaluation batches.
PromptBatch prompt_range(const PromptSet& set, int64_t first, int64_t count);

// The seeded per-pass order of a prompt set, read at the data cursor of a TrainingState.
class PromptOrder {
 public:
  PromptOrder(uint64_t seed, int64_t size) : order_(seed, size) {}
  // The next `count` rows of this rank (take_positions: each rank takes its own `count` of the
  // global order, and the cursor advances by world_size · count); with `positions`, also where
  // each row stands in the global order (a number no other draw of the run, on any rank, shares).
  std::vector<int64_t> next(TrainingState& state, int64_t count, std::vector<int64_t>* positions = nullptr);

 private:
  ShuffledOrder order_;
};

}  // namespace nurture::rl
