// The tokenizer wrapper: finds and dlopen()s the SentencePiece shim, loads / trains / saves
// models through its C interface, and handles the special tokens SentencePiece itself won't
// (control symbols are never produced by encoding and decode to nothing).
#include "modules/text/tokenizer.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>
#include <optional>

#include "modules/core/files.h"
#include "modules/core/json_file.h"
#include "modules/text/byte_level_bpe.h"
#include "third_party/sentencepiece_shim/spm_shim.h"

#ifndef NURTURE_SPM_SHIM_NAME
#define NURTURE_SPM_SHIM_NAME "libnurture_spm_shim.so"
#endif

// Built with AddressSanitizer (gcc says so with __SANITIZE_ADDRESS__, clang with __has_feature).
#if defined(__SANITIZE_ADDRESS__)
#define NURTURE_WITH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NURTURE_WITH_ASAN 1
#endif
#endif

namespace nurture {

namespace fs = std::filesystem;

namespace {

// ---- the shim
// ------------------------------------------------------------------------------------

// The shim's entry points, looked up once per process. The library is never closed.
struct Shim {
  std::string path;
  decltype(&nurture_spm_abi_version) abi_version = nullptr;
  decltype(&nurture_spm_load) load = nullptr;
  decltype(&nurture_spm_free) free = nullptr;
  decltype(&nurture_spm_piece_count) piece_count = nullptr;
  decltype(&nurture_spm_piece_to_id) piece_to_id = nullptr;
  decltype(&nurture_spm_id_to_piece) id_to_piece = nullptr;
  decltype(&nurture_spm_piece_type) piece_type = nullptr;
  decltype(&nurture_spm_reserved_id) reserved_id = nullptr;
  decltype(&nurture_spm_encode) encode = nullptr;
  decltype(&nurture_spm_decode) decode = nullptr;
  decltype(&nurture_spm_train) train = nullptr;
};

// Any function of this library: dladdr() on it names the file libnurture_text.so was loaded
// from.
void locate_this_library() {}

// Where to look for the shim, and a phrase saying why there.
std::pair<std::string, std::string> shim_location() {
  if (const char* env = std::getenv("NURTURE_SPM_SHIM"); env != nullptr && *env != '\0')
    return {env, "named by $NURTURE_SPM_SHIM"};
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&locate_this_library), &info) != 0 &&
      info.dli_fname != nullptr && *info.dli_fname != '\0') {
    const fs::path library = fs::absolute(info.dli_fname);
    return {(library.parent_path() / NURTURE_SPM_SHIM_NAME).string(),
            "looked for beside " + library.string()};
  }
  return {NURTURE_SPM_SHIM_NAME, "looked for on the library search path"};
}

Shim open_shim() {
  const auto [path, why] = shim_location();
  const std::string hint =
      " HINT: build it with `cmake --build <build dir> --target nurture_spm_shim`, install it next "
      "to libnurture_text.so, or set NURTURE_SPM_SHIM=/path/to/" NURTURE_SPM_SHIM_NAME ".";
  if (path.find('/') != std::string::npos && !fs::exists(path))
    throw std::runtime_error("tokenizer: the SentencePiece shim " + path + " (" + why +
                             ") does not exist." + hint);
  void* library = open_spm_shim(path);
  if (library == nullptr) {
    const char* error = dlerror();
    throw std::runtime_error("tokenizer: cannot load the SentencePiece shim " + path + " (" + why +
                             "): " + (error ? error : "unknown dlopen error") + "." + hint);
  }
  Shim shim;
  shim.path = path;
  auto bind = [&](auto& slot, const char* name) {
    void* symbol = dlsym(library, name);
    if (symbol == nullptr)
      throw std::runtime_error("tokenizer: " + path + " has no function " + name +
                               "; it is not nurture's SentencePiece shim or is stale." + hint);
    slot = reinterpret_cast<std::remove_reference_t<decltype(slot)>>(symbol);
  };
  bind(shim.abi_version, "nurture_spm_abi_version");
  if (shim.abi_version() != NURTURE_SPM_SHIM_ABI)
    throw std::runtime_error("tokenizer: " + path + " implements shim interface version " +
                             std::to_string(shim.abi_version()) + ", this build needs " +
                             std::to_string(NURTURE_SPM_SHIM_ABI) + " (a stale build)." + hint);
  bind(shim.load, "nurture_spm_load");
  bind(shim.free, "nurture_spm_free");
  bind(shim.piece_count, "nurture_spm_piece_count");
  bind(shim.piece_to_id, "nurture_spm_piece_to_id");
  bind(shim.id_to_piece, "nurture_spm_id_to_piece");
  bind(shim.piece_type, "nurture_spm_piece_type");
  bind(shim.reserved_id, "nurture_spm_reserved_id");
  bind(shim.encode, "nurture_spm_encode");
  bind(shim.decode, "nurture_spm_decode");
  bind(shim.train, "nurture_spm_train");
  return shim;
}

}  // namespace

