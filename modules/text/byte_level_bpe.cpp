// ByteLevelBpe: reads a tokenizer.json into a fixed pipeline (added tokens, NFC, pre-tokenizer
// steps, BPE) and runs it the way the `tokenizers` library (0.23) does, step for step: the
// comments name the library function each part mirrors. Regexes are PCRE2 (UTF + UCP), which
// accepts the patterns of these tokenizers (written for Oniguruma) with the same meaning.
#include "modules/text/byte_level_bpe.h"


#include <algorithm>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <queue>
#include <stdexcept>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "modules/core/json_file.h"
#include "modules/text/regex.h"
#include "modules/text/unicode_nfc_data.h"

namespace nurture {

namespace bpe_internal {

using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// UTF-8

// The code point at text[i] (advancing i), or false for an invalid sequence (overlong, surrogate,
// beyond U+10FFFF, truncated).
bool next_code_point(const std::string& text, size_t& i, uint32_t& cp) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(text[k]); };
  const uint8_t b0 = byte(i);
  size_t len = b0 < 0x80           ? 1
               : (b0 >> 5) == 0x6  ? 2
               : (b0 >> 4) == 0xE  ? 3
               : (b0 >> 3) == 0x1E ? 4
                                   : 0;
  if (len == 0 || i + len > text.size()) return false;
  cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return false;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
  i += len;
  return true;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// The code points of `text`; std::invalid_argument naming `what` and the byte offset if invalid.
std::vector<uint32_t> code_points(const std::string& text, const char* what) {
  std::vector<uint32_t> out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    if (!next_code_point(text, i, cp)) {
      throw std::invalid_argument(std::string("byte_level_bpe: ") + what +
                                  ": not valid UTF-8 at byte " + std::to_string(i));
    }
    out.push_back(cp);
  }
  return out;
}

// Unicode White_Space: what Rust's char::is_whitespace and regex `\s` match.
bool is_white_space(uint32_t cp) {
  return (cp >= 0x9 && cp <= 0xD) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// ---------------------------------------------------------------------------------------------
// NFC (UAX #15): full canonical decomposition, canonical ordering, canonical composition.

namespace ud = unicode_data;

constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount;
constexpr uint32_t kSCount = kLCount * kNCount;

uint8_t combining_class(uint32_t cp) {
  const auto* end = std::end(ud::kCombiningClasses);
  const auto* it =
      std::upper_bound(std::begin(ud::kCombiningClasses), end, cp,
                       [](uint32_t c, const ud::CombiningClassRun& r) { return c < r.first; });
  if (it == std::begin(ud::kCombiningClasses)) return 0;
  --it;
  return cp <= it->last ? it->combining_class : 0;
}

const ud::Decomposition* decomposition(uint32_t cp) {
  const auto* end = std::end(ud::kDecompositions);
  const auto* it =
      std::lower_bound(std::begin(ud::kDecompositions), end, cp,
                       [](const ud::Decomposition& d, uint32_t c) { return d.code_point < c; });
  return it != end && it->code_point == cp ? it : nullptr;
}

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const ud::Decomposition* d = decomposition(cp);
  if (d == nullptr) {
    out.push_back(cp);
    return;
  }
  decompose(d->first, out);
  if (d->second != 0) decompose(d->second, out);
}

// The primary composite of (a, b), or 0.
uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  static const std::unordered_map<uint64_t, uint32_t> composites = [] {
    std::unordered_map<uint64_t, uint32_t> m;
    for (const auto& d : ud::kDecompositions) {
      if (d.composes) m.emplace((uint64_t{d.first} << 32) | d.second, d.code_point);
    }
    return m;
  }();
  const auto it = composites.find((uint64_t{a} << 32) | b);
  return it == composites.end() ? 0 : it->second;
}

