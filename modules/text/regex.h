// Regex: a compiled PCRE2 pattern over UTF-8 text, for what the standard library's std::regex
// cannot do safely (it recurses per character and overflows the stack on a long reply) or at all
// (\p{L}). Used by the tokenizer.json pre-tokenizers (modules/text/byte_level_bpe.cpp) and by the
// `format` reward function (pipelines/rl/reward_functions.cpp).
#pragma once
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

struct pcre2_real_code_8;
struct pcre2_real_match_data_8;

namespace nurture {

// Byte offsets [first, second) of a match.
using Span = std::pair<size_t, size_t>;

// The byte length of the UTF-8 character that starts at text[i].
size_t utf8_length_at(const std::string& text, size_t i);

struct RegexOptions {
  bool literal = false;    // the pattern is plain text
  bool multiline = true;   // ^ and $ match at every line (Oniguruma's Ruby syntax, the tokenizers')
  bool dot_all = false;    // . matches a newline too
};

class Regex {
 public:
  // `where` (e.g. "x.json: pre_tokenizer.pattern.Regex") starts a compile error, a
  // std::runtime_error that names the pattern, PCRE2's reason and the offset.
  Regex(const std::string& pattern, RegexOptions options, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // The matches in `text` (valid UTF-8), in order, as Oniguruma's find_iter gives them: after an
  // empty match, the next search starts one character later.
  std::vector<Span> find_all(const std::string& text) const;
  // A match that starts at text[0].
  bool matches_at_start(const std::string& text) const;
  // A match of all of `text`, from its first byte to its last.
  bool matches_whole(const std::string& text) const;

 private:
  bool search(const std::string& text, size_t start, uint32_t options, pcre2_real_match_data_8* data,
              Span& m) const;

  pcre2_real_code_8* code_ = nullptr;
};

}  // namespace nurture
