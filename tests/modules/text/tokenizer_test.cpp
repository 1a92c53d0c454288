// Tokenizer: training through the SentencePiece shim, exact round trips (English, Korean,
// whitespace, digits, emoji), atomic special tokens, the id layout, saving and loading, errors
// that name the file, deterministic training, and loading a foreign (Llama-style) model.
// This binary links LibTorch, so every test here also proves the dlopen()ed shim keeps
// SentencePiece's protobuf away from LibTorch's.
#include <dlfcn.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <numeric>
#include <random>
#include <nlohmann/json.hpp>
#include <sstream>

#include "modules/text/chat_template.h"
#include "modules/text/tokenizer.h"
#include "tests/test_util.h"
#include "third_party/sentencepiece_shim/spm_shim.h"

namespace nurture {
namespace {

namespace fs = std::filesystem;

// A few hundred lines of English and Korean with numbers, from a fixed seed.
void write_corpus(const fs::path& file) {
  const std::vector<std::string> english = {"The quick brown fox jumps over the lazy dog.",
                                            "I like to read books in the evening.",
                                            "Training a language model takes time and data.",
                                            "She said hello to everyone in the room.",
                                            "Please write a short poem about the sea.",
                                            "What is the capital of France?",
                                            "The weather is nice today, so we went for a walk.",
                                            "Numbers like 42 and 1000 are common.",
                                            "He opened the window and looked at the stars.",
                                            "Can you help me with my homework?"};
  const std::vector<std::string> korean = {
      "안녕하세요, 만나서 반갑습니다.", "오늘 날씨가 정말 좋네요.",
      "저는 책 읽는 것을 좋아합니다.",  "한국어 문장을 토큰화합니다.",
      "이것은 테스트 문장입니다.",      "내일 다시 만나요.",
      "서울은 한국의 수도입니다.",      "우리는 공원에서 산책을 했습니다.",
      "질문이 있으면 물어보세요.",      "언어 모델을 학습하는 데 시간이 걸립니다."};
  std::mt19937 rng(7);
  std::ofstream out(file);
  for (int i = 0; i < 600; ++i) {
    const auto& e = english[rng() % english.size()];
    const auto& k = korean[rng() % korean.size()];
    const unsigned a = rng() % 1000, b = rng() % 1000;
    switch (i % 3) {
      case 0:
        out << e << " " << k << "\n";
        break;
      case 1:
        out << k << " " << a << " + " << b << " = " << a + b << "\n";
        break;
      default:
        out << e << " " << a << "\n";
        break;
    }
  }
}

TokenizerTrainOptions small_options(const fs::path& dir, const std::string& name) {
  TokenizerTrainOptions options;
  options.inputs = {(dir / "corpus.txt").string()};
  options.output = (dir / name).string();
  options.vocab_size = 512;
  return options;
}

std::string read_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

using testing::error_of;

class TokenizerTest : public testing::Seeded {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(testing::scratch_dir("tokenizer"));
    write_corpus(*dir_ / "corpus.txt");
    tokenizer_ = new Tokenizer(Tokenizer::train(small_options(*dir_, "bpe.model")));
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete dir_;
  }
  static const Tokenizer& tok() { return *tokenizer_; }
  static const fs::path& dir() { return *dir_; }

