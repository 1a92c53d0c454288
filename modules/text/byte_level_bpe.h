// A Hugging Face `tokenizer.json` of the byte-level BPE family (GPT-2, Llama 3, Qwen2, ...), read
// and run with the same results as the `tokenizers` library (checked against fixtures it wrote:
// tests/fixtures/hf/tokenizers/, tools/hf/make_tokenizer_fixtures.py).
//
// encode() does what tokenizers' Tokenizer.encode(text, add_special_tokens=False) does:
//   1. added tokens are cut out of the raw text (leftmost, longest first), those with
//      normalized=false first, then, in what is left and normalized, those with normalized=true;
//      lstrip / rstrip take the whitespace beside a token into it, single_word skips a match
//      inside a word;
//   2. the rest is normalized (none, NFC), pre-tokenized (ByteLevel with or without GPT-2's
//      regex, Split by a regex or a string with any behaviour, Digits, WhitespaceSplit, or a
//      Sequence of them), each piece's UTF-8 bytes mapped to GPT-2's printable characters;
//   3. each piece is merged by BPE, lowest merge rank first (ignore_merges: a piece that is
//      itself in the vocabulary comes out whole).
// The post-processor's tokens (a BOS from TemplateProcessing) are not added: prefix_ids() and
// suffix_ids() say what they are, and the caller decides.
//
// Anything else a tokenizer.json can say (another model, normalizer, pre-tokenizer or decoder,
// byte_fallback, dropout, subword prefixes, truncation, padding) is a std::runtime_error
// "<source>: <json path>: <what>" when it is loaded, never a silently different tokenization.
// One ByteLevelBpe is immutable and may be used from several threads at once; copies share it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace nurture {

// The largest tokenizer.json accepted, and the deepest nesting of its JSON.
inline constexpr size_t kMaxTokenizerJsonBytes = size_t{64} << 20;
inline constexpr int kMaxTokenizerJsonDepth = 64;

class ByteLevelBpe {
 public:
  // Parses the bytes of a tokenizer.json; `source` (its path) starts every error message, e.g.
  // `x/tokenizer.json: normalizer: type "NFKC" is not supported (supported: none, NFC, Sequence)`.
  static ByteLevelBpe from_json(const std::string& json_text, const std::string& source);
  // Reads the file (a missing or unreadable one is a std::runtime_error naming it).
  static ByteLevelBpe load(const std::string& path);

  // allow_special: added tokens with special=true in `text` become their ids. Otherwise they are
  // ordinary text (a user typing "<|im_start|>" gets the ids of those characters), as the
  // library's encode_special_tokens=True; non-special added tokens match either way. Text that is
  // not valid UTF-8 is a std::invalid_argument.
  std::vector<int64_t> encode(const std::string& text, bool allow_special) const;
  // The bytes of the tokens (GPT-2's mapping undone; added tokens as their text), concatenated as
  // they are: the bytes of a partial UTF-8 sequence are kept, not replaced by U+FFFD (the library
  // replaces them), so decoding the ids of a text piece by piece and joining gives the text.
  // decode(encode(s)) == s for valid UTF-8 s (after normalization, when there is one).
  // skip_special drops special added tokens. An id without a token is a std::out_of_range.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special) const;

  int64_t vocab_size() const;                        // max id + 1 over the vocab and added tokens
  int64_t token_id(const std::string& token) const;  // -1 if neither has it
  // The token's string (an added token with normalized=true: its normalized form, as the library's
  // id_to_token gives it); std::out_of_range for an unknown id.
  std::string token(int64_t id) const;
  bool is_special(int64_t id) const;  // an added token with special=true
  // What the post-processor puts before and after a single sequence (Llama 3: <|begin_of_text|>
  // before). Empty without one, or with ByteLevel only.
  const std::vector<int64_t>& prefix_ids() const;
  const std::vector<int64_t>& suffix_ids() const;
  const std::string& source() const;

 private:
  struct Model;
  explicit ByteLevelBpe(std::shared_ptr<const Model> model);

  std::shared_ptr<const Model> model_;  // immutable; copies share it
};

// Unicode Normalization Form C of UTF-8 text (tables of modules/text/unicode_nfc_data.h). Text that
// is not valid UTF-8 is a std::invalid_argument.
std::string nfc(const std::string& text);

}  // namespace nurture
