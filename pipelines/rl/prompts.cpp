// Prompt sets: loading, rendering, batches and the seeded order (see prompts.h).
#include "pipelines/rl/prompts.h"

#include <algorithm>
#include <stdexcept>

#include "pipelines/train/trainer.h"

namespace nurture::rl {

PromptSet load_prompt_set(const std::filesystem::path& file, bool skip_bad_lines, const Tokenizer& tokenizer,
                          const ChatTemplate& chat_template, int64_t max_prompt_tokens) {
  PromptSet set;
  for (auto& example : load_prompts(file, skip_bad_lines, &set.stats)) {
    auto ids = chat_template.render(tokenizer, example.prompt, /*add_generation_prompt=*/true).ids;
    if (static_cast<int64_t>(ids.size()) > max_prompt_tokens) {
      ++set.too_long;
      continue;
    }
    set.examples.push_back(std::move(example));
    set.ids.push_back(std::move(ids));
  }
  if (set.examples.empty())
    throw std::runtime_error(file.string() + ": no prompt fits in " + std::to_string(max_prompt_tokens) +
                             " tokens (" + std::to_string(set.too_long) +
                             " too long). HINT: lower max_new_tokens or shorten the prompts");
  return set;
}

std::string describe_prompt_set(const std::string& what, const std::string& file, const PromptSet& set) {
  return what + ": " + std::to_string(set.examples.size()) + " from " + file + " (" +
         std::to_string(set.stats.skipped) + " bad lines skipped, " + std::to_string(set.too_long) +
         " too long for max_new_tokens)";
}

PromptBatch prompt_batch(const PromptSet& set, const std::vector<int64_t>& rows, int64_t samples_per_prompt) {
  TORCH_CHECK(samples_per_prompt >= 1, "samples_per_prompt must be at least 1, got ", samples_per_prompt);
  PromptBatch batch;
  for (int64_t row : rows) {
    for (int64_t s = 0; s < samples_per_prompt; ++s) {
      batch.ids.push_back(set.ids.at(static_cast<size_t>(row)));
      batch.examples.push_back(&set.examples.at(static_cast<size_t>(row)));
    }
  }
  return batch;
}

PromptBatch prompt_range(const PromptSet& set, int64_t first, int64_t count) {
  std::vector<int64_t> rows;
  const int64_t end = std::min<int64_t>(static_cast<int64_t>(set.examples.size()), first + count);
  for (int64_t i = first; i < end; ++i) rows.push_back(i);
  return prompt_batch(set, rows);
}

std::vector<int64_t> PromptOrder::next(TrainingState& state, int64_t count, std::vector<int64_t>* positions) {
  std::vector<int64_t> rows;
  const std::vector<int64_t> taken = take_positions(state, count);
  for (int64_t position : taken) rows.push_back(order_.at(position));
  if (positions) *positions = taken;
  return rows;
}

}  // namespace nurture::rl