void* open_spm_shim(const std::string& path) {
#ifdef NURTURE_WITH_ASAN
  // A namespace of its own gets its own copies of libstdc++ and libc, and the shim is built
  // without the sanitizer: nothing allocated on one side is freed on the other (results come
  // back through callbacks), so the two heaps never mix.
  return dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
#else
  return dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
#endif
}

namespace {

const Shim& shim() {
  static const Shim loaded = open_shim();  // a failed attempt throws and is retried next call
  return loaded;
}

// Callbacks the shim hands its results to.
void append_bytes(void* ctx, const char* data, size_t n) {
  static_cast<std::string*>(ctx)->append(data, n);
}
void append_ids(void* ctx, const int* ids, size_t n) {
  auto* out = static_cast<std::vector<int64_t>*>(ctx);
  out->insert(out->end(), ids, ids + n);
}

constexpr size_t kErrorSize = 2048;

// SentencePiece's check failures read "Internal: ./src/x.cc(580) [condition] What to do."; keep
// the part a user can act on.
std::string tidy_error(const std::string& message) {
  const size_t source = message.find(".cc(");
  const size_t close = message.find("] ", source == std::string::npos ? 0 : source);
  if (source == std::string::npos || close == std::string::npos) return message;
  return message.substr(close + 2);
}

// ---- files
// ---------------------------------------------------------------------------------------

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::runtime_error(path.string() +
                             ": cannot open the tokenizer model: " + std::strerror(errno));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) throw std::runtime_error(path.string() + ": cannot read the tokenizer model");
  return bytes.str();
}

// The tokenizer's own checks before the atomic write (modules/core/files.h).
void write_tokenizer_file(const fs::path& path, const std::string& bytes) {
  if (path.empty()) throw std::invalid_argument("tokenizer: no output path to write the model to");
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  write_file_atomic(path, bytes);
}

}  // namespace

// ---- the model
// -----------------------------------------------------------------------------------

struct Tokenizer::Model {
  struct Special {
    std::string text;
    int64_t id;
  };

  nurture_spm* handle = nullptr;
  std::optional<ByteLevelBpe> bpe;  // a Hugging Face tokenizer.json instead of SentencePiece
  std::string hf_config;            // its tokenizer_config.json, as read
  std::string chat_template;        // the Jinja chat template: chat_template.jinja, or the config's
  bool chat_template_file = false;  // it came from chat_template.jinja (not tokenizer_config.json)
  std::string serialized;
  std::string source;
  int64_t vocab_size = 0;
  int64_t im_start = -1, im_end = -1, eot = -1, pad = -1;
  std::vector<Special> specials;  // those of the four the model has (and a Hugging Face config's)
  std::vector<int64_t> prefix;    // SentencePiece with a Hugging Face config: BOS when add_bos_token
  // SentencePiece with a Hugging Face config and a dummy prefix: text that starts with a space
  // gets no extra "▁" (tokenizers' Metaspace, which transformers' LlamaTokenizer uses).
  bool metaspace_prefix_rule = false;
  int64_t space_piece = -1;  // "▁", for the rule
  bool hugging_face = false;  // read with a Hugging Face tokenizer_config.json (or as tokenizer.json)