std::vector<uint32_t> compose_all(const std::vector<uint32_t>& cps) {
  std::vector<uint32_t> out;
  out.reserve(cps.size());
  int64_t starter = -1;
  int last_class = -1;  // of the last character kept after the starter; -1: none
  for (uint32_t c : cps) {
    const int cc = combining_class(c);
    if (starter >= 0 && !(last_class != -1 && last_class >= cc)) {
      if (const uint32_t composite = compose(out[static_cast<size_t>(starter)], c)) {
        out[static_cast<size_t>(starter)] = composite;
        continue;
      }
    }
    if (cc == 0) {
      starter = static_cast<int64_t>(out.size());
      last_class = -1;
    } else {
      last_class = cc;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace bpe_internal

using namespace bpe_internal;  // NOLINT(google-build-using-namespace): this file's own helpers

std::string nfc(const std::string& text) {
  const std::vector<uint32_t> cps = code_points(text, "nfc");
  // Below U+0300 (UTF-8 lead bytes below 0xCC) nothing decomposes or combines.
  if (std::all_of(cps.begin(), cps.end(), [](uint32_t c) { return c < 0x300; })) return text;
  std::vector<uint32_t> decomposed;
  decomposed.reserve(cps.size());
  for (uint32_t c : cps) decompose(c, decomposed);
  // Canonical ordering: a stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < decomposed.size();) {
    if (combining_class(decomposed[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < decomposed.size() && combining_class(decomposed[j]) != 0) ++j;
    std::stable_sort(
        decomposed.begin() + static_cast<std::ptrdiff_t>(i),
        decomposed.begin() + static_cast<std::ptrdiff_t>(j),
        [](uint32_t a, uint32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  std::string out;
  out.reserve(text.size());
  for (uint32_t c : compose_all(decomposed)) append_utf8(out, c);
  return out;
}

namespace bpe_internal {

// ---------------------------------------------------------------------------------------------
// GPT-2's bytes_to_unicode: every byte a printable character (pre_tokenizers/byte_level.rs).

struct ByteMap {
  std::string byte_to_char[256];
  std::unordered_map<uint32_t, uint8_t> char_to_byte;

  ByteMap() {
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cp = printable ? b : 256 + n++;
      append_utf8(byte_to_char[b], cp);
      char_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

std::string map_bytes(const std::string& piece) {
  std::string out;
  out.reserve(piece.size() * 2);
  for (unsigned char b : piece) out += byte_map().byte_to_char[b];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Regexes (modules/text/regex.h)

// GPT-2's pre-tokenizer regex, which ByteLevel(use_regex=true) uses.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Rust regex's \w (added_vocabulary.rs's single_word test) and char::is_whitespace.
constexpr const char* kWordCharPattern = R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}])";
constexpr const char* kWhiteSpacePattern =
    R"([\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}])";

// A pattern that PCRE2 would read differently from Oniguruma's Ruby syntax: "(?m)" (Ruby: dot
// matches newline), "(?s)" (no such flag in Ruby), "\h" (Ruby: a hex digit). Empty if none.
std::string onig_only_construct(const std::string& pattern) {
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size()) {
      if (pattern[i + 1] == 'h' || pattern[i + 1] == 'H') return pattern.substr(i, 2);
      ++i;
    } else if (pattern.compare(i, 2, "(?") == 0) {
      size_t j = i + 2;
      while (j < pattern.size() && std::string("imsx-").find(pattern[j]) != std::string::npos) ++j;
      const std::string flags = pattern.substr(i + 2, j - i - 2);
      if (flags.find_first_of("ms") != std::string::npos) return pattern.substr(i, j - i + 1);
    }
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// Splitting (NormalizedString::split and its SplitDelimiterBehavior)

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// The whole of `text` as spans, each flagged as a match of `regex` or not (Pattern::find_matches).
std::vector<std::pair<Span, bool>> find_matches(const Regex& regex, const std::string& text,
                                                bool invert) {
  std::vector<std::pair<Span, bool>> out;
  if (text.empty()) return {{{0, 0}, invert}};
  size_t prev = 0;
  for (const Span& m : regex.find_all(text)) {
    if (prev != m.first) out.push_back({{prev, m.first}, invert});
    out.push_back({m, !invert});
    prev = m.second;
  }
  if (prev != text.size()) out.push_back({{prev, text.size()}, invert});
  return out;
}

// The pieces `text` splits into (empty ones dropped, as PreTokenizedString::split does).
std::vector<std::string> split(const std::string& text, const Regex& regex, Behavior behavior,
                               bool invert) {
  const auto matches = find_matches(regex, text, invert);
  std::vector<std::pair<Span, bool>> kept;  // span, removed
  bool previous_match = false;
  if (behavior == Behavior::kMergedWithNext) {
    for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
      if (it->second && !previous_match && !kept.empty()) {
        kept.back().first.first = it->first.first;
      } else {
        kept.push_back({it->first, false});
      }
      previous_match = it->second;
    }
    std::reverse(kept.begin(), kept.end());
  } else {
    for (const auto& [span, is_match] : matches) {
      const bool merge = behavior == Behavior::kContiguous           ? is_match == previous_match
                         : behavior == Behavior::kMergedWithPrevious ? is_match && !previous_match
                                                                     : false;
      if (merge && !kept.empty()) {
        kept.back().first.second = span.second;
      } else {
        kept.push_back({span, behavior == Behavior::kRemoved && is_match});
      }
      previous_match = is_match;
    }
  }
  std::vector<std::string> out;
  for (const auto& [span, removed] : kept) {
    if (!removed && span.second > span.first)
      out.push_back(text.substr(span.first, span.second - span.first));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// JSON access with error messages "<source>: <path>: <what>"

class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& path, const std::string& what) const {
    throw std::runtime_error(source_ + ": " + path + ": " + what);
  }
  std::string where(const std::string& path) const { return source_ + ": " + path; }

  const json& field(const json& object, const std::string& key, const std::string& path) const {
    if (!object.is_object()) fail(path, "expected an object, got " + kind(object));
    const auto it = object.find(key);
    if (it == object.end()) fail(path, "missing \"" + key + "\"");
    return *it;
  }
  std::string string(const json& object, const std::string& key, const std::string& path) const {
    const json& v = field(object, key, path);
    if (!v.is_string()) fail(path + "." + key, "expected a string, got " + kind(v));
    return v.get<std::string>();
  }
  bool boolean(const json& object, const std::string& key, const std::string& path,
               bool fallback) const {
    if (!object.contains(key)) return fallback;
    const json& v = object.at(key);
    if (!v.is_boolean()) fail(path + "." + key, "expected true or false, got " + kind(v));
    return v.get<bool>();
  }
  int64_t id(const json& v, const std::string& path) const {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX) {
      fail(path, "expected a token id (an integer from 0 to 2^31-1), got " + v.dump());
    }
    return v.get<int64_t>();
  }
  const json& array(const json& object, const std::string& key, const std::string& path) const {
    const json& v = field(object, key, path);
    if (!v.is_array()) fail(path + "." + key, "expected a list, got " + kind(v));
    return v;
  }
  // The "type" of a component, which must be one of `supported` (listed in the message).
  // `nullable`: the message lists "none" (null) too.
  std::string type(const json& object, const std::string& path, const std::string& supported,
                   bool nullable = false) const {
    if (!object.is_object()) fail(path, "expected an object, got " + kind(object));
    const std::string t = string(object, "type", path);
    const std::string padded = ", " + supported + ",";
    if (padded.find(", " + t + ",") == std::string::npos) {
      fail(path, "type \"" + t + "\" is not supported (supported: " + (nullable ? "none, " : "") +
                     supported + ")");
    }
    return t;
  }
  static std::string kind(const json& v) {
    return v.is_object()    ? "an object"
           : v.is_array()   ? "a list"
           : v.is_string()  ? "a string"
           : v.is_boolean() ? "a boolean"
           : v.is_null()    ? "null"
                            : "a number";
  }

 private:
  std::string source_;
};


// ---------------------------------------------------------------------------------------------
// The model (ByteLevelBpe::Model is this, under the name the header gives it)

struct BpeModel {
  struct AddedToken {
    std::string content, pattern;  // pattern: what matches (normalized content if normalized)
    int64_t id = -1;
    bool special = false, single_word = false, lstrip = false, rstrip = false, normalized = false;
  };
  struct PreTokenizer {
    bool byte_level = false;  // else a split
    bool add_prefix_space = false;
    std::shared_ptr<const Regex> regex;  // a split's, or ByteLevel's (GPT-2's) when use_regex
    Behavior behavior = Behavior::kIsolated;
    bool invert = false;
  };
  struct Merge {
    uint32_t rank;
    int64_t new_id;
  };

  std::string source;
  std::unordered_map<std::string, int64_t> vocab;
  std::unordered_map<int64_t, std::string> vocab_r;
  std::unordered_map<uint64_t, Merge> merges;  // (left id << 32 | right id) -> rank, merged id
  bool ignore_merges = false;
  int64_t unk_id = -1;
  bool fuse_unk = false;

  std::map<int64_t, AddedToken> added;                 // by id (added_tokens_map_r)
  std::unordered_map<std::string, int64_t> added_ids;  // by content (added_tokens_map)
  std::unordered_set<std::string> special_contents;
  // The tokens of each matching pass (normalized=false, normalized=true) by their first byte.
  std::vector<const AddedToken*> raw_tokens[256], normalized_tokens[256];

  bool nfc = false;
  std::vector<PreTokenizer> pre_tokenizers;
  std::vector<int64_t> prefix_ids, suffix_ids;
  int64_t vocab_size = 0;
  std::shared_ptr<const Regex> word_char, white_space;

  // ---- encoding
  struct Piece {
    std::string text;
    int64_t id;  // an added token's, or -1: text still to tokenize
  };
  std::vector<Piece> extract_added(const std::vector<Piece>& pieces, bool normalized_pass,
                                   bool allow_special) const;
  std::vector<std::string> pre_tokenize(const std::string& text) const;
  void bpe(const std::string& word, std::vector<int64_t>& out) const;
};

using Model = BpeModel;

// ---- reading the parts of tokenizer.json

void read_vocab(Model& m, const Reader& r, const json& model) {
  const json& vocab = r.field(model, "vocab", "model");
  if (!vocab.is_object())
    r.fail("model.vocab", "expected an object token -> id, got " + Reader::kind(vocab));
  for (const auto& [token, id_json] : vocab.items()) {
    const int64_t id = r.id(id_json, "model.vocab." + token);
    m.vocab[token] = id;
    if (!m.vocab_r.emplace(id, token).second) {
      r.fail("model.vocab." + token,
             "id " + std::to_string(id) + " is also \"" + m.vocab_r[id] + "\"");
    }
  }
}

void read_merges(Model& m, const Reader& r, const json& model) {
  const json& merges = r.array(model, "merges", "model");
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& e = merges[rank];
    const std::string path = "model.merges[" + std::to_string(rank) + "]";
    std::string a, b;
    if (e.is_string()) {  // "a b", the format before tokenizers 0.20
      const std::string s = e.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        r.fail(path, "expected \"left right\" (one space), got " + e.dump());
      }
      a = s.substr(0, space), b = s.substr(space + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>(), b = e[1].get<std::string>();
    } else {
      r.fail(path, "expected [\"left\", \"right\"] or \"left right\", got " + e.dump());
    }
    for (const std::string& token : {a, b, a + b}) {
      if (!m.vocab.count(token)) r.fail(path, "\"" + token + "\" is not in model.vocab");
    }
    const uint64_t key =
        (static_cast<uint64_t>(m.vocab[a]) << 32) | static_cast<uint64_t>(m.vocab[b]);
    m.merges[key] = {static_cast<uint32_t>(rank),
                     m.vocab[a + b]};  // a repeated pair: the last wins
  }
}

void read_model(Model& m, const Reader& r, const json& model) {
  r.type(model, "model", "BPE");
  read_vocab(m, r, model);
  read_merges(m, r, model);
  if (model.contains("dropout") && !model["dropout"].is_null() &&
      !(model["dropout"].is_number() && model["dropout"].get<double>() == 0.0)) {
    r.fail("model.dropout",
           "BPE dropout " + model["dropout"].dump() + " is not supported (null only)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && !model[key].is_null() && model[key] != "") {
      r.fail(std::string("model.") + key,
             model[key].dump() + " is not supported (null or \"\" only)");
    }
  }
  if (r.boolean(model, "byte_fallback", "model", false)) {
    r.fail("model.byte_fallback", "true is not supported (a byte-level BPE needs none)");
  }
  m.ignore_merges = r.boolean(model, "ignore_merges", "model", false);
  m.fuse_unk = r.boolean(model, "fuse_unk", "model", false);
  if (model.contains("unk_token") && !model["unk_token"].is_null()) {
    const std::string unk = r.string(model, "unk_token", "model");
    if (!m.vocab.count(unk)) r.fail("model.unk_token", "\"" + unk + "\" is not in model.vocab");
    m.unk_id = m.vocab[unk];
  }
}

void read_normalizer(Model& m, const Reader& r, const json& n, const std::string& path) {
  if (n.is_null()) return;
  if (r.type(n, path, "NFC, Sequence", true) == "NFC") {
    m.nfc = true;  // NFC twice is NFC once
    return;
  }
  const json& list = r.array(n, "normalizers", path);
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string p = path + ".normalizers[" + std::to_string(i) + "]";
    if (list[i].is_null()) r.fail(p, "expected an object, got null");
    read_normalizer(m, r, list[i], p);
  }
}

Behavior read_behavior(const Reader& r, const json& p, const std::string& path) {
  static const std::map<std::string, Behavior> kBehaviors = {
      {"Removed", Behavior::kRemoved},
      {"Isolated", Behavior::kIsolated},
      {"MergedWithPrevious", Behavior::kMergedWithPrevious},
      {"MergedWithNext", Behavior::kMergedWithNext},
      {"Contiguous", Behavior::kContiguous}};
  const std::string b = r.string(p, "behavior", path);
  const auto it = kBehaviors.find(b);
  if (it == kBehaviors.end()) {
    r.fail(path + ".behavior", "\"" + b +
                                   "\" is not one of Removed, Isolated, MergedWithPrevious, "
                                   "MergedWithNext, Contiguous");
  }
  return it->second;
}

Model::PreTokenizer read_split(const Reader& r, const json& p, const std::string& path) {
  Model::PreTokenizer step;
  const json& pattern = r.field(p, "pattern", path);
  const bool literal = pattern.is_object() && pattern.contains("String");
  if (!pattern.is_object() || pattern.size() != 1 || !(literal || pattern.contains("Regex"))) {
    r.fail(path + ".pattern",
           "expected {\"Regex\": ...} or {\"String\": ...}, got " + pattern.dump());
  }
  const std::string key = literal ? "String" : "Regex";
  const std::string text = r.string(pattern, key, path + ".pattern");
  if (!literal) {
    const std::string construct = onig_only_construct(text);
    if (!construct.empty()) {
      r.fail(path + ".pattern.Regex", "\"" + construct +
                                          "\" means something else in Oniguruma (the "
                                          "library's regex engine) than in PCRE2: not supported");
    }
  }
  step.regex = std::make_shared<Regex>(text, RegexOptions{literal}, r.where(path + ".pattern." + key));
  step.behavior = read_behavior(r, p, path);
  step.invert = r.boolean(p, "invert", path, false);
  return step;
}

void read_pre_tokenizer(Model& m, const Reader& r, const json& p, const std::string& path) {
  const std::string type = r.type(p, path, "ByteLevel, Split, Digits, WhitespaceSplit, Sequence");
  if (type == "Sequence") {
    const json& list = r.array(p, "pretokenizers", path);
    for (size_t i = 0; i < list.size(); ++i) {
      read_pre_tokenizer(m, r, list[i], path + ".pretokenizers[" + std::to_string(i) + "]");
    }
    return;
  }
  Model::PreTokenizer step;
  if (type == "ByteLevel") {
    step.byte_level = true;
    step.add_prefix_space = r.boolean(p, "add_prefix_space", path, true);
    if (r.boolean(p, "use_regex", path, true))
      step.regex = std::make_shared<Regex>(kGpt2Pattern, RegexOptions{}, "");
  } else if (type == "Split") {
    step = read_split(r, p, path);
  } else if (type == "Digits") {  // char::is_numeric, one match per character
    step.regex = std::make_shared<Regex>(R"(\p{N})", RegexOptions{}, "");
    step.behavior = r.boolean(p, "individual_digits", path, false) ? Behavior::kIsolated
                                                                   : Behavior::kContiguous;
  } else {  // WhitespaceSplit: char::is_whitespace, removed
    step.regex = m.white_space;
    step.behavior = Behavior::kRemoved;
  }
  m.pre_tokenizers.push_back(std::move(step));
}

// TemplateProcessing's "single": the special tokens before and after $A.
void read_template(Model& m, const Reader& r, const json& p, const std::string& path) {
  const json& single = r.array(p, "single", path);
  const json& specials = r.field(p, "special_tokens", path);
  bool seen_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string ip = path + ".single[" + std::to_string(i) + "]";
    const json& piece = single[i];
    if (piece.is_object() && piece.contains("Sequence")) {
      const std::string id = r.string(piece["Sequence"], "id", ip + ".Sequence");
      if (id != "A" || seen_sequence)
        r.fail(ip, "a single sequence template has $A once, got " + piece.dump());
      seen_sequence = true;
    } else if (piece.is_object() && piece.contains("SpecialToken")) {
      const std::string name = r.string(piece["SpecialToken"], "id", ip + ".SpecialToken");
      const std::string sp = path + ".special_tokens." + name;
      if (!specials.is_object() || !specials.contains(name))
        r.fail(sp, "missing (used by " + ip + ")");
      for (const json& id : r.array(specials[name], "ids", sp)) {
        (seen_sequence ? m.suffix_ids : m.prefix_ids).push_back(r.id(id, sp + ".ids"));
      }
    } else {
      r.fail(ip, "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}, got " + piece.dump());
    }
  }
  if (!seen_sequence) r.fail(path + ".single", "has no $A");
}

void read_post_processor(Model& m, const Reader& r, const json& p, const std::string& path) {
  if (p.is_null()) return;
  const std::string type = r.type(p, path, "ByteLevel, TemplateProcessing, Sequence", true);
  if (type == "TemplateProcessing") {
    if (!m.prefix_ids.empty() || !m.suffix_ids.empty()) r.fail(path, "a second TemplateProcessing");
    read_template(m, r, p, path);
  } else if (type == "Sequence") {
    const json& list = r.array(p, "processors", path);
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string ip = path + ".processors[" + std::to_string(i) + "]";
      if (list[i].is_null()) r.fail(ip, "expected an object, got null");
      read_post_processor(m, r, list[i], ip);
    }
  }  // ByteLevel: offsets only
}

// Added tokens get their ids as AddedVocabulary::add_tokens gives them (the model's id for a token
// the vocab has, else the next free one); a file whose ids say otherwise is refused.
void read_added_tokens(Model& m, const Reader& r, const json& list) {
  int64_t next_id = static_cast<int64_t>(m.vocab.size());  // BPE::get_vocab_size()
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string path = "added_tokens[" + std::to_string(i) + "]";
    const json& t = list[i];
    Model::AddedToken token;
    token.content = r.string(t, "content", path);
    token.special = r.boolean(t, "special", path, false);
    token.single_word = r.boolean(t, "single_word", path, false);
    token.lstrip = r.boolean(t, "lstrip", path, false);
    token.rstrip = r.boolean(t, "rstrip", path, false);
    token.normalized = r.boolean(t, "normalized", path, !token.special);
    const int64_t file_id = r.id(r.field(t, "id", path), path + ".id");
    if (token.content.empty()) continue;  // the library ignores it
    code_points(token.content, (r.where(path) + ".content").c_str());
    const auto known = m.added_ids.find(token.content);
    const auto in_vocab = m.vocab.find(token.content);
    token.id = known != m.added_ids.end()  ? known->second
               : in_vocab != m.vocab.end() ? in_vocab->second
                                           : next_id++;
    if (token.id != file_id) {
      r.fail(path + ".id", std::to_string(file_id) + ", but the tokenizers library would give \"" +
                               token.content + "\" the id " + std::to_string(token.id));
    }
    token.pattern = token.normalized && m.nfc ? nfc(token.content) : token.content;
    if (token.special) m.special_contents.insert(token.content);
    m.added_ids[token.content] = token.id;
    m.added[token.id] = token;
  }
  for (const auto& [id, token] : m.added) {
    auto& index = token.normalized ? m.normalized_tokens : m.raw_tokens;
    if (!token.pattern.empty()) index[static_cast<uint8_t>(token.pattern[0])].push_back(&token);
  }
}

void read_top(Model& m, const Reader& r, const json& root) {
  if (!root.is_object()) r.fail("(top)", "expected an object, got " + Reader::kind(root));
  for (const char* key : {"truncation", "padding"}) {
    if (root.contains(key) && !root[key].is_null()) {
      r.fail(key, "is not supported (null only: the caller decides lengths)");
    }
  }
  read_model(m, r, r.field(root, "model", "(top)"));
  read_normalizer(m, r, root.value("normalizer", json()), "normalizer");
  const json& pre = root.value("pre_tokenizer", json());
  if (pre.is_null())
    r.fail("pre_tokenizer", "null is not supported (a byte-level BPE needs ByteLevel)");
  read_pre_tokenizer(m, r, pre, "pre_tokenizer");
  if (std::none_of(m.pre_tokenizers.begin(), m.pre_tokenizers.end(),
                   [](const auto& s) { return s.byte_level; })) {
    r.fail("pre_tokenizer", "has no ByteLevel step: not a byte-level BPE tokenizer");
  }
  read_post_processor(m, r, root.value("post_processor", json()), "post_processor");
  const json& decoder = root.value("decoder", json());
  if (decoder.is_null()) r.fail("decoder", "null is not supported (supported: ByteLevel)");
  r.type(decoder, "decoder", "ByteLevel");
  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
    read_added_tokens(m, r, r.array(root, "added_tokens", "(top)"));
  }
  for (const auto& [token, id] : m.vocab) m.vocab_size = std::max(m.vocab_size, id + 1);
  for (const auto& [id, token] : m.added) m.vocab_size = std::max(m.vocab_size, id + 1);
  for (const auto& ids : {m.prefix_ids, m.suffix_ids}) {
    for (int64_t id : ids) {
      if (!m.vocab_r.count(id) && !m.added.count(id)) {
        r.fail("post_processor", "the template's id " + std::to_string(id) + " has no token");
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding

// Where the character before byte `pos` of `s` starts (pos > 0).
size_t previous_char(const std::string& s, size_t pos) {
  size_t k = pos - 1;
  while (k > 0 && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) --k;
  return k;
}

// Where the run of whitespace that ends at `pos` starts (added_vocabulary.rs's \s*$).
size_t whitespace_before(const std::string& s, size_t pos) {
  while (pos > 0) {
    size_t at = previous_char(s, pos);
    const size_t k = at;
    uint32_t cp = 0;
    if (!next_code_point(s, at, cp) || !is_white_space(cp)) break;
    pos = k;
  }
  return pos;
}

// Where the run of whitespace that starts at `pos` ends (^\s*).
size_t whitespace_after(const std::string& s, size_t pos) {
  uint32_t cp = 0;
  for (size_t at = pos; at < s.size() && next_code_point(s, at, cp) && is_white_space(cp);)
    pos = at;
  return pos;
}

// A single_word token's match [start, stop) is inside a word: a word character touches it.
bool inside_word(const Regex& word_char, const std::string& s, size_t start, size_t stop) {
  if (start > 0) {
    const size_t k = previous_char(s, start);
    if (word_char.matches_at_start(s.substr(k, start - k))) return true;
  }
  return stop < s.size() && word_char.matches_at_start(s.substr(stop, utf8_length_at(s, stop)));
}

// The leftmost, then longest, token of `index` at s[i], or null (a LeftmostLongest trie).
const Model::AddedToken* added_token_at(const std::vector<const Model::AddedToken*>* index,
                                        const std::string& s, size_t i) {
  const Model::AddedToken* best = nullptr;
  for (const Model::AddedToken* t : index[static_cast<uint8_t>(s[i])]) {
    if ((!best || t->pattern.size() > best->pattern.size()) &&
        s.compare(i, t->pattern.size(), t->pattern) == 0) {
      best = t;
    }
  }
  return best;
}

// AddedVocabulary::find_matches + split_with_indices over every piece not yet a token. The
// normalized pass normalizes each such piece first (extract_and_normalize).
std::vector<Model::Piece> Model::extract_added(const std::vector<Piece>& pieces,
                                               bool normalized_pass, bool allow_special) const {
  const auto* index = normalized_pass ? normalized_tokens : raw_tokens;
  std::vector<Piece> out;
  for (const Piece& piece : pieces) {
    if (piece.id >= 0) {
      out.push_back(piece);
      continue;
    }
    const std::string s = normalized_pass && nfc ? nurture::nfc(piece.text) : piece.text;
    size_t start_offset = 0;
    for (size_t i = 0; i < s.size();) {
      const AddedToken* token = added_token_at(index, s, i);
      if (token == nullptr) {
        ++i;
        continue;
      }
      size_t start = i, stop = i + token->pattern.size();
      i = stop;  // the next match starts after this one, whether this one is kept or not
      if (!allow_special && special_contents.count(token->content)) continue;
      if (token->single_word && inside_word(*word_char, s, start, stop)) continue;
      // The whitespace a previous token took stays with it.
      if (token->lstrip) start = std::max(whitespace_before(s, start), start_offset);
      if (token->rstrip) stop = whitespace_after(s, stop);
      if (start_offset < start) out.push_back({s.substr(start_offset, start - start_offset), -1});
      out.push_back({s.substr(start, stop - start), token->id});
      start_offset = stop;
    }
    if (start_offset < s.size()) out.push_back({s.substr(start_offset), -1});
  }
  return out;
}

// The pre-tokenizer steps over one piece of text (PreTokenizedString::split per step; ByteLevel
// maps the bytes of its pieces, so later steps see the mapped characters, as in the library).
std::vector<std::string> Model::pre_tokenize(const std::string& text) const {
  std::vector<std::string> pieces;
  if (!text.empty()) pieces.push_back(text);
  for (const PreTokenizer& step : pre_tokenizers) {
    std::vector<std::string> next;
    for (std::string& piece : pieces) {
      if (step.byte_level && step.add_prefix_space && piece[0] != ' ') piece.insert(0, " ");
      if (step.regex) {
        for (std::string& p : split(piece, *step.regex, step.behavior, step.invert))
          next.push_back(std::move(p));
      } else {
        next.push_back(std::move(piece));
      }
    }
    if (step.byte_level) {
      for (std::string& p : next) p = map_bytes(p);
    }
    pieces = std::move(next);
  }
  return pieces;
}

// BPE::merge_word + Word::merge_all: the lowest rank first, the leftmost of equal ranks.
void Model::bpe(const std::string& word, std::vector<int64_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges) {
    const auto it = vocab.find(word);
    if (it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  struct Symbol {
    int64_t id;
    int64_t prev, next;
    bool gone;
  };
  std::vector<Symbol> symbols;
  bool pending_unk = false;
  for (size_t i = 0; i < word.size();) {
    const size_t len = utf8_length_at(word, i);
    const auto it = vocab.find(word.substr(i, len));
    i += len;
    const bool flush = it != vocab.end() || !fuse_unk;
    if (pending_unk && flush) symbols.push_back({unk_id, 0, 0, false}), pending_unk = false;
    if (it != vocab.end()) {
      symbols.push_back({it->second, 0, 0, false});
    } else if (unk_id >= 0) {
      pending_unk = true;  // without an unk token the character is dropped, as in the library
    }
  }
  if (pending_unk) symbols.push_back({unk_id, 0, 0, false});
  const int64_t n = static_cast<int64_t>(symbols.size());
  for (int64_t i = 0; i < n; ++i) symbols[i].prev = i - 1, symbols[i].next = i + 1 < n ? i + 1 : -1;

  using Entry = std::tuple<uint32_t, int64_t, int64_t>;  // rank, position, merged id
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> queue;
  const auto push_pair = [&](int64_t left) {
    if (left < 0 || symbols[left].next < 0) return;
    const uint64_t key = (static_cast<uint64_t>(symbols[left].id) << 32) |
                         static_cast<uint64_t>(symbols[symbols[left].next].id);
    const auto it = merges.find(key);
    if (it != merges.end()) queue.emplace(it->second.rank, left, it->second.new_id);
  };
  for (int64_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!queue.empty()) {
    const auto [rank, pos, new_id] = queue.top();
    queue.pop();
    Symbol& left = symbols[pos];
    if (left.gone || left.next < 0) continue;
    const uint64_t key =
        (static_cast<uint64_t>(left.id) << 32) | static_cast<uint64_t>(symbols[left.next].id);
    const auto it = merges.find(key);
    if (it == merges.end() || it->second.new_id != new_id) continue;  // an expired entry
    Symbol& right = symbols[left.next];
    right.gone = true;
    left.id = new_id;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = pos;
    push_pair(left.prev);
    push_pair(pos);
  }
  for (const Symbol& s : symbols) {
    if (!s.gone) out.push_back(s.id);
  }
}

}  // namespace bpe_internal



// ---------------------------------------------------------------------------------------------
// ByteLevelBpe

struct ByteLevelBpe::Model : BpeModel {};

ByteLevelBpe::ByteLevelBpe(std::shared_ptr<const Model> model) : model_(std::move(model)) {}

ByteLevelBpe ByteLevelBpe::from_json(const std::string& json_text, const std::string& source) {
  const Reader reader(source);
  const json root = parse_json(json_text, source, {kMaxTokenizerJsonBytes, kMaxTokenizerJsonDepth});
  auto model = std::make_shared<Model>();
  model->source = source;
  model->word_char = std::make_shared<Regex>(kWordCharPattern, RegexOptions{}, "");
  model->white_space = std::make_shared<Regex>(kWhiteSpacePattern, RegexOptions{}, "");
  try {
    read_top(*model, reader, root);
  } catch (const json::exception& e) {  // a type the readers did not check
    reader.fail("(file)", std::string("unexpected JSON: ") + e.what());
  } catch (const std::invalid_argument& e) {  // an added token that is not UTF-8
    throw std::runtime_error(e.what());
  }
  return ByteLevelBpe(std::move(model));
}

ByteLevelBpe ByteLevelBpe::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::runtime_error(path + ": cannot open the tokenizer.json (missing or unreadable)");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size > static_cast<std::streamoff>(kMaxTokenizerJsonBytes)) {
    throw std::runtime_error(path + ": " + std::to_string(size) + " bytes, over the limit of " +
                             std::to_string(kMaxTokenizerJsonBytes) + " for a tokenizer.json");
  }
  in.seekg(0);
  std::string bytes(static_cast<size_t>(std::max<std::streamoff>(size, 0)), '\0');
  if (!in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()))) {
    throw std::runtime_error(path + ": cannot read the tokenizer.json");
  }
  return from_json(bytes, path);
}

