// load_preference_data() and pair_batch(): preference pairs as tokens; a stage's splits.
#include "pipelines/data/preference_data.h"

#include <algorithm>
#include <stdexcept>

#include "pipelines/runtime/log.h"

namespace nurture {

namespace fs = std::filesystem;

// prompt + reply through the template; false when the reply's turn alone exceeds max_length,
// else the start of the prompt is cut until the whole fits (*truncated set).
static bool render_side(const ChatTemplate& chat_template, const Tokenizer& tokenizer,
                 const std::vector<Message>& prompt, const std::string& reply, int64_t max_length,
                 TokenizedExample* out, bool* truncated) {
  std::vector<Message> messages = prompt;
  messages.push_back({"assistant", reply});
  RenderedChat chat = chat_template.render(tokenizer, messages, /*add_generation_prompt=*/false);
  const auto prompt_ids = chat_template.render(tokenizer, prompt, /*add_generation_prompt=*/false).ids;
  if (prompt_ids.size() > chat.ids.size() ||
      !std::equal(prompt_ids.begin(), prompt_ids.end(), chat.ids.begin()))
    throw std::logic_error("chat template '" + chat_template.name() +
                           "' renders a prompt differently on its own than before a reply");
  std::fill(chat.loss_mask.begin(), chat.loss_mask.begin() + prompt_ids.size(), 0);
  const auto length = static_cast<int64_t>(chat.ids.size());
  const auto reply_length = length - static_cast<int64_t>(prompt_ids.size());
  if (reply_length >= max_length) return false;
  if (length > max_length) {
    chat.ids.erase(chat.ids.begin(), chat.ids.end() - max_length);
    chat.loss_mask.erase(chat.loss_mask.begin(), chat.loss_mask.end() - max_length);
    *truncated = true;
  }
  *out = {std::move(chat.ids), std::move(chat.loss_mask)};
  return true;
}

PreferenceData load_preference_data(const fs::path& file, const Tokenizer& tokenizer,
                                    const ChatTemplate& chat_template, int64_t max_length,
                                    bool skip_bad_lines) {
  PreferenceData data;
  for (const auto& example : load_preferences(file, skip_bad_lines, &data.stats)) {
    TokenizedPair pair;
    bool truncated = false;
    if (!render_side(chat_template, tokenizer, example.prompt, example.chosen, max_length, &pair.chosen,
                     &truncated) ||
        !render_side(chat_template, tokenizer, example.prompt, example.rejected, max_length,
                     &pair.rejected, &truncated)) {
      ++data.dropped;
      continue;
    }
    data.truncated += truncated;
    data.pairs.push_back(std::move(pair));
  }
  if (data.pairs.empty())
    throw std::runtime_error(file.string() + ": no pair fits max_length " + std::to_string(max_length) +
                             " (" + std::to_string(data.dropped) + " dropped as too long)");
  return data;
}

// B pairs as one [2B, T] batch: rows [0, B) the chosen sides, [B, 2B) the rejected ones.
PaddedBatch pair_batch(const std::vector<const TokenizedPair*>& pairs, int64_t pad_id,
                       const torch::Device& device) {
  std::vector<const TokenizedExample*> sides;
  for (const auto* p : pairs) sides.push_back(&p->chosen);
  for (const auto* p : pairs) sides.push_back(&p->rejected);
  return right_pad(sides, pad_id, device);
}

// ---- a stage's preference data ---------------------------------------------------------------------

void add_preference_data_fields(Schema& s) {
  s.add_string("train", "", "JSONL preference pairs {prompt, chosen, rejected}; prompt is a string "
                            "or a list of {role, content} messages")
      .must_be_required();
  s.add_string("val", "", "held-out pairs in the same format (optional)");
  s.add_string("chat_template", "auto", "how prompt and reply become tokens: auto (the model's own template, recognised), chatml, qwen3, llama3, llama3.1, transcript (base models) or a plugin's");
  s.add_int("max_length", 256, "tokens per prompt + reply (capped at the model's block_size); a "
                               "longer pair loses the start of its prompt, or is dropped when its "
                               "reply alone does not fit")
      .at_least(8);
  s.add_bool("skip_bad_lines", false, "skip (and count) malformed lines instead of stopping");
}

void PreferenceSplits::add_counts(nlohmann::json& metrics) const {
  metrics["train_pairs"] = train.pairs.size();
  metrics["truncated"] = train.truncated;
  metrics["dropped"] = train.dropped;
  metrics["skipped_lines"] = train.stats.skipped;
}

std::vector<const TokenizedPair*> PreferenceSplits::val_pairs(int64_t first, int64_t last) const {
  std::vector<const TokenizedPair*> pairs;
  for (int64_t i = first; i < last; ++i) pairs.push_back(&val.pairs[i]);
  return pairs;
}

PreferenceSplits read_preference_splits(const Settings& s, const std::string& component,
                                        const Tokenizer& tokenizer,
                                        std::shared_ptr<const ChatTemplate> chat_template,
                                        int64_t block_size) {
  PreferenceSplits data;
  data.chat_template = std::move(chat_template);
  data.pad_id = std::max<int64_t>(tokenizer.pad_id(), 0);
  int64_t max_length = s.get_int("max_length");
  if (max_length > block_size) {
    log_line(component, "max_length " + std::to_string(max_length) + " exceeds the model's block_size; using " +
                            std::to_string(block_size));
    max_length = block_size;
  }
  const bool skip = s.get_bool("skip_bad_lines");
  data.train = load_preference_data(s.get_string("train"), tokenizer, *data.chat_template, max_length, skip);
  log_line(component, "data: " + std::to_string(data.train.pairs.size()) + " pairs (" +
                          std::to_string(data.train.truncated) + " prompts cut on the left, " +
                          std::to_string(data.train.dropped) + " dropped as too long, " +
                          std::to_string(data.train.stats.skipped) + " bad lines skipped)");
  if (!s.get_string("val").empty()) {
    data.val = load_preference_data(s.get_string("val"), tokenizer, *data.chat_template, max_length, skip);
    log_line(component, "held out: " + std::to_string(data.val.pairs.size()) + " pairs (" +
                            std::to_string(data.val.dropped) + " dropped as too long)");
  }
  return data;
}

}  // namespace nurture
