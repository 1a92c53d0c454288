// SFT conversations as tokens, and the pre-training token shards.
#include "pipelines/data/data.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>

#include "modules/core/json_file.h"
#include "pipelines/data/dataset_format.h"
#include "pipelines/runtime/log.h"

namespace nurture {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- SFT --------------------------------------------------------------------------------------------

ChatData load_chat_data(const fs::path& file, const Tokenizer& tokenizer,
                        const ChatTemplate& chat_template, const ChatDataOptions& o) {
  const auto& formats = dataset_format_registry();
  if (!formats.contains(o.format)) throw std::runtime_error(formats.unknown(o.format));
  const ChatFormat& to_messages = formats.get(o.format).to_messages;
  ChatData data;
  data.stats = for_each_jsonl(file, o.skip_bad_lines, [&](const json& record, const std::string&) {
    RenderedChat chat = chat_template.render(tokenizer, to_messages(record), false);
    if (static_cast<int64_t>(chat.ids.size()) > o.max_length) {
      if (o.truncation == "drop") {
        ++data.dropped;
        return;
      }
      chat.ids.resize(o.max_length);
      chat.loss_mask.resize(o.max_length);
      ++data.truncated;
    }
    if (std::find(chat.loss_mask.begin(), chat.loss_mask.end(), 1) == chat.loss_mask.end()) {
      ++data.dropped;  // nothing to learn: no assistant token (left)
      return;
    }
    data.examples.push_back({std::move(chat.ids), std::move(chat.loss_mask)});
  });
  if (data.examples.empty())
    throw std::runtime_error(file.string() + ": no usable example (" + std::to_string(data.stats.lines) +
                             " lines, " + std::to_string(data.dropped) + " dropped, " +
                             std::to_string(data.stats.skipped) + " skipped)");
  return data;
}

// ---- pre-training token shards ---------------------------------------------------------------------

static constexpr const char* kShardFormat = "nurture-tokens";

std::string tokenizer_fingerprint(const Tokenizer& tokenizer) {
  std::ostringstream out;
  out << std::hex << std::hash<std::string>{}(tokenizer.serialized()) << "-" << std::dec
      << tokenizer.vocab_size();
  return out.str();
}

// Each source with its size, so an edited input file is noticed.
static std::vector<std::string> describe_sources(const PrepareOptions& o) {
  std::vector<std::string> out;
  for (const auto& input : o.inputs) {
    std::error_code error;
    const auto size = fs::file_size(input, error);
    out.push_back(input + " (" + (error ? std::string("missing") : std::to_string(size) + " bytes") + ")");
  }
  return out;
}

static ShardIndex read_index(const fs::path& dir) {
  const fs::path file = dir / "index.json";
  if (!std::ifstream(file)) throw std::runtime_error(file.string() + ": cannot read (prepare the data first)");
  try {
    const json j = read_json_file(file, {/*max_bytes=*/1 << 20});
    if (j.value("format", "") != kShardFormat) throw std::runtime_error("format is not " + std::string(kShardFormat));
    ShardIndex index;
    index.dtype = j.at("dtype").get<std::string>();
    index.num_tokens = j.at("num_tokens").get<int64_t>();
    index.num_documents = j.at("num_documents").get<int64_t>();
    index.vocab_size = j.at("vocab_size").get<int64_t>();
    index.sources = j.at("sources").get<std::vector<std::string>>();
    index.tokenizer_fingerprint = j.at("tokenizer").get<std::string>();
    if (index.dtype != "uint16" && index.dtype != "uint32") throw std::runtime_error("dtype " + index.dtype);
    return index;
  } catch (const std::exception& e) {
    throw std::runtime_error(file.string() + ": not a token shard index (" + e.what() + ")");
  }
}

bool shard_is_current(const fs::path& dir, const Tokenizer& tokenizer, const PrepareOptions& o) {
  if (!fs::exists(dir / "index.json") || !fs::exists(dir / "tokens.bin")) return false;
  try {
    ShardIndex index = read_index(dir);
    return index.sources == describe_sources(o) && index.tokenizer_fingerprint == tokenizer_fingerprint(tokenizer);
  } catch (const std::exception&) {
    return false;
  }
}

static ShardIndex write_token_shard(const fs::path& dir, const fs::path& tmp, const Tokenizer& tokenizer,
                                   const PrepareOptions& o) {
  if (o.inputs.empty()) throw std::runtime_error("prepare: no input files");
  ShardIndex index;
  index.vocab_size = tokenizer.vocab_size();
  index.dtype = index.vocab_size <= 65536 ? "uint16" : "uint32";
  index.sources = describe_sources(o);
  index.tokenizer_fingerprint = tokenizer_fingerprint(tokenizer);
  const int64_t eot = tokenizer.eot_id();
  if (eot < 0) throw std::runtime_error(tokenizer.source() + ": the tokenizer has no <|endoftext|> token");

  fs::create_directories(tmp);
  std::ofstream out(tmp / "tokens.bin", std::ios::binary);
  auto write_document = [&](const std::string& text) {
    std::vector<int64_t> ids = tokenizer.encode(text);
    ids.push_back(eot);
    if (index.dtype == "uint16") {
      std::vector<uint16_t> narrow(ids.begin(), ids.end());
      out.write(reinterpret_cast<const char*>(narrow.data()), narrow.size() * sizeof(uint16_t));
    } else {
      std::vector<uint32_t> narrow(ids.begin(), ids.end());
      out.write(reinterpret_cast<const char*>(narrow.data()), narrow.size() * sizeof(uint32_t));
    }
    index.num_tokens += static_cast<int64_t>(ids.size());
    ++index.num_documents;
  };
  for (const auto& input : o.inputs) {
    const fs::path path(input);
    if (path.extension() == ".jsonl") {
      for_each_jsonl(path, o.skip_bad_lines,
                     [&](const json& r, const std::string&) { write_document(string_field(r, "text")); });
      continue;
    }
    std::ifstream in(path);
    if (!in) throw std::runtime_error(input + ": cannot read (does the file exist?)");
    if (o.whole_files) {
      std::stringstream buffer;
      buffer << in.rdbuf();
      write_document(buffer.str());
    } else {
      std::string line;
      while (std::getline(in, line))
        if (line.find_first_not_of(" \t\r") != std::string::npos) write_document(line);
    }
  }
  out.close();
  if (!out) throw std::runtime_error((tmp / "tokens.bin").string() + ": write failed (disk full?)");
  if (index.num_tokens == 0) throw std::runtime_error("prepare: the inputs hold no text");
  {
    std::ofstream idx(tmp / "index.json");
    idx << json{{"format", kShardFormat}, {"version", 1}, {"dtype", index.dtype},
                {"num_tokens", index.num_tokens}, {"num_documents", index.num_documents},
                {"vocab_size", index.vocab_size}, {"sources", index.sources},
                {"tokenizer", index.tokenizer_fingerprint}}
               .dump(2)
        << "\n";
  }
  fs::remove_all(dir);
  fs::rename(tmp, dir);
  return index;
}

ShardIndex prepare_token_shard(const fs::path& dir, const Tokenizer& tokenizer, const PrepareOptions& o) {
  const fs::path tmp = dir.string() + ".tmp";
  fs::remove_all(tmp);
  try {
    return write_token_shard(dir, tmp, tokenizer, o);
  } catch (...) {
    fs::remove_all(tmp);  // a failed preparation leaves the previous shard (if any) untouched
    throw;
  }
}

TokenShard::TokenShard(const fs::path& dir) : index_(read_index(dir)) {
  const fs::path file = dir / "tokens.bin";
  const int fd = ::open(file.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error(file.string() + ": cannot open");
  struct stat st {};
  ::fstat(fd, &st);
  bytes_ = static_cast<size_t>(st.st_size);
  const size_t width = index_.dtype == "uint16" ? 2 : 4;
  if (bytes_ != static_cast<size_t>(index_.num_tokens) * width) {
    ::close(fd);
    throw std::runtime_error(file.string() + ": holds " + std::to_string(bytes_) + " bytes, index.json says " +
                             std::to_string(index_.num_tokens) + " " + index_.dtype +
                             " tokens (truncated? prepare it again)");
  }
  data_ = bytes_ ? ::mmap(nullptr, bytes_, PROT_READ, MAP_SHARED, fd, 0) : nullptr;
  ::close(fd);
  if (data_ == MAP_FAILED) throw std::runtime_error(file.string() + ": mmap failed");
}

TokenShard::~TokenShard() {
  if (data_ && data_ != MAP_FAILED) ::munmap(const_cast<void*>(data_), bytes_);
}

int64_t TokenShard::at(int64_t i) const {
  return index_.dtype == "uint16" ? static_cast<const uint16_t*>(data_)[i] : static_cast<const uint32_t*>(data_)[i];
}

std::vector<int64_t> TokenShard::read(int64_t offset, int64_t length) const {
  TORCH_CHECK(offset >= 0 && offset + length <= size(), "TokenShard::read: [", offset, ", ", offset + length,
              ") outside [0, ", size(), ")");
  std::vector<int64_t> out(static_cast<size_t>(length));
  for (int64_t i = 0; i < length; ++i) out[i] = at(offset + i);
  return out;
}

// splitmix64: a well-mixed 64-bit hash of (seed, index).
static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

int64_t window_offset(uint64_t seed, int64_t index, int64_t shard_size, int64_t length) {
  TORCH_CHECK(shard_size >= length, "window_offset: a window of ", length, " tokens does not fit in ",
              shard_size);
  const uint64_t range = static_cast<uint64_t>(shard_size - length + 1);
  return static_cast<int64_t>(mix(mix(seed) ^ static_cast<uint64_t>(index)) % range);
}

ShuffledOrder::ShuffledOrder(uint64_t seed, int64_t n) : seed_(seed), n_(n) {
  TORCH_CHECK(n > 0, "ShuffledOrder: no examples");
}

int64_t ShuffledOrder::at(int64_t position) {
  const int64_t epoch = position / n_;
  if (epoch != epoch_) {
    permutation_.resize(static_cast<size_t>(n_));
    std::iota(permutation_.begin(), permutation_.end(), 0);
    std::mt19937_64 rng(mix(seed_ ^ mix(static_cast<uint64_t>(epoch))));
    std::shuffle(permutation_.begin(), permutation_.end(), rng);
    epoch_ = epoch;
  }
  return permutation_[static_cast<size_t>(position % n_)];
}

}  // namespace nurture