  static inline fs::path* dir_ = nullptr;
  static inline Tokenizer* tokenizer_ = nullptr;
};

// ---- layout
// ----------------------------------------------------------------------------------------

TEST_F(TokenizerTest, TrainedModelHasTheDocumentedIdLayout) {
  EXPECT_EQ(tok().vocab_size(), 512);
  EXPECT_EQ(tok().pad_id(), 0);
  EXPECT_EQ(tok().token_id("<unk>"), 1);
  EXPECT_EQ(tok().eot_id(), 2);
  EXPECT_EQ(tok().im_start_id(), 3);
  EXPECT_EQ(tok().im_end_id(), 4);
  EXPECT_EQ(tok().token_id("<0x00>"), 5);
  EXPECT_EQ(tok().token_id("<0xFF>"), 260);
  EXPECT_EQ(tok().token_id("<|im_start|>"), 3);
  EXPECT_EQ(tok().token_id("no such piece"), -1);
  EXPECT_TRUE(tok().has_chat_tokens());
  for (int64_t id : {0, 2, 3, 4}) EXPECT_TRUE(tok().is_special(id)) << id;
  EXPECT_FALSE(tok().is_special(1));
  EXPECT_FALSE(tok().is_special(300));
  EXPECT_EQ(tok().source(), (dir() / "bpe.model").string());
  EXPECT_TRUE(fs::exists(dir() / "bpe.model"));
}

// ---- round trips
// -----------------------------------------------------------------------------------

TEST_F(TokenizerTest, RoundTripsAreExact) {
  const std::vector<std::string> texts = {
      "The quick brown fox jumps over the lazy dog.",
      "안녕하세요, 만나서 반갑습니다. 오늘 날씨가 정말 좋네요.",
      "  two  leading spaces, double  inside and trailing  ",
      "line one\nline two\n\n\ttabbed\r\nwindows line",
      "What is 123 + 4567? It is 4690.",
      "emoji 😀🎉 and a rare 漢字 and ünïcödé",
      "mixed 한국어 and English 2024년 3월",
      " ",
      "\n",
      "",
  };
  for (const auto& text : texts) {
    const auto ids = tok().encode(text);
    EXPECT_EQ(tok().decode(ids), text);
    for (int64_t id : ids) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, tok().vocab_size());
      EXPECT_FALSE(tok().is_special(id)) << "special id " << id << " from " << text;
    }
    // The ids are ordinary integers for LibTorch: same library, same process.
    if (!ids.empty()) {
      const auto tensor = torch::tensor(ids, torch::kLong);
      EXPECT_EQ(tensor.sum().item<int64_t>(), std::accumulate(ids.begin(), ids.end(), int64_t{0}));
      EXPECT_EQ(tensor.numel(), static_cast<int64_t>(ids.size()));
    }
  }
  EXPECT_TRUE(tok().encode("").empty());
  EXPECT_EQ(tok().decode({}), "");
}

TEST_F(TokenizerTest, SeparatelyEncodedPiecesConcatenate) {
  // No dummy prefix: encode(a) ++ encode(b) decodes to a + b, as chat templates rely on.
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"Hello", " world"}, {"user\n", "안녕하세요"}, {"12", "34"}, {"a ", " b"}};
  for (const auto& [a, b] : pairs) {
    auto ids = tok().encode(a);
    const auto tail = tok().encode(b);
    ids.insert(ids.end(), tail.begin(), tail.end());
    EXPECT_EQ(tok().decode(ids), a + b);
  }
}

TEST_F(TokenizerTest, DigitsAreSplitAndKoreanGetsMultiCharacterPieces) {
  const auto ids = tok().encode("2024");
  EXPECT_EQ(tok().pieces(ids), (std::vector<std::string>{"2", "0", "2", "4"}));
  // A frequent Korean word is learned as fewer pieces than it has characters.
  const std::string word = "안녕하세요";
  EXPECT_LT(tok().encode(word).size(), 5u);
  // An emoji the corpus never saw falls back to its 4 UTF-8 bytes.
  EXPECT_EQ(tok().pieces(tok().encode("😀")),
            (std::vector<std::string>{"<0xF0>", "<0x9F>", "<0x98>", "<0x80>"}));
}

