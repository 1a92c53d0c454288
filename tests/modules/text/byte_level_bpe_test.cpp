// ByteLevelBpe: the ids of every case of tests/fixtures/hf/tokenizers/ are the ones the Hugging
// Face `tokenizers` library gave (tools/hf/make_tokenizer_fixtures.py: GPT-2, Llama 3 and Qwen2
// style tokenizers trained there, and one with every other supported pre-tokenizer), with and
// without special-token matching, and so are the decoded texts; decode(encode(s)) == s for any
// valid UTF-8; NFC agrees with the standard's examples; and every unsupported or malformed file is
// an error naming the file and the JSON path.
#include "modules/text/byte_level_bpe.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_paths.h"

namespace nurture {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

fs::path fixture_dir(const std::string& name) {
  return fs::path(testing::kSourceDir) / "tests" / "fixtures" / "hf" / "tokenizers" / name;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string show(const std::vector<int64_t>& ids) { return json(ids).dump(); }
std::string show(const std::string& text) {
  return json(text).dump(-1, ' ', true, json::error_handler_t::replace);
}

// The message of the std::runtime_error `body` throws; a failure when it throws none.
std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a std::runtime_error";
  return "(no exception thrown)";
}

// What Rust's String::from_utf8_lossy makes of `bytes` (the library's last step of decoding): each
// maximal invalid subpart becomes one U+FFFD. ByteLevelBpe::decode keeps the bytes instead.
std::string lossy(const std::string& bytes) {
  std::string out;
  for (size_t i = 0; i < bytes.size();) {
    const auto b = [&](size_t k) { return static_cast<uint8_t>(bytes[k]); };
    const uint8_t b0 = b(i);
    const size_t len = b0 < 0x80                  ? 1
                       : b0 >= 0xC2 && b0 <= 0xDF ? 2
                       : b0 >= 0xE0 && b0 <= 0xEF ? 3
                       : b0 >= 0xF0 && b0 <= 0xF4 ? 4
                                                  : 0;
    size_t good = len == 0 ? 0 : 1;  // bytes of a valid prefix
    while (good > 0 && good < len && i + good < bytes.size()) {
      const uint8_t c = b(i + good);
      const uint8_t lo = good == 1 && b0 == 0xE0 ? 0xA0 : good == 1 && b0 == 0xF0 ? 0x90 : 0x80;
      const uint8_t hi = good == 1 && b0 == 0xED ? 0x9F : good == 1 && b0 == 0xF4 ? 0x8F : 0xBF;
      if (c < lo || c > hi) break;
      ++good;
    }
    if (good == len && len > 0) {
      out += bytes.substr(i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      i += std::max<size_t>(good, 1);
    }
  }
  return out;
}

// ---- the library's own results

class TokenizerCases : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerCases, EveryCaseGivesTheLibrarysIdsAndText) {
  const fs::path dir = fixture_dir(GetParam());
  const ByteLevelBpe bpe = ByteLevelBpe::load((dir / "tokenizer.json").string());
  const json reference = json::parse(read_text(dir / "cases.json"));
  EXPECT_EQ(bpe.vocab_size(), reference["vocab_size"].get<int64_t>());
  EXPECT_EQ(bpe.prefix_ids(), reference["prefix_ids"].get<std::vector<int64_t>>());
  EXPECT_EQ(bpe.suffix_ids(), reference["suffix_ids"].get<std::vector<int64_t>>());
  int checked = 0;
  for (const json& c : reference["cases"]) {
    const std::string text = c["text"];
    const auto ids = c["ids"].get<std::vector<int64_t>>();
    const auto ids_no_special = c["ids_no_special"].get<std::vector<int64_t>>();
    const auto got = bpe.encode(text, /*allow_special=*/true);
    EXPECT_EQ(got, ids) << "text " << show(text) << "\n  library " << show(ids) << "\n  ours    "
                        << show(got);
    const auto got_plain = bpe.encode(text, /*allow_special=*/false);
    EXPECT_EQ(got_plain, ids_no_special)
        << "allow_special=false, text " << show(text) << "\n  library " << show(ids_no_special)
        << "\n  ours    " << show(got_plain);
    EXPECT_EQ(lossy(bpe.decode(ids, false)), c["decoded"].get<std::string>())
        << "ids " << show(ids);
    EXPECT_EQ(lossy(bpe.decode(ids, true)), c["decoded_skip_special"].get<std::string>())
        << "ids " << show(ids);
    ++checked;
  }
  EXPECT_GT(checked, 100);
  std::cout << "[byte_level_bpe] " << GetParam() << ": " << checked
            << " cases checked against tokenizers "
            << reference["tokenizers_version"].get<std::string>() << "\n";
}

INSTANTIATE_TEST_SUITE_P(HfTokenizers, TokenizerCases,
                         ::testing::Values("gpt2", "llama3", "qwen2", "variants"));

// ---- round trips

ByteLevelBpe bpe_fixture(const std::string& name) {
  return ByteLevelBpe::load((fixture_dir(name) / "tokenizer.json").string());
}

// Random valid UTF-8 from every plane, weighted towards what tokenizers find hard. (Not "<tool>":
// with lstrip / rstrip an added token takes the whitespace beside it, which decoding cannot give
// back.)
std::string random_text(std::mt19937& rng) {
  static const std::vector<std::string> kPieces = {" ",
                                                   "  ",
                                                   "\t",
                                                   "\n",
                                                   "\r\n",
                                                   "'s",
                                                   "'LL",
                                                   "<|endoftext|>",
                                                   "<|im_start|>",
                                                   "<|begin_of_text|>",
                                                   "123456"};
  std::uniform_int_distribution<int> kind(0, 9), length(0, 40);
  std::string out;
  for (int i = 0, n = length(rng); i < n; ++i) {
    const int k = kind(rng);
    uint32_t cp = 0;
    if (k < 2) {
      out += kPieces[rng() % kPieces.size()];
      continue;
    } else if (k < 5) {
      cp = 0x20 + rng() % 0x5F;
    } else if (k < 7) {
      cp = rng() % 0x800;
    } else if (k < 9) {
      cp = rng() % 0x10000;
    } else {
      cp = 0x10000 + rng() % 0x100000;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
    std::string bytes;  // UTF-8 by hand: the test must not trust the code under test
    if (cp < 0x80) {
      bytes = {static_cast<char>(cp)};
    } else if (cp < 0x800) {
      bytes = {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
    } else if (cp < 0x10000) {
      bytes = {static_cast<char>(0xE0 | (cp >> 12)), static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
               static_cast<char>(0x80 | (cp & 0x3F))};
    } else {
      bytes = {static_cast<char>(0xF0 | (cp >> 18)), static_cast<char>(0x80 | ((cp >> 12) & 0x3F)),
               static_cast<char>(0x80 | ((cp >> 6) & 0x3F)), static_cast<char>(0x80 | (cp & 0x3F))};
    }
    out += bytes;
  }
  return out;
}

TEST(ByteLevelBpe, DecodeOfEncodeIsTheTextForAnyValidUtf8) {
  for (const std::string name : {"gpt2", "llama3", "qwen2"}) {
    const ByteLevelBpe bpe = bpe_fixture(name);
    std::mt19937 rng(1234);
    for (int i = 0; i < 400; ++i) {
      const std::string text = random_text(rng);
      const std::string expected = name == std::string("qwen2") ? nfc(text) : text;
      for (bool allow_special : {true, false}) {
        ASSERT_EQ(bpe.decode(bpe.encode(text, allow_special), false), expected)
            << name << " allow_special=" << allow_special << " text " << show(text);
      }
    }
  }
}

TEST(ByteLevelBpe, DecodingIdsOneByOneKeepsTheBytesOfPartialCharacters) {
  const ByteLevelBpe bpe = bpe_fixture("gpt2");
  const std::string text = "👨‍👩‍👧‍👦 한국어 🇰🇷";
  const auto ids = bpe.encode(text, true);
  std::string joined;
  for (int64_t id : ids) joined += bpe.decode({id}, false);
  EXPECT_EQ(joined, text);
  EXPECT_GT(ids.size(), 4u);
}

TEST(ByteLevelBpe, ALongTextAndAHundredThousandSpacesRoundTrip) {
  const ByteLevelBpe bpe = bpe_fixture("llama3");
  std::string text;
  for (int i = 0; text.size() < (1u << 20); ++i)
    text += "The quick brown fox 한국어 1234567 😀 jumps\n\t over  ";
  text += std::string(100000, ' ') + "end";
  const auto ids = bpe.encode(text, true);
  EXPECT_EQ(bpe.decode(ids, false), text);
}

// ---- the vocabulary

TEST(ByteLevelBpe, TokensIdsAndSpecials) {
  const ByteLevelBpe bpe = bpe_fixture("llama3");
  const int64_t bos = bpe.token_id("<|begin_of_text|>");
  ASSERT_GE(bos, 0);
  EXPECT_EQ(bpe.token(bos), "<|begin_of_text|>");
  EXPECT_TRUE(bpe.is_special(bos));
  EXPECT_EQ(bpe.prefix_ids(), std::vector<int64_t>{bos});
  EXPECT_EQ(bpe.token_id("no such token"), -1);
  const int64_t hello = bpe.token_id("extraword");  // in the model vocab only
  ASSERT_GE(hello, 0);
  EXPECT_FALSE(bpe.is_special(hello));
  EXPECT_EQ(bpe.token(hello), "extraword");
  EXPECT_EQ(bpe.encode("extraword", false), std::vector<int64_t>{hello});  // ignore_merges
  EXPECT_THROW(bpe.token(bpe.vocab_size()), std::out_of_range);
  EXPECT_THROW(bpe.token(-1), std::out_of_range);
  EXPECT_THROW(bpe.decode({bpe.vocab_size() + 7}, false), std::out_of_range);
  EXPECT_EQ(bpe.decode({bos}, true), "");
  EXPECT_EQ(bpe.decode({bos}, false), "<|begin_of_text|>");
}

TEST(ByteLevelBpe, TextThatIsNotUtf8IsAnInvalidArgument) {
  const ByteLevelBpe bpe = bpe_fixture("gpt2");
  for (const std::string bad : {"\xff", "a\xc3", "\xed\xa0\x80", "\xc0\x80", "\xf4\x90\x80\x80"}) {
    EXPECT_THROW(bpe.encode(bad, true), std::invalid_argument) << show(bad);
  }
}

// ---- NFC

TEST(Nfc, ComposesReordersAndKeepsExclusions) {
  EXPECT_EQ(nfc("e\u0301"), "\u00e9");
  EXPECT_EQ(nfc("\u00e9"), "\u00e9");
  EXPECT_EQ(nfc("\u212b"), "\u00c5");               // a singleton: Angstrom sign -> Å
  EXPECT_EQ(nfc("s\u0307\u0323"), "\u1e69");        // reordered (dot below first), then composed
  EXPECT_EQ(nfc("\u1100\u1161\u11a8"), "\uac01");   // Hangul L V T
  EXPECT_EQ(nfc("\uac00\u11a8"), "\uac01");         // Hangul LV T
  EXPECT_EQ(nfc("\u0958"), "\u0915\u093c");         // composition exclusion stays apart
  EXPECT_EQ(nfc("a\u0328\u0301"), "\u0105\u0301");  // ą then the acute (no ą́)
  EXPECT_EQ(nfc("\u0301e"), "\u0301e");             // nothing to combine with
  EXPECT_EQ(nfc("plain ascii"), "plain ascii");
  EXPECT_THROW(nfc("\xff"), std::invalid_argument);
}

// ---- what is refused

json gpt2_json() { return json::parse(read_text(fixture_dir("gpt2") / "tokenizer.json")); }

std::string load_error(const json& j) {
  return error_of([&] { ByteLevelBpe::from_json(j.dump(), "x/tokenizer.json"); });
}

TEST(ByteLevelBpe, UnsupportedComponentsAreErrorsNamingThem) {
  json j = gpt2_json();
  j["normalizer"] = {{"type", "NFKC"}};
  EXPECT_THAT(
      load_error(j),
      HasSubstr(
          "x/tokenizer.json: normalizer: type \"NFKC\" is not supported (supported: none, NFC"));
  j = gpt2_json();
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}};
  EXPECT_THAT(load_error(j),
              HasSubstr("x/tokenizer.json: pre_tokenizer: type \"Metaspace\" is not supported"));
  j = gpt2_json();
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", {j["pre_tokenizer"], {{"type", "Whitespace"}}}}};
  EXPECT_THAT(load_error(j),
              HasSubstr("pre_tokenizer.pretokenizers[1]: type \"Whitespace\" is not supported"));
  j = gpt2_json();
  j["model"]["type"] = "WordPiece";
  EXPECT_THAT(
      load_error(j),
      HasSubstr("x/tokenizer.json: model: type \"WordPiece\" is not supported (supported: BPE)"));
  j = gpt2_json();
  j["decoder"] = {{"type", "WordPiece"}};
  EXPECT_THAT(load_error(j),
              HasSubstr("decoder: type \"WordPiece\" is not supported (supported: ByteLevel)"));
  j = gpt2_json();
  j["model"]["byte_fallback"] = true;
  EXPECT_THAT(load_error(j), HasSubstr("model.byte_fallback"));
  j = gpt2_json();
  j["model"]["dropout"] = 0.1;
  EXPECT_THAT(load_error(j), HasSubstr("model.dropout"));
  j = gpt2_json();
  j["model"]["continuing_subword_prefix"] = "##";
  EXPECT_THAT(load_error(j), HasSubstr("model.continuing_subword_prefix"));
  j = gpt2_json();
  j["truncation"] = {{"max_length", 8}};
  EXPECT_THAT(load_error(j), HasSubstr("x/tokenizer.json: truncation: is not supported"));
  j = gpt2_json();
  j["post_processor"] = {{"type", "RobertaProcessing"}};
  EXPECT_THAT(load_error(j),
              HasSubstr("post_processor: type \"RobertaProcessing\" is not supported"));
  j = gpt2_json();
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"Regex", "\\s+"}}},
                        {"behavior", "Isolated"},
                        {"invert", false}};
  EXPECT_THAT(load_error(j), HasSubstr("pre_tokenizer: has no ByteLevel step"));
  j = gpt2_json();
  j["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  EXPECT_THAT(load_error(j), HasSubstr("x/tokenizer.json: pre_tokenizer.pattern.Regex: the regex "
                                       "\"(unclosed\" does not compile"));
  j["pre_tokenizer"]["pattern"]["Regex"] = "(?m:.)";
  EXPECT_THAT(load_error(j),
              HasSubstr("pre_tokenizer.pattern.Regex: \"(?m:\" means something else"));
  j["pre_tokenizer"]["pattern"]["Regex"] = "\\s";
  j["pre_tokenizer"]["behavior"] = "Sideways";
  EXPECT_THAT(load_error(j), HasSubstr("pre_tokenizer.behavior: \"Sideways\" is not one of"));
}

