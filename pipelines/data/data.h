// What users bring, made into tokens: chat examples for SFT rendered with the template (the JSONL
// records themselves are read by jsonl.h), and pre-training text tokenized once into binary
// token shards that are read memory-mapped.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "modules/text/chat_template.h"
#include "modules/text/tokenizer.h"
#include "pipelines/data/jsonl.h"

namespace nurture {

// ---- SFT --------------------------------------------------------------------------------------------

struct ChatDataOptions {
  std::string format = "chat";  // a registered dataset format
  int64_t max_length = 512;     // tokens per rendered conversation
  std::string truncation = "right";  // "right": cut the end; "drop": leave the example out
  bool skip_bad_lines = false;
};

// One rendered conversation: ids and the assistant-only loss mask (same length). A packed row
// (see pack_examples in batch.h) holds several, numbered 1, 2, ... in `segments`.
struct TokenizedExample {
  std::vector<int64_t> ids;
  std::vector<uint8_t> loss_mask;
  std::vector<int32_t> segments;  // empty: one conversation
};

struct ChatData {
  std::vector<TokenizedExample> examples;
  int64_t truncated = 0;  // cut to max_length
  int64_t dropped = 0;    // left out: too long under truncation "drop", or nothing to learn
  ReadStats stats;
};

// Reads, renders with the template and truncates. Examples whose mask is all zero after
// truncation are dropped (nothing to learn). Empty result: std::runtime_error naming the file.
ChatData load_chat_data(const std::filesystem::path& file, const Tokenizer& tokenizer,
                        const ChatTemplate& chat_template, const ChatDataOptions& options);

// ---- pre-training token shards ---------------------------------------------------------------------

// A prepared corpus in `dir`: tokens.bin (uint16 when the vocabulary fits, else uint32; documents
// separated by <|endoftext|>) and index.json (format, dtype, counts, sources, tokenizer).
struct ShardIndex {
  std::string dtype;  // "uint16" | "uint32"
  int64_t num_tokens = 0;
  int64_t num_documents = 0;
  int64_t vocab_size = 0;
  std::vector<std::string> sources;
  std::string tokenizer_fingerprint;  // so a different tokenizer re-prepares
};

struct PrepareOptions {
  std::vector<std::string> inputs;  // .txt (one document per line, or whole file) or .jsonl ({text})
  bool whole_files = false;         // .txt: the whole file is one document
  bool skip_bad_lines = false;
};

// Tokenizes inputs into `dir` (atomically: a temp dir renamed into place). Returns the index.
ShardIndex prepare_token_shard(const std::filesystem::path& dir, const Tokenizer& tokenizer,
                               const PrepareOptions& options);
// The index of a prepared shard when it exists and matches sources and tokenizer, else nothing.
bool shard_is_current(const std::filesystem::path& dir, const Tokenizer& tokenizer,
                      const PrepareOptions& options);
std::string tokenizer_fingerprint(const Tokenizer& tokenizer);

// A prepared shard, memory-mapped read-only.
class TokenShard {
 public:
  explicit TokenShard(const std::filesystem::path& dir);  // throws naming the dir when invalid
  ~TokenShard();
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  int64_t size() const { return index_.num_tokens; }
  const ShardIndex& index() const { return index_; }
  int64_t at(int64_t i) const;
  // tokens[offset, offset + length) -> [length] int64 (CPU)
  std::vector<int64_t> read(int64_t offset, int64_t length) const;

 private:
  ShardIndex index_;
  const void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Deterministic random windows of `length` tokens: the offset of window i depends only on
// (seed, i), so the data position is one integer (windows drawn so far) and a resumed run reads
// exactly what an uninterrupted one would.
int64_t window_offset(uint64_t seed, int64_t index, int64_t shard_size, int64_t length);

// A deterministic order over n examples, reshuffled every epoch: at(i) is the example at
// position i of the stream (i counts across epochs), a function of (seed, i) only. The current
// epoch's permutation is cached.
class ShuffledOrder {
 public:
  ShuffledOrder(uint64_t seed, int64_t n);
  int64_t at(int64_t position);
  int64_t size() const { return n_; }

 private:
  uint64_t seed_;
  int64_t n_;
  int64_t epoch_ = -1;
  std::vector<int64_t> permutation_;
};

}  // namespace nurture