  Model() = default;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  ~Model() {
    if (handle != nullptr) shim().free(handle);
  }

  const Special* special(int64_t id) const {
    for (const auto& s : specials)
      if (s.id == id) return &s;
    return nullptr;
  }

  // Encodes text with no special tokens in it, appending to `ids`.
  void encode_plain(std::string_view text, std::vector<int64_t>& ids) const {
    if (metaspace_prefix_rule && !text.empty() && text.front() == ' ') {
      text.remove_prefix(1);  // SentencePiece's dummy prefix stands for it
      if (text.empty() && space_piece >= 0) ids.push_back(space_piece);  // " " alone: "▁"
    }
    if (text.empty()) return;
    char error[kErrorSize] = {0};
    if (shim().encode(handle, text.data(), text.size(), append_ids, &ids, error, sizeof error) != 0)
      throw std::runtime_error(source + ": cannot encode text: " + error);
  }

  // Decodes ids with no special tokens among them, appending to `text`.
  void decode_plain(const std::vector<int>& ids, std::string& text) const {
    if (ids.empty()) return;
    char error[kErrorSize] = {0};
    if (shim().decode(handle, ids.data(), ids.size(), append_bytes, &text, error, sizeof error) !=
        0)
      throw std::runtime_error(source + ": cannot decode ids: " + error);
  }

