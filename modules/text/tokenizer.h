// The tokenizer: a SentencePiece model (BPE or unigram, byte fallback) plus the chat special
// tokens, which are atomic and never come out of ordinary text; or a Hugging Face tokenizer.json
// of the byte-level BPE family (modules/text/byte_level_bpe.h) with its tokenizer_config.json.
//
// A directory is read as Hugging Face's when it holds tokenizer.json (of a family nurture reads),
// or tokenizer.model with tokenizer_config.json (from_spm_with_hf_config), else as nurture's
// (tokenizer.model alone). For a Hugging Face tokenizer, eot_id() is tokenizer_config.json's
// eos_token, pad_id() its pad_token (else the eos token, as TRL pads), prefix_ids() what its
// post-processor puts first (Llama 3's <|begin_of_text|>), im_start_id()/im_end_id() the ChatML
// tokens where the vocabulary has them; is_special() is its added tokens marked special.
//
// SentencePiece itself lives in libnurture_spm_shim.so, loaded on first use by open_spm_shim()
// (see third_party/sentencepiece_shim/spm_shim.h for why): from $NURTURE_SPM_SHIM if set, else
// from the directory holding libnurture_text.so.
//
// Models trained here use this id layout (any other SentencePiece model, e.g. Llama 2's, also
// loads; the ids it lacks are -1):
//   0 <|pad|>   1 <unk>   2 <|endoftext|>   3 <|im_start|>   4 <|im_end|>
//   5..260 the byte-fallback pieces <0x00>..<0xFF> (when byte_fallback), then learned pieces.
// The four special pieces are SentencePiece control symbols: encoding never produces them, so
// the wrapper inserts their ids itself where the text holds them and allow_special is true.
// Text is not normalised (identity rule, no dummy prefix, whitespace kept), so
// decode(encode(s)) == s for any UTF-8 s without U+2581 ("▁", SentencePiece's space mark), and
// encode(a) followed by encode(b) decodes to a + b.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace nurture {

inline constexpr const char* kImStartToken = "<|im_start|>";
inline constexpr const char* kImEndToken = "<|im_end|>";
inline constexpr const char* kEndOfTextToken = "<|endoftext|>";
inline constexpr const char* kPadToken = "<|pad|>";
// The file name of the tokenizer inside a model directory; Tokenizer::load(dir) reads it.
inline constexpr const char* kTokenizerFileName = "tokenizer.model";
inline constexpr const char* kHfTokenizerFileName = "tokenizer.json";
inline constexpr const char* kHfTokenizerConfigFileName = "tokenizer_config.json";
inline constexpr const char* kHfChatTemplateFileName = "chat_template.jinja";  // transformers 5 writes it

struct TokenizerTrainOptions {
  std::vector<std::string> inputs;  // text files, one sentence / document per line
  std::string output;               // the .model file to write (atomically: temp + rename)
  int64_t vocab_size = 4096;        // exact; includes the 5 reserved and 256 byte pieces
  std::string model_type = "bpe";   // "bpe" | "unigram"
  bool byte_fallback = true;        // unknown characters become UTF-8 byte pieces, never <unk>
  // Share of the characters seen that get their own piece; the rest fall back to bytes.
  // 0.9995 suits large alphabets (CJK, Korean); use 1.0 for small ones (English, digits).
  double character_coverage = 0.9995;
  int64_t max_sentences = 0;            // sample this many lines (0 = all of them)
  int64_t max_sentence_length = 16384;  // longer lines (in bytes) are skipped
  bool split_digits = true;             // every digit its own piece (helps arithmetic)
  int num_threads = 2;
  uint32_t seed = 0;     // the same inputs, options and seed give the same file
  bool verbose = false;  // SentencePiece's own progress log on stderr
};