TEST_F(TokenizerTest, EncodeBatchMatchesEncode) {
  std::vector<std::string> texts;
  for (int i = 0; i < 40; ++i)
    texts.push_back("text " + std::to_string(i) + " 문장 " + std::string(i % 5, ' ') +
                    "<|im_end|>");
  for (bool special : {false, true}) {
    const auto batch = tok().encode_batch(texts, special);
    ASSERT_EQ(batch.size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(batch[i], tok().encode(texts[i], special));
  }
}

// ---- special tokens
// ----------------------------------------------------------------------------------

TEST_F(TokenizerTest, SpecialTokensAreAtomicWhenAllowed) {
  EXPECT_EQ(tok().encode("<|im_end|>", true), (std::vector<int64_t>{4}));
  EXPECT_EQ(tok().encode("<|im_start|>", true), (std::vector<int64_t>{3}));
  EXPECT_EQ(tok().encode("<|endoftext|>", true), (std::vector<int64_t>{2}));
  EXPECT_EQ(tok().encode("<|pad|>", true), (std::vector<int64_t>{0}));

  const std::string text = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>";
  std::vector<int64_t> expected = {3};
  for (int64_t id : tok().encode("user\nhi")) expected.push_back(id);
  expected.push_back(4);
  for (int64_t id : tok().encode("\n")) expected.push_back(id);
  expected.push_back(3);
  const auto ids = tok().encode(text, true);
  EXPECT_EQ(ids, expected);
  EXPECT_EQ(tok().decode(ids), text);
  // Adjacent specials and a half-written one.
  EXPECT_EQ(tok().encode("<|im_end|><|endoftext|>", true), (std::vector<int64_t>{4, 2}));
  const auto partial = tok().encode("<|im_end", true);
  EXPECT_EQ(tok().decode(partial), "<|im_end");
  for (int64_t id : partial) EXPECT_FALSE(tok().is_special(id));
}

TEST_F(TokenizerTest, SpecialTokenTextIsOrdinaryTextWhenNotAllowed) {
  for (const std::string text :
       {"<|im_end|>", "<|im_start|>assistant\n", "a<|endoftext|>b", "<|pad|>", "x <|im_end|> y"}) {
    const auto ids = tok().encode(text);
    EXPECT_GT(ids.size(), 1u);
    for (int64_t id : ids) EXPECT_FALSE(tok().is_special(id)) << text;
    EXPECT_EQ(tok().decode(ids), text);
  }
}

TEST_F(TokenizerTest, DecodeRendersSpecialsAndDropsPadding) {
  std::vector<int64_t> ids = {3};
  for (int64_t id : tok().encode("user")) ids.push_back(id);
  ids.push_back(4);
  ids.push_back(2);
  ids.push_back(0);
  ids.push_back(0);
  EXPECT_EQ(tok().decode(ids), "<|im_start|>user<|im_end|><|endoftext|>");
  EXPECT_EQ(tok().pieces({3, 4, 2, 0}),
            (std::vector<std::string>{"<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|pad|>"}));
  EXPECT_THROW(tok().decode({tok().vocab_size()}), std::out_of_range);
  EXPECT_THROW(tok().decode({-1}), std::out_of_range);
  EXPECT_THROW(tok().pieces({100000}), std::out_of_range);
}

// ---- files
// -------------------------------------------------------------------------------------------

TEST_F(TokenizerTest, SaveAndLoadGiveTheSameTokenizer) {
  const auto out = testing::scratch_dir("tokenizer_save");
  const auto file = out / "nested" / "copy.model";
  tok().save(file.string());
  EXPECT_EQ(read_bytes(file), read_bytes(dir() / "bpe.model"));
  const auto loaded = Tokenizer::load(file.string());
  EXPECT_EQ(loaded.source(), file.string());
  EXPECT_EQ(loaded.serialized(), tok().serialized());
  const std::string text = "<|im_start|>안녕 world 42<|im_end|>";
  EXPECT_EQ(loaded.encode(text, true), tok().encode(text, true));

  // A model directory: its tokenizer.model.
  tok().save((out / kTokenizerFileName).string());
  EXPECT_EQ(Tokenizer::load(out.string()).vocab_size(), 512);
  // No temporary files left behind.
  for (const auto& entry : fs::directory_iterator(out))
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos) << entry.path();
}

TEST_F(TokenizerTest, BadFilesGiveErrorsNamingThePath) {
  const auto out = testing::scratch_dir("tokenizer_bad");
  const auto missing = (out / "missing.model").string();
  EXPECT_NE(error_of<std::runtime_error>([&] { Tokenizer::load(missing); }).find(missing),
            std::string::npos);

  const auto truncated = out / "truncated.model";
  std::ofstream(truncated, std::ios::binary) << read_bytes(dir() / "bpe.model").substr(0, 100);
  const auto truncated_error =
      error_of<std::runtime_error>([&] { Tokenizer::load(truncated.string()); });
  EXPECT_NE(truncated_error.find(truncated.string()), std::string::npos) << truncated_error;

  const auto text = out / "notes.txt";
  {
    std::ofstream file(text);
    std::mt19937 rng(3);
    for (int i = 0; i < 2000; ++i) file << static_cast<char>(' ' + rng() % 95);
    file << "\nsome ordinary text, not a model\n";
  }
  const auto text_error = error_of<std::runtime_error>([&] { Tokenizer::load(text.string()); });
  EXPECT_NE(text_error.find(text.string()), std::string::npos) << text_error;
  EXPECT_NE(text_error.find("not a valid SentencePiece model"), std::string::npos) << text_error;

  const auto empty = out / "empty.model";
  std::ofstream(empty).close();
  EXPECT_NE(
      error_of<std::runtime_error>([&] { Tokenizer::load(empty.string()); }).find(empty.string()),
      std::string::npos);

  EXPECT_NE(error_of<std::runtime_error>([&] {
              Tokenizer::from_bytes("garbage", "in-memory");
            }).find("in-memory"),
            std::string::npos);
}

