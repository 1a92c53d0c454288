// libnurture_spm_shim.so: SentencePiece behind the plain-C interface of spm_shim.h. This is the
// only translation unit in nurture that includes SentencePiece's headers or links its libraries;
// it never includes LibTorch. Every entry point catches everything: no exception crosses the C
// boundary, errors come back as a return code and a message copied into the caller's buffer.
#include "third_party/sentencepiece_shim/spm_shim.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstring>
#include <exception>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

struct nurture_spm {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {

// ---- errors ----------------------------------------------------------------------------------

void copy_error(char* err, size_t err_size, const std::string& message) {
  if (err == nullptr || err_size == 0) return;
  const size_t n = message.size() < err_size - 1 ? message.size() : err_size - 1;
  std::memcpy(err, message.data(), n);
  err[n] = '\0';
}

// Runs `body` (returning the C result); any exception becomes `failure` plus a message.
template <typename Result, typename Body>
Result guarded(char* err, size_t err_size, Result failure, Body&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    copy_error(err, err_size, std::string("SentencePiece: ") + e.what());
  } catch (...) {
    copy_error(err, err_size, "SentencePiece: unknown error");
  }
  return failure;
}

// ---- model validation --------------------------------------------------------------------------
// SentencePiece accepts any bytes protobuf can parse, and a file cut at a field boundary (or a
// text file that happens to parse) still parses. A real model always carries its normalizer spec
// (ModelProto field 3, written after the pieces), so we walk the top-level protobuf fields and
// insist on it. Returns an empty string when the bytes look like a model, else what is wrong.

bool read_varint(const unsigned char*& p, const unsigned char* end, uint64_t& value) {
  value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (p == end) return false;
    const unsigned char byte = *p++;
    value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

std::string check_model_bytes(const char* data, size_t size) {
  if (size == 0) return "the file is empty";
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  const auto* end = p + size;
  bool has_pieces = false, has_normalizer = false;
  while (p < end) {
    const size_t offset = static_cast<size_t>(p - reinterpret_cast<const unsigned char*>(data));
    uint64_t tag = 0;
    if (!read_varint(p, end, tag))
      return "it ends inside a field header at byte " + std::to_string(offset) + " (truncated?)";
    const uint64_t field = tag >> 3;
    const int wire_type = static_cast<int>(tag & 7);
    if (field == 0) return "invalid protobuf field number at byte " + std::to_string(offset);
    uint64_t length = 0;
    switch (wire_type) {
      case 0:
        if (!read_varint(p, end, length)) return "it ends inside a value (truncated?)";
        break;
      case 1:
        if (end - p < 8) return "it ends inside a value (truncated?)";
        p += 8;
        break;
      case 5:
        if (end - p < 4) return "it ends inside a value (truncated?)";
        p += 4;
        break;
      case 2:
        if (!read_varint(p, end, length)) return "it ends inside a length (truncated?)";
        if (length > static_cast<uint64_t>(end - p))
          return "field " + std::to_string(field) + " at byte " + std::to_string(offset) +
                 " runs past the end of the file (truncated?)";
        p += length;
        if (field == 1) has_pieces = true;
        if (field == 3) has_normalizer = true;
        break;
      default:
        return "invalid protobuf wire type " + std::to_string(wire_type) + " at byte " +
               std::to_string(offset);
    }
  }
  if (!has_pieces) return "it holds no vocabulary pieces";
  if (!has_normalizer) return "it has no normalizer spec (truncated?)";
  return {};
}

// ---- training input ----------------------------------------------------------------------------

// SentencePiece's status type: its own util::Status up to 0.2.0, absl::Status from 0.2.1. Both
// have ok(), ToString(), code() and a (code, message) constructor.
using SpmStatus = decltype(std::declval<const sentencepiece::SentenceIterator&>().status());
using SpmStatusCode = decltype(std::declval<const SpmStatus&>().code());

// Yields the non-empty lines of several text files in order, without their line endings.
class FileLineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit FileLineIterator(std::vector<std::string> paths) : paths_(std::move(paths)) { Next(); }

  bool done() const override { return done_; }
  const std::string& value() const override { return line_; }
  SpmStatus status() const override { return status_; }

  void Next() override {
    while (!done_) {
      if (!stream_.is_open()) {
        if (next_file_ == paths_.size()) {
          done_ = true;
          return;
        }
        const std::string& path = paths_[next_file_++];
        stream_.open(path, std::ios::binary);
        if (!stream_) {
          status_ = SpmStatus(SpmStatusCode::kNotFound, "cannot open training input '" + path + "'");
          done_ = true;
          return;
        }
      }
      if (std::getline(stream_, line_)) {
        if (!line_.empty() && line_.back() == '\r') line_.pop_back();
        if (!line_.empty()) return;
      } else {
        stream_.close();
        stream_.clear();
      }
    }
  }

 private:
  std::vector<std::string> paths_;
  size_t next_file_ = 0;
  std::ifstream stream_;
  std::string line_;
  bool done_ = false;
  SpmStatus status_;
};

}  // namespace

// ---- the C interface
// -----------------------------------------------------------------------------

