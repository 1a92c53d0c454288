// safetensors, the tensor file format of Hugging Face checkpoints: an 8-byte little-endian header
// length N, N bytes of JSON ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
// {string: string}}), then the tensors' bytes, little-endian, row-major.
//
// Reading maps the file and checks the whole header before any tensor is used: its length within
// the file and below a limit, valid JSON, known dtypes, every tensor's bytes inside the data and
// exactly dtype size × its shape's elements, no two tensors overlapping. Each violation is a
// std::runtime_error naming the file and the tensor. Tensors are views of the mapping (no copy):
// copying one into a parameter is the only time its bytes are read, so loading a checkpoint costs
// the model's own memory plus at most the tensor in flight.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace nurture {

// The largest header accepted (the format's reference implementation uses the same limit).
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;
// A header is an object of objects: {"name": {"dtype", "shape": [..], "data_offsets": [..]}}.
constexpr int kMaxSafetensorsHeaderDepth = 8;

// "F32" -> torch::kFloat32 (also F16, BF16, F64, I64, I32, I16, I8, U8, BOOL); anything else is
// std::invalid_argument naming it. And back.
torch::ScalarType safetensors_dtype(const std::string& name);
std::string safetensors_dtype_name(torch::ScalarType type);

class SafetensorsFile {
 public:
  struct Entry {
    torch::ScalarType dtype;
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;  // byte offsets into the data, after the header
  };

  explicit SafetensorsFile(const std::filesystem::path& path);  // maps and validates
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::map<std::string, Entry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return entries_.count(name) > 0; }
  // A read-only view of the tensor's bytes in the mapping (CPU, its stored dtype); valid while
  // this file lives. An unknown name is a std::runtime_error naming the file.
  torch::Tensor tensor(const std::string& name) const;
  // Drops the tensor's pages from this process's memory (they stay in the page cache; a later
  // tensor() reads them again). Loading calls it after each copy, so the mapping never holds
  // the whole file resident.
  void release(const std::string& name) const;

 private:
  std::filesystem::path path_;
  const uint8_t* map_ = nullptr;
  size_t size_ = 0;
  uint64_t data_start_ = 0;  // 8 + header length
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes `tensors` (any device and dtype among the above; written contiguous, on the CPU) and
// `metadata` as a safetensors file, atomically (a temporary file beside it, then a rename). Names
// must be unique. With `floating_dtype`, floating-point tensors are written in it (converted one
// at a time, as they are written: no converted copy of the whole set).
void save_safetensors(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {},
                      std::optional<torch::ScalarType> floating_dtype = std::nullopt);

}  // namespace nurture