// ---- training
// ----------------------------------------------------------------------------------------

TEST_F(TokenizerTest, TrainingIsDeterministic) {
  const auto out = testing::scratch_dir("tokenizer_determinism");
  fs::copy_file(dir() / "corpus.txt", out / "corpus.txt");
  for (const std::string type : {"bpe", "unigram"}) {
    auto options = small_options(out, type + "_a.model");
    options.model_type = type;
    options.vocab_size = 450;
    const auto a = Tokenizer::train(options);
    options.output = (out / (type + "_b.model")).string();
    const auto b = Tokenizer::train(options);
    EXPECT_EQ(read_bytes(out / (type + "_a.model")), read_bytes(out / (type + "_b.model"))) << type;
    EXPECT_EQ(a.vocab_size(), 450);
    EXPECT_EQ(a.im_end_id(), 4);
    const std::string text = "한국어 문장 and English 1234 😀\n";
    EXPECT_EQ(a.decode(a.encode(text)), text) << type;
  }
}

TEST_F(TokenizerTest, TrainingErrorsNameTheProblem) {
  const auto out = testing::scratch_dir("tokenizer_train_errors");
  auto options = small_options(dir(), "unused.model");
  options.output = (out / "x.model").string();

  options.inputs = {(out / "absent.txt").string()};
  EXPECT_NE(error_of<std::runtime_error>([&] { Tokenizer::train(options); }).find("absent.txt"),
            std::string::npos);

  options.inputs = {(dir() / "corpus.txt").string()};
  options.model_type = "wordpiece";
  EXPECT_NE(error_of<std::invalid_argument>([&] { Tokenizer::train(options); }).find("wordpiece"),
            std::string::npos);

  options.model_type = "bpe";
  options.vocab_size = 100;  // smaller than the reserved + byte pieces
  EXPECT_NE(error_of<std::runtime_error>([&] { Tokenizer::train(options); }).find("vocab"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(out / "x.model"));
}

// ---- another SentencePiece model
// ---------------------------------------------------------------------

// Trains a model the way spm_train does by default (Llama 2 style: <unk> 0, <s> 1, </s> 2, NFKC,
// dummy prefix, no chat tokens), talking to the shim directly.
std::string train_foreign_model(const fs::path& corpus) {
  const auto shim_path = testing::binary_dir() / "libnurture_spm_shim.so";
  void* library = open_spm_shim(shim_path.string());
  if (library == nullptr) throw std::runtime_error(dlerror());
  auto train = reinterpret_cast<decltype(&nurture_spm_train)>(dlsym(library, "nurture_spm_train"));
  if (train == nullptr) throw std::runtime_error("no nurture_spm_train");
  const char* keys[] = {"vocab_size", "model_type", "byte_fallback", "minloglevel"};
  const char* values[] = {"400", "bpe", "true", "1"};
  const std::string input = corpus.string();
  const char* inputs[] = {input.c_str()};
  std::string model;
  char error[1024] = {0};
  const int rc = train(
      keys, values, 4, inputs, 1, 0,
      [](void* ctx, const char* data, size_t n) {
        static_cast<std::string*>(ctx)->append(data, n);
      },
      &model, error, sizeof error);
  if (rc != 0) throw std::runtime_error(error);
  return model;
}

TEST_F(TokenizerTest, LoadsAModelWithoutChatTokens) {
  const auto foreign =
      Tokenizer::from_bytes(train_foreign_model(dir() / "corpus.txt"), "llama-style");
  EXPECT_EQ(foreign.vocab_size(), 400);
  EXPECT_FALSE(foreign.has_chat_tokens());
  EXPECT_EQ(foreign.im_start_id(), -1);
  EXPECT_EQ(foreign.im_end_id(), -1);
  EXPECT_EQ(foreign.eot_id(), -1);
  EXPECT_EQ(foreign.pad_id(), -1);
  EXPECT_EQ(foreign.token_id("<s>"), 1);
  const std::string text = "Hello world, 안녕하세요 😀";
  EXPECT_EQ(foreign.decode(foreign.encode(text)), text);
  // No specials to split on: allow_special changes nothing.
  EXPECT_EQ(foreign.encode("<|im_end|> hi", true), foreign.encode("<|im_end|> hi", false));
  // A chat template needs the chat tokens.
  ChatMLTemplate chatml;
  const auto message = error_of<std::runtime_error>([&] {
    chatml.render(foreign, {{"user", "hi"}}, true);
  });
  EXPECT_NE(message.find("llama-style"), std::string::npos) << message;
  EXPECT_NE(message.find("<|im_start|>"), std::string::npos) << message;
}

// A Hugging Face directory (tokenizer.json + tokenizer_config.json as transformers wrote them):
// the ids of the tokenizers library for every case it was checked on, the special ids from the
// config, and a save into another directory that loads back the same.
TEST(HfTokenizer, ADirectoryWithTokenizerJsonLoadsAsHuggingFaces) {
  const fs::path dir = testing::source_dir() / "tests" / "fixtures" / "hf" / "models" / "qwen2_chat";
  const Tokenizer tokenizer = Tokenizer::load(dir.string());
  EXPECT_TRUE(tokenizer.is_hugging_face());
  EXPECT_EQ(tokenizer.source(), (dir / "tokenizer.json").string());
  EXPECT_EQ(tokenizer.vocab_size(), 902);
  EXPECT_EQ(tokenizer.im_start_id(), 1);
  EXPECT_EQ(tokenizer.im_end_id(), 2);
  EXPECT_EQ(tokenizer.eot_id(), 2);  // eos_token <|im_end|>
  EXPECT_EQ(tokenizer.pad_id(), 0);  // pad_token <|endoftext|>
  EXPECT_TRUE(tokenizer.is_special(1));
  EXPECT_FALSE(tokenizer.is_special(900));
  EXPECT_TRUE(tokenizer.prefix_ids().empty());

  std::ifstream in(testing::source_dir() / "tests" / "fixtures" / "hf" / "tokenizers" / "qwen2" / "cases.json");
  const auto cases = nlohmann::json::parse(in);
  ASSERT_TRUE(cases.contains("cases"));
  int checked = 0;
  for (const auto& c : cases["cases"]) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(tokenizer.encode(text, true), c["ids"].get<std::vector<int64_t>>()) << text;
    EXPECT_EQ(tokenizer.encode(text, false), c["ids_no_special"].get<std::vector<int64_t>>()) << text;
    ++checked;
  }
  EXPECT_GT(checked, 100);
  EXPECT_EQ(tokenizer.decode(tokenizer.encode("<|im_start|>user\n안녕<|im_end|>", true)), "<|im_start|>user\n안녕<|im_end|>");
  EXPECT_EQ(tokenizer.decode({0, 5, 0}), tokenizer.decode({5}));  // padding decodes to nothing
  const auto emoji = tokenizer.encode("😀", false);
  ASSERT_GT(emoji.size(), 1u);  // bytes of one character in several tokens
  EXPECT_EQ(tokenizer.decode({emoji.front()}).find("\xEF\xBF\xBD"), 0u);  // cut off: U+FFFD, valid UTF-8

  const fs::path copy = testing::scratch_dir("HfTokenizerCopy");
  tokenizer.save_to_directory(copy.string());
  EXPECT_TRUE(fs::exists(copy / "tokenizer_config.json"));
  const Tokenizer back = Tokenizer::load(copy.string());
  EXPECT_TRUE(back.is_hugging_face());
  EXPECT_EQ(back.encode("Hello 12345 😀", true), tokenizer.encode("Hello 12345 😀", true));
  EXPECT_EQ(back.eot_id(), 2);
}

