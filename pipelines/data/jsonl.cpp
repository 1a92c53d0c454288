// JSONL records: read line by line, checked, with file:line errors (see jsonl.h).
#include "pipelines/data/jsonl.h"

#include <fstream>

#include "modules/core/json_file.h"
#include "pipelines/runtime/log.h"

namespace nurture {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- JSONL ------------------------------------------------------------------------------------------

// Reads the next line into `line` (without its newline); false at the end of the file. A line of
// more than `max` bytes is read past, not stored: *too_long is set and `line` holds its start.
static bool read_line(std::istream& in, std::string& line, size_t max, bool* too_long) {
  line.clear();
  *too_long = false;
  std::streambuf* buffer = in.rdbuf();
  for (;;) {
    const int c = buffer->sbumpc();
    if (c == std::char_traits<char>::eof()) return !line.empty() || *too_long;
    if (c == '\n') return true;
    if (line.size() < max) line.push_back(static_cast<char>(c));
    else *too_long = true;
  }
}

ReadStats for_each_jsonl(const fs::path& file, bool skip_bad_lines,
                         const std::function<void(const json&, const std::string&)>& fn) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": cannot read (does the file exist?)");
  if (fs::is_directory(file)) throw std::runtime_error(file.string() + ": is a directory, not a JSONL file");
  ReadStats stats;
  std::string line;
  bool too_long = false;
  for (int64_t number = 1; read_line(in, line, kMaxJsonlLineBytes, &too_long); ++number) {
    if (!too_long && line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ++stats.lines;
    const std::string where = file.string() + ":" + std::to_string(number);
    std::string problem;
    try {
      if (too_long)
        throw std::invalid_argument("line longer than " + std::to_string(kMaxJsonlLineBytes >> 20) +
                                    " MiB (one record per line; is this a JSONL file?)");
      if (const int64_t at = json_too_deep_at(line, kMaxJsonlDepth); at >= 0)
        throw std::invalid_argument("nested deeper than " + std::to_string(kMaxJsonlDepth) + " levels (at byte " +
                                    std::to_string(at) + ")");
      const json record = json::parse(line);
      if (!record.is_object()) throw std::invalid_argument("expected a JSON object, got " + std::string(record.type_name()));
      fn(record, where);
      continue;
    } catch (const json::parse_error& e) {
      problem = "not valid JSON (" + std::string(e.what()).substr(std::string(e.what()).find(' ') + 1) + ")";
    } catch (const json::exception& e) {
      problem = e.what();
    } catch (const std::invalid_argument& e) {
      problem = e.what();
    }
    problem = escape_invalid_utf8(problem);  // the parser's message quotes the bad bytes
    if (!skip_bad_lines)
      throw std::runtime_error(where + ": " + problem + " (skip_bad_lines: true skips such lines)");
    if (stats.skipped < 3) warn_line("data", where + ": skipped: " + problem);
    ++stats.skipped;
  }
  if (in.bad()) throw std::runtime_error(file.string() + ": read error");
  return stats;
}

std::string string_field(const json& record, const std::string& key) {
  auto it = record.find(key);
  if (it == record.end()) throw std::invalid_argument("missing key \"" + key + "\"");
  if (!it->is_string()) throw std::invalid_argument("\"" + key + "\": expected a string, got " + it->type_name());
  return it->get<std::string>();
}

static std::vector<Message> messages_from(const json& list, const std::string& key) {
  if (!list.is_array() || list.empty())
    throw std::invalid_argument("\"" + key + "\": expected a non-empty list of {role, content}");
  std::vector<Message> messages;
  for (size_t i = 0; i < list.size(); ++i) {
    const json& m = list[i];
    if (!m.is_object())
      throw std::invalid_argument("\"" + key + "\"[" + std::to_string(i) + "]: expected {role, content}");
    try {
      messages.push_back({string_field(m, "role"), string_field(m, "content")});
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("\"" + key + "\"[" + std::to_string(i) + "]: " + e.what());
    }
  }
  validate_messages(messages);
  return messages;
}