TEST(ByteLevelBpe, MalformedFilesAreErrorsNamingTheFile) {
  const std::string text = read_text(fixture_dir("gpt2") / "tokenizer.json");
  EXPECT_THAT(error_of([&] {
                ByteLevelBpe::from_json(text.substr(0, text.size() / 2), "x/tokenizer.json");
              }),
              HasSubstr("x/tokenizer.json: not valid JSON"));
  const std::string deep = std::string(65, '[') + std::string(65, ']');
  EXPECT_THAT(error_of([&] { ByteLevelBpe::from_json(deep, "x/tokenizer.json"); }),
              HasSubstr("x/tokenizer.json: byte 64: JSON nested deeper than 64 levels"));
  // Brackets inside strings do not count.
  json j = gpt2_json();
  j["version"] = std::string(100, '[');
  EXPECT_NO_THROW(ByteLevelBpe::from_json(j.dump(), "x"));
  EXPECT_THAT(error_of([&] { ByteLevelBpe::load("/nonexistent/dir/tokenizer.json"); }),
              HasSubstr("/nonexistent/dir/tokenizer.json: cannot open"));
  j = gpt2_json();
  j["model"]["merges"][3] = "onlyone";
  EXPECT_THAT(load_error(j),
              HasSubstr("x/tokenizer.json: model.merges[3]: expected \"left right\""));
  j = gpt2_json();
  j["model"]["merges"][3] = "zzzq qqqz";
  EXPECT_THAT(load_error(j), HasSubstr("model.merges[3]: \"zzzq\" is not in model.vocab"));
  j = gpt2_json();
  j["model"]["vocab"]["Ġthe"] = "seven";
  EXPECT_THAT(load_error(j), HasSubstr("model.vocab.Ġthe: expected a token id"));
  j = gpt2_json();
  j["added_tokens"][0]["id"] = 12;
  EXPECT_THAT(load_error(j),
              HasSubstr("added_tokens[0].id: 12, but the tokenizers library would give"));
  j = gpt2_json();
  j.erase("model");
  EXPECT_THAT(load_error(j), HasSubstr("x/tokenizer.json: (top): missing \"model\""));
  EXPECT_THAT(error_of([&] {
                ByteLevelBpe::from_json(std::string(kMaxTokenizerJsonBytes + 1, ' '), "big.json");
              }),
              HasSubstr("big.json: 67108865 bytes, more than the 67108864 accepted for this file"));
}

}  // namespace
}  // namespace nurture