TEST(HfTokenizer, AConfigNamingAnUnknownTokenIsAnError) {
  const fs::path dir = testing::scratch_dir("HfTokenizerBadConfig");
  fs::copy_file(testing::source_dir() / "tests" / "fixtures" / "hf" / "models" / "qwen2_chat" / "tokenizer.json",
                dir / "tokenizer.json", fs::copy_options::overwrite_existing);
  testing::write_file(dir / "tokenizer_config.json", R"({"eos_token": "<|eot_id|>"})");
  auto message = error_of<std::runtime_error>([&] { Tokenizer::load(dir.string()); });
  EXPECT_NE(message.find((dir / "tokenizer_config.json").string() + ": eos_token: \"<|eot_id|>\" is not a token"), std::string::npos) << message;
  testing::write_file(dir / "tokenizer_config.json", R"({"eos_token": 5})");
  message = error_of<std::runtime_error>([&] { Tokenizer::load(dir.string()); });
  EXPECT_NE(message.find("eos_token: expected a token"), std::string::npos) << message;
  testing::write_file(dir / "tokenizer_config.json", "{");
  message = error_of<std::runtime_error>([&] { Tokenizer::load(dir.string()); });
  EXPECT_NE(message.find("tokenizer_config.json: not valid JSON"), std::string::npos) << message;
}