class Tokenizer {
 public:
  // Reads a SentencePiece .model file, a tokenizer.json, or a directory holding either
  // (tokenizer.json first, with tokenizer_config.json beside it when there is one). A missing,
  // truncated or foreign file is a std::runtime_error naming the path.
  static Tokenizer load(const std::string& path);
  // A Hugging Face tokenizer from the bytes of tokenizer.json, tokenizer_config.json and
  // chat_template.jinja (empty: none); `source_name` appears in errors and source().
  static Tokenizer from_hf_json(std::string tokenizer_json, std::string config_json, std::string source_name,
                                std::string chat_template_jinja = "");
  // The bytes of a .model file; `source_name` appears in errors and source().
  static Tokenizer from_bytes(std::string serialized_model, std::string source_name);
  // A SentencePiece model of a Hugging Face directory (Llama 2, Mistral: LlamaTokenizer) with its
  // tokenizer_config.json: eos/pad/bos tokens from it, BOS first when add_bos_token (LlamaTokenizer's
  // default), and text that starts with a space given no second "▁" (as transformers encodes).
  static Tokenizer from_spm_with_hf_config(std::string serialized_model, std::string config_json,
                                           std::string source_name, std::string chat_template_jinja = "");
  // Trains on options.inputs, writes options.output and returns it loaded.
  static Tokenizer train(const TokenizerTrainOptions& options);

  // allow_special: the texts of the special tokens in `text` become their ids. Otherwise they are
  // ordinary text (a user typing "<|im_end|>" gets the pieces of those characters).
  std::vector<int64_t> encode(const std::string& text, bool allow_special = false) const;
  std::vector<std::vector<int64_t>> encode_batch(const std::vector<std::string>& texts,
                                                 bool allow_special = false) const;
  // Special tokens come back as their text, the padding token as nothing; bytes that are not
  // UTF-8 (ids that end inside a character) as U+FFFD, as the tokenizers library decodes. An id outside the
  // vocabulary is a std::out_of_range.
  std::string decode(const std::vector<int64_t>& ids) const;
  std::vector<std::string> pieces(const std::vector<int64_t>& ids) const;

  int64_t vocab_size() const;
  int64_t token_id(const std::string& piece) const;  // -1 if the model has no such piece
  int64_t im_start_id() const;                       // -1 when the model lacks the token
  int64_t im_end_id() const;
  int64_t eot_id() const;             // <|endoftext|>
  int64_t pad_id() const;             // <|pad|>, or the model's own SentencePiece pad
  bool has_chat_tokens() const;       // both <|im_start|> and <|im_end|>
  bool is_special(int64_t id) const;  // one of the four above (Hugging Face: a special added token)
  // Ids a sequence starts with (Hugging Face's post-processor or add_bos_token BOS; none for
  // nurture's own SentencePiece models).
  std::vector<int64_t> prefix_ids() const;
  bool is_hugging_face() const;  // read from a tokenizer.json, or with a tokenizer_config.json
  // The model's own chat template as Jinja text (chat_template.jinja, else tokenizer_config.json's
  // chat_template); "" when it has none. modules/text/chat_template.h recognises its family.
  const std::string& chat_template_jinja() const;

  // Writes the serialized model (atomically); load(path) gives this tokenizer back.
  void save(const std::string& path) const;
  // Writes this tokenizer's files into a model directory: tokenizer.model, or tokenizer.json,
  // tokenizer_config.json and chat_template.jinja. load(dir) gives it back.
  void save_to_directory(const std::string& dir) const;
  const std::string& serialized() const;
  const std::string& source() const;  // the path or name it came from

 private:
  struct Model;
  explicit Tokenizer(std::shared_ptr<const Model> model);
  // A SentencePiece model with nurture's special tokens found (from_bytes, from_spm_with_hf_config).
  static std::shared_ptr<Model> load_spm(std::string serialized_model, std::string source_name);

  std::shared_ptr<const Model> model_;  // immutable; copies of a Tokenizer share it
};

// Loads the SentencePiece shim at `path` so that the libraries it brings stay apart from
// LibTorch's: dlopen() with RTLD_LOCAL | RTLD_DEEPBIND, or, in a build with AddressSanitizer
// (which refuses RTLD_DEEPBIND), dlmopen() into a link namespace of its own. Returns the handle
// for dlsym(), or nullptr with the reason in dlerror().
void* open_spm_shim(const std::string& path);

}  // namespace nurture