extern "C" {

int nurture_spm_abi_version(void) { return NURTURE_SPM_SHIM_ABI; }

nurture_spm* nurture_spm_load(const char* data, size_t size, char* err, size_t err_size) {
  return guarded<nurture_spm*>(err, err_size, nullptr, [&]() -> nurture_spm* {
    const std::string problem = check_model_bytes(data, size);
    if (!problem.empty()) {
      copy_error(err, err_size, problem);
      return nullptr;
    }
    auto spm = std::make_unique<nurture_spm>();
    const auto status = spm->processor.LoadFromSerializedProto(std::string(data, size));
    if (!status.ok()) {
      copy_error(err, err_size, status.ToString());
      return nullptr;
    }
    return spm.release();
  });
}

void nurture_spm_free(nurture_spm* spm) { delete spm; }

int nurture_spm_piece_count(const nurture_spm* spm) { return spm->processor.GetPieceSize(); }

int nurture_spm_piece_to_id(const nurture_spm* spm, const char* piece, size_t n) {
  return guarded<int>(nullptr, 0, -1, [&] {
    const std::string wanted(piece, n);
    const int id = spm->processor.PieceToId(wanted);
    // PieceToId answers <unk>'s id for anything it does not know.
    if (id < 0 || id >= spm->processor.GetPieceSize()) return -1;
    return spm->processor.IdToPiece(id) == wanted ? id : -1;
  });
}

int nurture_spm_id_to_piece(const nurture_spm* spm, int id, nurture_spm_bytes_sink sink,
                            void* ctx) {
  if (id < 0 || id >= spm->processor.GetPieceSize()) return -1;
  return guarded<int>(nullptr, 0, -1, [&] {
    const std::string& piece = spm->processor.IdToPiece(id);
    sink(ctx, piece.data(), piece.size());
    return 0;
  });
}

int nurture_spm_piece_type(const nurture_spm* spm, int id) {
  const auto& p = spm->processor;
  if (id < 0 || id >= p.GetPieceSize()) return -1;
  if (p.IsUnknown(id)) return NURTURE_SPM_PIECE_UNKNOWN;
  if (p.IsControl(id)) return NURTURE_SPM_PIECE_CONTROL;
  if (p.IsUnused(id)) return NURTURE_SPM_PIECE_UNUSED;
  if (p.IsByte(id)) return NURTURE_SPM_PIECE_BYTE;
  return NURTURE_SPM_PIECE_NORMAL;
}

int nurture_spm_reserved_id(const nurture_spm* spm, int which) {
  const auto& p = spm->processor;
  switch (which) {
    case NURTURE_SPM_UNK:
      return p.unk_id();
    case NURTURE_SPM_BOS:
      return p.bos_id();
    case NURTURE_SPM_EOS:
      return p.eos_id();
    case NURTURE_SPM_PAD:
      return p.pad_id();
    default:
      return -1;
  }
}

int nurture_spm_encode(const nurture_spm* spm, const char* text, size_t n,
                       nurture_spm_ids_sink sink, void* ctx, char* err, size_t err_size) {
  return guarded<int>(err, err_size, -1, [&] {
    std::vector<int> ids;
    const auto status = spm->processor.Encode(std::string_view(text, n), &ids);
    if (!status.ok()) {
      copy_error(err, err_size, status.ToString());
      return -1;
    }
    sink(ctx, ids.data(), ids.size());
    return 0;
  });
}

int nurture_spm_decode(const nurture_spm* spm, const int* ids, size_t n,
                       nurture_spm_bytes_sink sink, void* ctx, char* err, size_t err_size) {
  return guarded<int>(err, err_size, -1, [&] {
    const int count = spm->processor.GetPieceSize();
    for (size_t i = 0; i < n; ++i) {
      if (ids[i] < 0 || ids[i] >= count) {
        copy_error(err, err_size,
                   "token id " + std::to_string(ids[i]) + " is outside the vocabulary [0, " +
                       std::to_string(count) + ")");
        return -1;
      }
    }
    std::string text;
    const auto status = spm->processor.Decode(std::vector<int>(ids, ids + n), &text);
    if (!status.ok()) {
      copy_error(err, err_size, status.ToString());
      return -1;
    }
    sink(ctx, text.data(), text.size());
    return 0;
  });
}

int nurture_spm_train(const char* const* keys, const char* const* values, size_t n_options,
                      const char* const* inputs, size_t n_inputs, uint32_t seed,
                      nurture_spm_bytes_sink model_sink, void* ctx, char* err, size_t err_size) {
  return guarded<int>(err, err_size, -1, [&] {
    std::unordered_map<std::string, std::string> flags;
    for (size_t i = 0; i < n_options; ++i) flags[keys[i]] = values[i];
    std::vector<std::string> paths(inputs, inputs + n_inputs);
    if (paths.empty()) {
      copy_error(err, err_size, "no training input files");
      return -1;
    }
    // 0xffffffff is SentencePiece's "seed from std::random_device".
    sentencepiece::SetRandomGeneratorSeed(seed == 0xffffffffu ? 0u : seed);
    FileLineIterator lines(std::move(paths));
    std::string serialized;
    const auto status = sentencepiece::SentencePieceTrainer::Train(flags, &lines, &serialized);
    if (!status.ok()) {
      copy_error(err, err_size, status.ToString());
      return -1;
    }
    model_sink(ctx, serialized.data(), serialized.size());
    return 0;
  });
}

}  // extern "C"
