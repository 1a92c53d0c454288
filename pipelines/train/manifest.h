// What makes a checkpoint trustworthy: manifest.json lists every file of the checkpoint directory
// with its size and SHA-256, and is written last, so a checkpoint whose manifest is missing or
// disagrees with its files (a crash mid-write, a truncated copy, a flipped bit) is recognised as
// damaged before any of it is loaded. `sha256sum FILE` checks a file by hand.
//
// No LibTorch here: the manifest reader is a fuzzing target (tests/fuzz/).
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace nurture {

struct ManifestEntry {
  int64_t bytes = 0;
  std::string sha256;  // 64 lowercase hex digits
};

struct Manifest {
  int64_t step = 0;                              // the optimizer step (or iteration) saved
  std::map<std::string, ManifestEntry> files;    // file name (no directories) -> entry
};

inline constexpr const char* kManifestFileName = "manifest.json";

// The SHA-256 of a file's bytes as lowercase hex. Throws std::runtime_error naming the file.
std::string sha256_file(const std::filesystem::path& file);

// Parses manifest text; `source` names it in errors. Throws std::runtime_error
// ("<source>: files.model.pt.bytes: expected a whole number ≥ 0") on anything malformed.
Manifest parse_manifest(const std::string& text, const std::string& source);
std::string manifest_to_json(const Manifest& manifest);

// Hashes `names` (files in `dir`) and writes dir/manifest.json, flushed to disk.
void write_manifest(const std::filesystem::path& dir, int64_t step, const std::vector<std::string>& names);

// Reads dir/manifest.json and checks every listed file's size and hash. Returns the manifest, or
// the first problem found ("model.pt: 1024 bytes, the manifest says 4096 (truncated?)") in *problem.
std::optional<Manifest> verify_checkpoint_dir(const std::filesystem::path& dir, std::string* problem);

// Writes `content` and fsyncs it; throws naming the file when the disk refuses.
void write_file_durably(const std::filesystem::path& file, const std::string& content);
// fsync of a file or directory (so that a rename inside it survives a power cut).
void sync_path(const std::filesystem::path& path);

}  // namespace nurture