std::vector<int64_t> ByteLevelBpe::encode(const std::string& text, bool allow_special) const {
  code_points(text, "encode");  // validates: the regexes below trust it
  std::vector<Model::Piece> pieces;
  if (!text.empty()) pieces.push_back({text, -1});
  pieces = model_->extract_added(pieces, false, allow_special);
  pieces = model_->extract_added(pieces, true, allow_special);
  std::vector<int64_t> ids;
  for (const Model::Piece& piece : pieces) {
    if (piece.id >= 0) {
      ids.push_back(piece.id);
      continue;
    }
    for (const std::string& word : model_->pre_tokenize(piece.text)) model_->bpe(word, ids);
  }
  return ids;
}

std::string ByteLevelBpe::decode(const std::vector<int64_t>& ids, bool skip_special) const {
  const ByteMap& map = byte_map();
  std::string out;
  for (int64_t id : ids) {
    if (skip_special && is_special(id)) continue;
    const std::string t = token(id);
    std::string
        bytes;  // ByteLevel::decode_chain: a token with an unmapped character stays as it is
    bool mapped = true;
    for (size_t i = 0; i < t.size() && mapped;) {
      uint32_t cp = 0;
      const auto it =
          next_code_point(t, i, cp) ? map.char_to_byte.find(cp) : map.char_to_byte.end();
      mapped = it != map.char_to_byte.end();
      if (mapped) bytes += static_cast<char>(it->second);
    }
    out += mapped ? bytes : t;
  }
  return out;
}

