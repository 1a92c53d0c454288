// The JSONL records users bring, read and checked: chat examples (in a registered format),
// preference pairs, prompts for PPO and evaluation, in-context tasks.
//
// Every reader stops at a malformed line with `file:line: what is wrong` (std::runtime_error), or,
// with skip_bad_lines, skips it and counts it: not JSON, not valid UTF-8, a missing or mistyped
// field, a line longer than kMaxJsonlLineBytes. A file with no usable example is an error.
//
// No LibTorch here: these readers are fuzzing targets (tests/fuzz/).
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "modules/text/message.h"

namespace nurture {

// ---- JSONL ------------------------------------------------------------------------------------------

struct ReadStats {
  int64_t lines = 0;    // non-empty lines read
  int64_t skipped = 0;  // malformed lines skipped (skip_bad_lines)
};

// The longest line a reader takes (a longer one is a bad line, read past without storing it).
inline constexpr size_t kMaxJsonlLineBytes = size_t{64} << 20;
// The deepest nesting a record may have (records nest two or three levels).
inline constexpr int kMaxJsonlDepth = 32;

// Calls fn(record, where) for every non-empty line of a JSONL file; `where` is "file:line". A
// line that is not a JSON object, or for which fn throws std::invalid_argument, is an error
// `file:line: what` — or is skipped and counted when skip_bad_lines.
ReadStats for_each_jsonl(const std::filesystem::path& file, bool skip_bad_lines,
                         const std::function<void(const nlohmann::json&, const std::string&)>& fn);

// A string field of a record; std::invalid_argument naming the key when missing or not a string.
std::string string_field(const nlohmann::json& record, const std::string& key);

// `prompt` as a string (one user turn) or as messages ([{role, content}, ...]).
std::vector<Message> prompt_messages(const nlohmann::json& prompt);

// ---- record formats -----------------------------------------------------------------------------

// A dataset format turns one JSONL record into a conversation. Registered by name in
// dataset_format_registry(); built in: "chat" ({messages: [...]} or {prompt, response[, system]})
// and "alpaca" ({instruction, input, output}). Throws std::invalid_argument on a bad record.
using ChatFormat = std::function<std::vector<Message>(const nlohmann::json&)>;

std::vector<Message> chat_record_to_messages(const nlohmann::json& record);
std::vector<Message> alpaca_record_to_messages(const nlohmann::json& record);

// ---- preferences, prompts, in-context tasks ---------------------------------------------------------

struct PreferenceExample {
  std::vector<Message> prompt;
  std::string chosen, rejected;  // assistant replies
};
std::vector<PreferenceExample> load_preferences(const std::filesystem::path& file,
                                                bool skip_bad_lines, ReadStats* stats = nullptr);

struct PromptExample {
  std::vector<Message> prompt;
  std::string reference;  // optional reference answer: the line's "reference" or "answer" ("" when absent)
};
std::vector<PromptExample> load_prompts(const std::filesystem::path& file, bool skip_bad_lines,
                                        ReadStats* stats = nullptr);

// In-context learning: {input, target[, task]}; k-shot prompts are built from examples of the
// same task.
struct IclExample {
  std::string input, target, task;
};
std::vector<IclExample> load_icl_tasks(const std::filesystem::path& file, bool skip_bad_lines);

}  // namespace nurture
