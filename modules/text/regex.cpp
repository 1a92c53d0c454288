// PCRE2 patterns (see regex.h).
#include "modules/text/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace nurture {

namespace {

std::string pcre2_message(int error) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(error, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}

using MatchData = std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)>;

MatchData match_data(const pcre2_code* code) {
  return MatchData(pcre2_match_data_create_from_pattern(code, nullptr), &pcre2_match_data_free);
}

}  // namespace

size_t utf8_length_at(const std::string& text, size_t i) {
  const uint8_t b0 = static_cast<uint8_t>(text[i]);
  return b0 < 0x80 ? 1 : (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xE ? 3 : 4;
}

Regex::Regex(const std::string& pattern, RegexOptions options, const std::string& where) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  uint32_t flags = PCRE2_UTF;
  if (options.literal) {
    flags |= PCRE2_LITERAL;
  } else {
    flags |= PCRE2_UCP;
    if (options.multiline) flags |= PCRE2_MULTILINE;
    if (options.dot_all) flags |= PCRE2_DOTALL;
  }
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), flags, &error, &offset,
                        nullptr);
  if (code_ == nullptr) {
    throw std::runtime_error(where + ": the regex " + nlohmann::json(pattern).dump() + " does not compile: " +
                             pcre2_message(error) + " at offset " + std::to_string(offset));
  }
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // optional: without it, the interpreter
}

Regex::~Regex() { pcre2_code_free(code_); }

std::vector<Span> Regex::find_all(const std::string& text) const {
  std::vector<Span> out;
  MatchData data = match_data(code_);
  size_t last_end = 0;
  size_t last_match_end = std::string::npos;
  while (last_end <= text.size()) {
    Span m;
    if (!search(text, last_end, 0, data.get(), m)) break;
    if (m.first == m.second && last_end == last_match_end) {
      last_end += last_end < text.size() ? utf8_length_at(text, last_end) : 1;
      continue;
    }
    last_end = last_match_end = m.second;
    out.push_back(m);
  }
  return out;
}

bool Regex::matches_at_start(const std::string& text) const {
  MatchData data = match_data(code_);
  Span m;
  return search(text, 0, 0, data.get(), m) && m.first == 0;
}

bool Regex::matches_whole(const std::string& text) const {
  MatchData data = match_data(code_);
  Span m;
  return search(text, 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED, data.get(), m);
}

bool Regex::search(const std::string& text, size_t start, uint32_t options, pcre2_match_data* data,
                   Span& m) const {
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  options |= PCRE2_NO_UTF_CHECK;
  int rc = pcre2_match(code_, subject, text.size(), start, options, data, nullptr);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // a deep backtrack: the interpreter's heap is larger
    rc = pcre2_match(code_, subject, text.size(), start, options | PCRE2_NO_JIT, data, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) throw std::runtime_error("regex match failed: " + pcre2_message(rc));
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
  m = {ovector[0], ovector[1]};
  return true;
}

}  // namespace nurture