  void check_id(int64_t id) const {
    if (id < 0 || id >= vocab_size)
      throw std::out_of_range(source + ": token id " + std::to_string(id) +
                              " is outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
  }
};

Tokenizer::Tokenizer(std::shared_ptr<const Model> model) : model_(std::move(model)) {}

// ---- loading
// -------------------------------------------------------------------------------------

Tokenizer Tokenizer::load(const std::string& path) {
  fs::path file = path;
  if (fs::is_directory(file)) {
    const fs::path dir = file, config = dir / kHfTokenizerConfigFileName, jinja = dir / kHfChatTemplateFileName;
    auto optional_file = [](const fs::path& p) { return fs::exists(p) ? read_file(p) : std::string(); };
    const bool spm = fs::exists(dir / kTokenizerFileName) && fs::exists(config);
    if (fs::exists(dir / kHfTokenizerFileName)) {
      try {
        return from_hf_json(read_file(dir / kHfTokenizerFileName), optional_file(config),
                            (dir / kHfTokenizerFileName).string(), optional_file(jinja));
      } catch (const std::runtime_error&) {
        if (!spm) throw;  // else tokenizer.model is the same tokenizer (Llama 2, Mistral ship both)
      }
    }
    if (spm)
      return from_spm_with_hf_config(read_file(dir / kTokenizerFileName), read_file(config),
                                     (dir / kTokenizerFileName).string(), optional_file(jinja));
  }
  if (file.filename() == kHfTokenizerFileName && fs::exists(file)) {
    const fs::path config = file.parent_path() / kHfTokenizerConfigFileName;
    return from_hf_json(read_file(file), fs::exists(config) ? read_file(config) : std::string(), file.string());
  }
  if (fs::is_directory(file)) file /= kTokenizerFileName;
  if (!fs::exists(file))
    throw std::runtime_error(
        file.string() +
        ": no such tokenizer model. HINT: pass a SentencePiece .model file (or a "
        "model directory holding " +
        kTokenizerFileName +
        "), or train one with `nurture tokenizer "
        "train --input TEXT_FILE --output " +
        file.string() + "`");
  return from_bytes(read_file(file), file.string());
}

Tokenizer Tokenizer::from_bytes(std::string serialized_model, std::string source_name) {
  return Tokenizer(load_spm(std::move(serialized_model), std::move(source_name)));
}

std::shared_ptr<Tokenizer::Model> Tokenizer::load_spm(std::string serialized_model, std::string source_name) {
  const Shim& api = shim();
  auto model = std::make_shared<Model>();
  model->source = std::move(source_name);
  char error[kErrorSize] = {0};
  model->handle = api.load(serialized_model.data(), serialized_model.size(), error, sizeof error);
  if (model->handle == nullptr)
    throw std::runtime_error(model->source + ": not a valid SentencePiece model: " + error +
                             ". HINT: pass the .model file written by `nurture tokenizer train` "
                             "or SentencePiece's spm_train (e.g. a Llama tokenizer.model)");
  model->serialized = std::move(serialized_model);
  model->vocab_size = api.piece_count(model->handle);

  auto find = [&](const char* piece) -> int64_t {
    return api.piece_to_id(model->handle, piece, std::strlen(piece));
  };
  model->im_start = find(kImStartToken);
  model->im_end = find(kImEndToken);
  model->eot = find(kEndOfTextToken);
  model->pad = find(kPadToken);
  if (model->pad < 0) model->pad = api.reserved_id(model->handle, NURTURE_SPM_PAD);
  auto add_special = [&](int64_t id) {
    if (id < 0) return;
    std::string piece;
    api.id_to_piece(model->handle, static_cast<int>(id), append_bytes, &piece);
    model->specials.push_back({std::move(piece), id});
  };
  add_special(model->im_start);
  add_special(model->im_end);
  add_special(model->eot);
  add_special(model->pad);
  return model;
}

namespace {

// `bytes` with every invalid or cut-off UTF-8 sequence replaced by U+FFFD, as the tokenizers
// library and SentencePiece decode: a reply whose last token ends inside a character stays text.
std::string with_valid_utf8(const std::string& bytes) {
  std::string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    size_t length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = length > 0 && i + length <= n;
    for (size_t k = 1; ok && k < length; ++k) ok = (p[i + k] & 0xC0) == 0x80;
    if (ok && length > 1) {  // no overlong forms, surrogates or code points above U+10FFFF
      uint32_t cp = c & (0x7F >> length);
      for (size_t k = 1; k < length; ++k) cp = (cp << 6) | (p[i + k] & 0x3F);
      ok = cp >= (length == 2 ? 0x80u : length == 3 ? 0x800u : 0x10000u) && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
    }
    if (ok) {
      out.append(bytes, i, length);
      i += length;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

// tokenizer_config.json's name of a special token: "<|eot_id|>" or {"content": "<|eot_id|>", ...}.
std::string special_token_name(const nlohmann::json& config, const std::string& key, const std::string& source) {
  if (!config.contains(key) || config[key].is_null()) return "";
  const auto& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  throw std::runtime_error(source + ": " + key + ": expected a token (a string or {\"content\": ...}), got " + v.dump());
}

// tokenizer_config.json as a JSON object ({} when `text` is empty).
nlohmann::json parse_tokenizer_config(const std::string& text, const std::string& source) {
  if (text.empty()) return nlohmann::json::object();
  const nlohmann::json config = parse_json(text, source);
  if (!config.is_object()) throw std::runtime_error(source + ": expected a JSON object");
  return config;
}

// tokenizer_config.json's chat_template: the Jinja text, or a list of named ones (transformers
// 4.x) of which "default" is the one apply_chat_template uses; "" when there is none.
std::string config_chat_template(const nlohmann::json& config, const std::string& source) {
  if (!config.contains("chat_template") || config["chat_template"].is_null()) return "";
  const auto& v = config["chat_template"];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {
    for (const auto& entry : v) {
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string())
        return entry["template"].get<std::string>();
    }
    throw std::runtime_error(source + ": chat_template: a list of templates without one named \"default\"");
  }
  throw std::runtime_error(source + ": chat_template: expected Jinja text or a list of {name, template}, got " +
                           v.type_name());
}

}  // namespace

Tokenizer Tokenizer::from_hf_json(std::string tokenizer_json, std::string config_json, std::string source_name,
                                  std::string chat_template_jinja) {
  auto model = std::make_shared<Model>();
  model->source = std::move(source_name);
  model->bpe = ByteLevelBpe::from_json(tokenizer_json, model->source);
  model->serialized = std::move(tokenizer_json);
  model->hf_config = std::move(config_json);
  model->hugging_face = true;
  model->vocab_size = model->bpe->vocab_size();
  const std::string config_source = (fs::path(model->source).parent_path() / kHfTokenizerConfigFileName).string();
  const nlohmann::json config = parse_tokenizer_config(model->hf_config, config_source);
  auto id_of = [&](const std::string& key) -> int64_t {
    const std::string name = special_token_name(config, key, config_source);
    if (name.empty()) return -1;
    const int64_t id = model->bpe->token_id(name);
    if (id < 0)
      throw std::runtime_error(config_source + ": " + key + ": \"" + name + "\" is not a token of " + model->source);
    return id;
  };
  model->im_start = model->bpe->token_id(kImStartToken);
  model->im_end = model->bpe->token_id(kImEndToken);
  model->eot = id_of("eos_token");
  if (model->eot < 0) model->eot = model->bpe->token_id(kEndOfTextToken);
  model->pad = id_of("pad_token");
  if (model->pad < 0) model->pad = model->eot;
  model->chat_template_file = !chat_template_jinja.empty();
  model->chat_template = model->chat_template_file ? std::move(chat_template_jinja)
                                                   : config_chat_template(config, config_source);
  return Tokenizer(std::move(model));
}

Tokenizer Tokenizer::from_spm_with_hf_config(std::string serialized_model, std::string config_json,
                                             std::string source_name, std::string chat_template_jinja) {
  std::shared_ptr<Model> model = load_spm(std::move(serialized_model), std::move(source_name));
  const std::string config_source = (fs::path(model->source).parent_path() / kHfTokenizerConfigFileName).string();
  const nlohmann::json config = parse_tokenizer_config(config_json, config_source);
  model->hf_config = std::move(config_json);
  model->hugging_face = true;
  const Tokenizer probe(model);  // the model as loaded, to look pieces up
  auto id_of = [&](const std::string& key) -> int64_t {
    const std::string name = special_token_name(config, key, config_source);
    if (name.empty()) return -1;
    const int64_t id = probe.token_id(name);
    if (id < 0)
      throw std::runtime_error(config_source + ": " + key + ": \"" + name + "\" is not a piece of " + model->source);
    if (model->special(id) == nullptr) model->specials.push_back({name, id});  // text <-> id like the others
    return id;
  };
  const int64_t bos = id_of("bos_token");
  if (const int64_t eos = id_of("eos_token"); eos >= 0) model->eot = eos;
  const int64_t pad = id_of("pad_token");
  model->pad = pad >= 0 ? pad : model->eot;
  auto flag = [&](const char* key, bool fallback) {
    if (!config.contains(key) || config[key].is_null()) return fallback;
    if (!config[key].is_boolean()) throw std::runtime_error(config_source + ": " + key + ": expected true or false");
    return config[key].get<bool>();
  };
  // transformers' LlamaTokenizer (Llama 2, Mistral) adds BOS unless told otherwise.
  const std::string tokenizer_class = config.value("tokenizer_class", "");
  if (flag("add_bos_token", tokenizer_class.find("Llama") != std::string::npos)) {
    if (bos < 0) throw std::runtime_error(config_source + ": add_bos_token is true but there is no bos_token");
    model->prefix = {bos};
  }
  if (flag("add_eos_token", false))
    throw std::runtime_error(config_source + ": add_eos_token: true (an EOS after every text) is not supported");
  const auto a = probe.pieces(probe.encode("a"));
  model->metaspace_prefix_rule = !a.empty() && a.front().rfind("\xE2\x96\x81", 0) == 0;  // a dummy "▁"
  model->space_piece = probe.token_id("\xE2\x96\x81");
  model->chat_template_file = !chat_template_jinja.empty();
  model->chat_template = model->chat_template_file ? std::move(chat_template_jinja)
                                                   : config_chat_template(config, config_source);
  return Tokenizer(std::move(model));
}

// ---- training
// ------------------------------------------------------------------------------------

Tokenizer Tokenizer::train(const TokenizerTrainOptions& options) {
  auto invalid = [&](const std::string& what) {
    return std::invalid_argument("tokenizer training (output " + options.output + "): " + what);
  };
  if (options.inputs.empty()) throw invalid("no input files; give at least one text file");
  if (options.output.empty()) throw invalid("no output path for the .model file");
  for (const auto& input : options.inputs) {
    if (!fs::is_regular_file(input))
      throw std::runtime_error(
          input +
          ": tokenizer training input does not exist or is not a "
          "file. HINT: give text files with one sentence or document per line");
  }
  if (options.model_type != "bpe" && options.model_type != "unigram")
    throw invalid("model_type \"" + options.model_type + "\" is not one of bpe, unigram");
  if (options.vocab_size <= 0) throw invalid("vocab_size must be positive");
  if (!(options.character_coverage > 0.0 && options.character_coverage <= 1.0))
    throw invalid("character_coverage must be in (0, 1], got " +
                  std::to_string(options.character_coverage));
  if (options.max_sentences < 0) throw invalid("max_sentences must be >= 0 (0 = all)");
  if (options.max_sentence_length <= 0) throw invalid("max_sentence_length must be positive");
  if (options.num_threads < 1) throw invalid("num_threads must be >= 1");

  std::ostringstream coverage;
  coverage.precision(17);
  coverage << options.character_coverage;
  const std::vector<std::pair<std::string, std::string>> flags = {
      {"model_type", options.model_type},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"character_coverage", coverage.str()},
      {"byte_fallback", options.byte_fallback ? "true" : "false"},
      {"split_digits", options.split_digits ? "true" : "false"},
      {"input_sentence_size", std::to_string(options.max_sentences)},
      {"shuffle_input_sentence", "true"},
      {"max_sentence_length", std::to_string(options.max_sentence_length)},
      {"num_threads", std::to_string(options.num_threads)},
      // Exact round trips: no normalisation, whitespace kept as written, no dummy prefix (so
      // separately encoded pieces concatenate).
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "false"},
      {"allow_whitespace_only_pieces", "true"},
      // The id layout documented in tokenizer.h.
      {"pad_id", "0"},
      {"pad_piece", kPadToken},
      {"unk_id", "1"},
      {"unk_piece", "<unk>"},
      {"bos_id", "-1"},
      {"eos_id", "2"},
      {"eos_piece", kEndOfTextToken},
      {"control_symbols", std::string(kImStartToken) + "," + kImEndToken},
      {"minloglevel", options.verbose ? "0" : "1"},
  };
  std::vector<const char*> keys, values, inputs;
  for (const auto& [key, value] : flags) {
    keys.push_back(key.c_str());
    values.push_back(value.c_str());
  }
  for (const auto& input : options.inputs) inputs.push_back(input.c_str());