int64_t ByteLevelBpe::vocab_size() const { return model_->vocab_size; }

int64_t ByteLevelBpe::token_id(const std::string& token) const {
  const auto added = model_->added_ids.find(token);
  if (added != model_->added_ids.end()) return added->second;
  const auto it = model_->vocab.find(token);
  return it == model_->vocab.end() ? -1 : it->second;
}

std::string ByteLevelBpe::token(int64_t id) const {
  const auto added = model_->added.find(id);
  if (added != model_->added.end()) return added->second.pattern;  // as simple_id_to_token
  const auto it = model_->vocab_r.find(id);
  if (it == model_->vocab_r.end()) {
    throw std::out_of_range(model_->source + ": token id " + std::to_string(id) +
                            " is not in the vocabulary (size " +
                            std::to_string(model_->vocab_size) + ")");
  }
  return it->second;
}

bool ByteLevelBpe::is_special(int64_t id) const {  // by content, as is_special_token
  const auto added = model_->added.find(id);
  return added != model_->added.end() && model_->special_contents.count(added->second.content);
}

const std::vector<int64_t>& ByteLevelBpe::prefix_ids() const { return model_->prefix_ids; }
const std::vector<int64_t>& ByteLevelBpe::suffix_ids() const { return model_->suffix_ids; }
const std::string& ByteLevelBpe::source() const { return model_->source; }

}  // namespace nurture
