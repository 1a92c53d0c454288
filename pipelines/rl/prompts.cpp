// Prompt sets: loading, rendering, batches and the seeded order (see prompts.h).
#include "pipelines/rl/prompts.h"

#include <algorithm>
#include <stdexcept>
#include <string_view>

#include "pipelines/runtime/log.h"
#include "pipelines/train/trainer.h"

namespace nurture::rl {

namespace {
constexpr std::string_view kPromptSlot = "{prompt}";
}  // namespace

void format_prompt(std::vector<Message>& prompt, const std::string& format) {
  if (format == kPromptSlot) return;
  const size_t slot = format.find(kPromptSlot);
  if (slot == std::string::npos) throw std::invalid_argument("prompt_format has no {prompt}: " + format);
  for (auto m = prompt.rbegin(); m != prompt.rend(); ++m)
    if (m->role == "user") {
      m->content = format.substr(0, slot) + m->content + format.substr(slot + kPromptSlot.size());
      return;
    }
}

PromptSet load_prompt_set(const std::filesystem::path& file, bool skip_bad_lines, const Tokenizer& tokenizer,
                          const ChatTemplate& chat_template, int64_t max_prompt_tokens,
                          const std::string& prompt_format) {
  PromptSet set;
  for (auto& example : load_prompts(file, skip_bad_lines, &set.stats)) {
    format_prompt(example.prompt, prompt_format);
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

void add_prompt_fields(Schema& s, const std::string& answers) {
  s.add_string("prompts", "", "JSONL of {prompt, answer?}: prompt is a string (one user turn) or a list of "
                              "{role, content} messages; answer (or reference) " + answers)
      .must_be_required();
  s.add_string("eval_prompts", "", "held-out prompts in the same format, answered greedily every eval_every "
                                   "iterations: each reward function's mean, exact-match accuracy, mean score");
  s.add_string("prompt_format", std::string(kPromptSlot),
               "every prompt's last user turn written into this, where it says {prompt}, e.g. \"{prompt} "
               "Let's think step by step.\" (training and eval prompts alike)")
      .checked([](const ConfigNode& n) {
        const size_t slot = n.text().find(kPromptSlot);
        if (slot == std::string::npos) return std::string("needs {prompt}, where the prompt's text goes");
        if (n.text().find(kPromptSlot, slot + 1) != std::string::npos) return std::string("has {prompt} twice");
        return std::string();
      });
  s.add_bool("skip_bad_lines", false, "skip and count malformed data lines instead of stopping");
  s.add_string("chat_template", "auto", "how prompts become tokens: auto (the model's own template, "
                                        "recognised) or a registered one; its stop tokens end each reply");
}

StagePrompts load_stage_prompts(const Settings& s, const std::string& stage, const Tokenizer& tokenizer,
                                const ChatTemplate& chat_template, int64_t block_size, int64_t max_new_tokens) {
  const int64_t max_prompt = block_size - max_new_tokens;
  if (max_prompt < 1)
    throw std::runtime_error(s.where("max_new_tokens") + ": " + std::to_string(max_new_tokens) +
                             " leaves no room for a prompt in the model's block_size " + std::to_string(block_size));
  const bool skip = s.get_bool("skip_bad_lines");
  const std::string format = s.get_string("prompt_format");
  StagePrompts out;
  const std::string train_file = s.get_string("prompts");
  out.train = load_prompt_set(train_file, skip, tokenizer, chat_template, max_prompt, format);
  log_line(stage, describe_prompt_set("prompts", train_file, out.train));
  const std::string eval_file = s.get_string("eval_prompts");
  if (!eval_file.empty()) {
    out.eval = load_prompt_set(eval_file, skip, tokenizer, chat_template, max_prompt, format);
    log_line(stage, describe_prompt_set("eval prompts", eval_file, *out.eval));
  }
  if (format != kPromptSlot) log_line(stage, "prompt format: " + format);
  return out;
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