  const Shim& api = shim();
  static std::mutex training;  // SentencePiece's trainer keeps global state
  std::string serialized;
  char error[kErrorSize] = {0};
  {
    std::lock_guard<std::mutex> lock(training);
    if (api.train(keys.data(), values.data(), keys.size(), inputs.data(), inputs.size(),
                  options.seed, append_bytes, &serialized, error, sizeof error) != 0)
      throw std::runtime_error("tokenizer training for " + options.output +
                               " failed: " + tidy_error(error));
  }
  write_tokenizer_file(options.output, serialized);
  return from_bytes(std::move(serialized), options.output);
}

// ---- encoding and decoding
// -----------------------------------------------------------------------

std::vector<int64_t> Tokenizer::encode(const std::string& text, bool allow_special) const {
  std::vector<int64_t> ids;
  const Model& m = *model_;
  if (m.bpe) {
    try {
      return m.bpe->encode(text, allow_special);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(m.source + ": cannot encode text: " + e.what());
    }
  }
  if (!allow_special || m.specials.empty()) {
    m.encode_plain(text, ids);
    return ids;
  }
  // Split at the special tokens' texts (leftmost, then longest), encoding the text between.
  const std::string_view all(text);
  std::vector<size_t> next(m.specials.size(), 0);  // next occurrence of each special from `pos`
  for (size_t i = 0; i < m.specials.size(); ++i) next[i] = all.find(m.specials[i].text);
  size_t pos = 0;
  while (pos < all.size()) {
    size_t best = std::string_view::npos;
    const Model::Special* hit = nullptr;
    for (size_t i = 0; i < m.specials.size(); ++i) {
      if (next[i] != std::string_view::npos && next[i] < pos)
        next[i] = all.find(m.specials[i].text, pos);
      if (next[i] == std::string_view::npos) continue;
      if (next[i] < best || (next[i] == best && m.specials[i].text.size() > hit->text.size())) {
        best = next[i];
        hit = &m.specials[i];
      }
    }
    if (hit == nullptr) {
      m.encode_plain(all.substr(pos), ids);
      break;
    }
    m.encode_plain(all.substr(pos, best - pos), ids);
    ids.push_back(hit->id);
    pos = best + hit->text.size();
  }
  return ids;
}