// A Llama 2-style directory (tokenizer.model + tokenizer_config.json, written by sentencepiece and
// transformers: tests/fixtures/hf/tokenizers/llama2_spm) gives the ids transformers' LlamaTokenizer
// gives, with and without its BOS, and decodes them to the same text.
TEST(HfTokenizer, ASentencePieceModelWithItsConfigEncodesAsTransformers) {
  const fs::path dir = testing::source_dir() / "tests" / "fixtures" / "hf" / "tokenizers" / "llama2_spm";
  const Tokenizer tokenizer = Tokenizer::load(dir.string());
  EXPECT_TRUE(tokenizer.is_hugging_face());
  EXPECT_EQ(tokenizer.prefix_ids(), std::vector<int64_t>{1});  // <s>
  EXPECT_EQ(tokenizer.eot_id(), 2);                           // </s>
  EXPECT_EQ(tokenizer.pad_id(), 2);                           // none: the eos token, as TRL pads
  std::ifstream in(dir / "cases.json");
  const auto fixture = nlohmann::json::parse(in);
  ASSERT_EQ(fixture["tokenizer_class"], "LlamaTokenizer");
  int checked = 0;
  for (const auto& c : fixture["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const auto ids = tokenizer.encode(text, /*allow_special=*/true);
    EXPECT_EQ(ids, c["ids"].get<std::vector<int64_t>>()) << text;
    std::vector<int64_t> with_bos = tokenizer.prefix_ids();
    with_bos.insert(with_bos.end(), ids.begin(), ids.end());
    EXPECT_EQ(with_bos, c["ids_with_bos"].get<std::vector<int64_t>>()) << text;
    EXPECT_EQ(tokenizer.decode(ids), c["decoded"].get<std::string>()) << text;
    ++checked;
  }
  EXPECT_EQ(checked, 152);
  // Its directory keeps the config, so a stage's model/ encodes the same way.
  const fs::path copy = testing::scratch_dir("llama2_spm_copy");
  tokenizer.save_to_directory(copy.string());
  EXPECT_TRUE(fs::exists(copy / kHfTokenizerConfigFileName));
  EXPECT_EQ(Tokenizer::load(copy.string()).encode(" leading space"), tokenizer.encode(" leading space"));
  // Without the config it is a plain SentencePiece model: sentencepiece's own dummy prefix, no BOS.
  const Tokenizer bare = Tokenizer::load((dir / kTokenizerFileName).string());
  EXPECT_TRUE(bare.prefix_ids().empty());
  EXPECT_EQ(bare.pieces(bare.encode(" hello")).front(), "\xE2\x96\x81\xE2\x96\x81");  // "▁▁", then "hello"
  EXPECT_EQ(tokenizer.pieces(tokenizer.encode(" hello")).front(), "\xE2\x96\x81");
}

}  // namespace
}  // namespace nurture