std::vector<Message> prompt_messages(const json& prompt) {
  if (prompt.is_string()) return {{"user", prompt.get<std::string>()}};
  return messages_from(prompt, "prompt");
}

// ---- datasets: record formats ---------------------------------------------------------------------

std::vector<Message> chat_record_to_messages(const json& record) {
  if (record.contains("messages")) return messages_from(record["messages"], "messages");
  if (!record.contains("prompt"))
    throw std::invalid_argument("expected \"messages\" or \"prompt\" and \"response\"");
  std::vector<Message> messages;
  if (record.contains("system")) messages.push_back({"system", string_field(record, "system")});
  for (auto& m : prompt_messages(record["prompt"])) messages.push_back(std::move(m));
  messages.push_back({"assistant", string_field(record, "response")});
  return messages;
}

std::vector<Message> alpaca_record_to_messages(const json& record) {
  std::string user = string_field(record, "instruction");
  if (record.contains("input")) {
    const std::string input = string_field(record, "input");
    if (!input.empty()) user += "\n\n" + input;
  }
  return {{"user", user}, {"assistant", string_field(record, "output")}};
}

// ---- preferences, prompts, in-context tasks ---------------------------------------------------------

template <class T>
static std::vector<T> non_empty(std::vector<T> items, const fs::path& file) {
  if (items.empty()) throw std::runtime_error(file.string() + ": no usable example (the data set is empty)");
  return items;
}

std::vector<PreferenceExample> load_preferences(const fs::path& file, bool skip_bad_lines, ReadStats* stats) {
  std::vector<PreferenceExample> out;
  int64_t identical = 0;  // pairs whose two replies are the same: they teach nothing
  std::string first_identical;
  ReadStats s = for_each_jsonl(file, skip_bad_lines, [&](const json& r, const std::string& where) {
    if (!r.contains("prompt")) throw std::invalid_argument("missing key \"prompt\"");
    out.push_back({prompt_messages(r["prompt"]), string_field(r, "chosen"), string_field(r, "rejected")});
    if (out.back().chosen == out.back().rejected && identical++ == 0) first_identical = where;
  });
  if (identical > 0)
    warn_line("data", first_identical + ": chosen and rejected are the same reply, which teaches nothing (" +
                          std::to_string(identical) + " such pair" + (identical > 1 ? "s" : "") + " in the file)");
  if (stats) *stats = s;
  return non_empty(std::move(out), file);
}

// A prompt line's reference answer: "reference", or "answer" as math data sets call it (a number is
// taken as JSON writes it: 42, -3.5).
static std::string prompt_reference(const json& r) {
  if (r.contains("reference") && r.contains("answer"))
    throw std::invalid_argument("both \"reference\" and \"answer\": give the reference answer once");
  const char* key = r.contains("answer") ? "answer" : "reference";
  if (!r.contains(key)) return "";
  if (r[key].is_number()) return r[key].dump();
  return string_field(r, key);
}

std::vector<PromptExample> load_prompts(const fs::path& file, bool skip_bad_lines, ReadStats* stats) {
  std::vector<PromptExample> out;
  ReadStats s = for_each_jsonl(file, skip_bad_lines, [&](const json& r, const std::string&) {
    if (!r.contains("prompt")) throw std::invalid_argument("missing key \"prompt\"");
    out.push_back({prompt_messages(r["prompt"]), prompt_reference(r)});
  });
  if (stats) *stats = s;
  return non_empty(std::move(out), file);
}

std::vector<IclExample> load_icl_tasks(const fs::path& file, bool skip_bad_lines) {
  std::vector<IclExample> out;
  for_each_jsonl(file, skip_bad_lines, [&](const json& r, const std::string&) {
    out.push_back({string_field(r, "input"), string_field(r, "target"),
                   r.contains("task") ? string_field(r, "task") : "default"});
  });
  return non_empty(std::move(out), file);
}

}  // namespace nurture