std::vector<std::vector<int64_t>> Tokenizer::encode_batch(const std::vector<std::string>& texts,
                                                          bool allow_special) const {
  std::vector<std::vector<int64_t>> out(texts.size());
  at::parallel_for(0, static_cast<int64_t>(texts.size()), 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = encode(texts[i], allow_special);
  });
  return out;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids) const {
  const Model& m = *model_;
  std::string text;
  if (m.bpe) {
    std::vector<int64_t> kept;  // the padding token decodes to nothing
    for (int64_t id : ids) {
      m.check_id(id);
      if (id != m.pad || m.pad == m.eot) kept.push_back(id);
    }
    return with_valid_utf8(m.bpe->decode(kept, /*skip_special=*/false));
  }
  std::vector<int> run;  // ordinary ids waiting to be decoded together
  for (int64_t id : ids) {
    m.check_id(id);
    if (const auto* special = m.special(id)) {
      m.decode_plain(run, text);
      run.clear();
      if (id != m.pad) text += special->text;
    } else {
      run.push_back(static_cast<int>(id));
    }
  }
  m.decode_plain(run, text);
  return text;
}

std::vector<std::string> Tokenizer::pieces(const std::vector<int64_t>& ids) const {
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (int64_t id : ids) {
    model_->check_id(id);
    if (model_->bpe) {
      out.push_back(model_->bpe->token(id));
      continue;
    }
    std::string piece;
    shim().id_to_piece(model_->handle, static_cast<int>(id), append_bytes, &piece);
    out.push_back(std::move(piece));
  }
  return out;
}

// ---- vocabulary
// ----------------------------------------------------------------------------------

int64_t Tokenizer::vocab_size() const { return model_->vocab_size; }

int64_t Tokenizer::token_id(const std::string& piece) const {
  if (model_->bpe) return model_->bpe->token_id(piece);
  return shim().piece_to_id(model_->handle, piece.data(), piece.size());
}

int64_t Tokenizer::im_start_id() const { return model_->im_start; }
int64_t Tokenizer::im_end_id() const { return model_->im_end; }
int64_t Tokenizer::eot_id() const { return model_->eot; }
int64_t Tokenizer::pad_id() const { return model_->pad; }
bool Tokenizer::has_chat_tokens() const { return model_->im_start >= 0 && model_->im_end >= 0; }
bool Tokenizer::is_special(int64_t id) const {
  return model_->bpe ? model_->bpe->is_special(id) : model_->special(id) != nullptr;
}
std::vector<int64_t> Tokenizer::prefix_ids() const {
  return model_->bpe ? model_->bpe->prefix_ids() : model_->prefix;
}
bool Tokenizer::is_hugging_face() const { return model_->hugging_face; }

void Tokenizer::save(const std::string& path) const {
  write_tokenizer_file(path, model_->serialized);
}

void Tokenizer::save_to_directory(const std::string& dir) const {
  write_tokenizer_file(fs::path(dir) / (model_->bpe ? kHfTokenizerFileName : kTokenizerFileName), model_->serialized);
  if (!model_->hf_config.empty()) write_tokenizer_file(fs::path(dir) / kHfTokenizerConfigFileName, model_->hf_config);
  if (model_->chat_template_file)
    write_tokenizer_file(fs::path(dir) / kHfChatTemplateFileName, model_->chat_template);
}
const std::string& Tokenizer::chat_template_jinja() const { return model_->chat_template; }
const std::string& Tokenizer::serialized() const { return model_->serialized; }
const std::string& Tokenizer::source() const { return model_->source; }

}  // namespace nurture
