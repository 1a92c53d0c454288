// Reading and writing safetensors files (see safetensors.h).
#include "modules/core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "modules/core/files.h"
#include "modules/core/json_file.h"

namespace nurture {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::vector<std::pair<std::string, torch::ScalarType>>& dtype_names() {
  static const std::vector<std::pair<std::string, torch::ScalarType>> names = {
      {"F64", torch::kFloat64}, {"F32", torch::kFloat32}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16},
      {"I64", torch::kInt64},   {"I32", torch::kInt32},   {"I16", torch::kInt16},   {"I8", torch::kInt8},
      {"U8", torch::kUInt8},    {"BOOL", torch::kBool}};
  return names;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

// One header entry, checked on its own: dtype, shape, offsets, and bytes = elements × dtype size.
SafetensorsFile::Entry read_entry(const std::string& where, const json& j, uint64_t data_size) {
  if (!j.is_object() || !j.contains("dtype") || !j.contains("shape") || !j.contains("data_offsets"))
    throw std::runtime_error(where + ": expected {dtype, shape, data_offsets}");
  SafetensorsFile::Entry e;
  if (!j["dtype"].is_string()) throw std::runtime_error(where + ": dtype is not a string");
  try {
    e.dtype = safetensors_dtype(j["dtype"].get<std::string>());
  } catch (const std::invalid_argument& error) {
    throw std::runtime_error(where + ": " + error.what());
  }
  if (!j["shape"].is_array()) throw std::runtime_error(where + ": shape is not a list");
  uint64_t elements = 1;
  for (const auto& d : j["shape"]) {
    if (!d.is_number_unsigned()) throw std::runtime_error(where + ": shape " + j["shape"].dump() + " is not whole numbers");
    const uint64_t n = d.get<uint64_t>();
    if (n > 0 && elements > (uint64_t{1} << 62) / n) throw std::runtime_error(where + ": shape " + j["shape"].dump() + " is too large");
    elements *= n;
    e.shape.push_back(static_cast<int64_t>(n));
  }
  const json& offsets = j["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    throw std::runtime_error(where + ": data_offsets is not [begin, end]");
  e.begin = offsets[0].get<uint64_t>();
  e.end = offsets[1].get<uint64_t>();
  if (e.begin > e.end || e.end > data_size)
    throw std::runtime_error(where + ": data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                             "] are outside the file's " + std::to_string(data_size) + " data bytes");
  const uint64_t expected = elements * static_cast<uint64_t>(c10::elementSize(e.dtype));
  if (e.end - e.begin != expected)
    throw std::runtime_error(where + ": " + std::to_string(e.end - e.begin) + " bytes for " + j["dtype"].get<std::string>() +
                             " " + shape_text(e.shape) + ", which needs " + std::to_string(expected));
  return e;
}

}  // namespace

torch::ScalarType safetensors_dtype(const std::string& name) {
  for (const auto& [n, type] : dtype_names())
    if (n == name) return type;
  std::string known;
  for (const auto& [n, type] : dtype_names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unsupported dtype \"" + name + "\" (supported: " + known + ")");
}

std::string safetensors_dtype_name(torch::ScalarType type) {
  for (const auto& [n, t] : dtype_names())
    if (t == type) return n;
  throw std::invalid_argument(std::string("safetensors has no dtype for ") + c10::toString(type));
}

// ---- reading ------------------------------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(const fs::path& path) : path_(path) {
  const std::string file = path.string();
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(file + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw std::runtime_error(file + ": cannot stat: " + std::strerror(errno));
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    throw std::runtime_error(file + ": " + std::to_string(size_) + " bytes, too short for a safetensors header");
  }
  void* map = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) throw std::runtime_error(file + ": cannot map: " + std::strerror(errno));
  map_ = static_cast<const uint8_t*>(map);

  try {
    uint64_t header = 0;
    for (int i = 7; i >= 0; --i) header = (header << 8) | map_[i];  // little-endian
    if (header > kMaxSafetensorsHeaderBytes || header > size_ - 8)
      throw std::runtime_error(file + ": header length " + std::to_string(header) + " exceeds " +
                               (header > size_ - 8 ? "the file's " + std::to_string(size_ - 8) + " bytes after it"
                                                   : "the limit of " + std::to_string(kMaxSafetensorsHeaderBytes)));
    data_start_ = 8 + header;
    const std::string_view header_text(reinterpret_cast<const char*>(map_ + 8), header);
    if (const int64_t at = json_too_deep_at(header_text, kMaxSafetensorsHeaderDepth); at >= 0)
      throw std::runtime_error(file + ": the header nests deeper than " + std::to_string(kMaxSafetensorsHeaderDepth) +
                               " levels (at byte " + std::to_string(at) + ")");
    json j;
    try {
      j = json::parse(header_text.begin(), header_text.end());
    } catch (const json::exception& e) {
      throw std::runtime_error(file + ": the header is not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object()) throw std::runtime_error(file + ": the header is not a JSON object");
    const uint64_t data_size = size_ - data_start_;
    for (const auto& [name, value] : j.items()) {
      if (name == "__metadata__") {
        if (!value.is_object()) throw std::runtime_error(file + ": __metadata__ is not an object");
        for (const auto& [k, v] : value.items()) {
          if (!v.is_string()) throw std::runtime_error(file + ": __metadata__." + k + " is not a string");
          metadata_[k] = v.get<std::string>();
        }
        continue;
      }
      entries_[name] = read_entry(file + ": tensor \"" + name + "\"", value, data_size);
    }
    std::vector<std::pair<const std::string*, const Entry*>> by_offset;
    for (const auto& [name, e] : entries_) by_offset.emplace_back(&name, &e);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const auto& a, const auto& b) { return a.second->begin < b.second->begin; });
    for (size_t i = 1; i < by_offset.size(); ++i)
      if (by_offset[i].second->begin < by_offset[i - 1].second->end)
        throw std::runtime_error(file + ": tensor \"" + *by_offset[i].first + "\" overlaps tensor \"" +
                                 *by_offset[i - 1].first + "\"");
  } catch (...) {
    ::munmap(const_cast<uint8_t*>(map_), size_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), size_);
}

void SafetensorsFile::release(const std::string& name) const {
  auto found = entries_.find(name);
  if (found == entries_.end() || found->second.end == found->second.begin) return;
  // Whole pages inside the tensor's bytes only: a neighbour sharing a page keeps it.
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(map_ + data_start_ + found->second.begin);
  const uintptr_t end = reinterpret_cast<uintptr_t>(map_ + data_start_ + found->second.end);
  const uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

torch::Tensor SafetensorsFile::tensor(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw std::runtime_error(path_.string() + ": no tensor \"" + name + "\"");
  const Entry& e = it->second;
  const uint8_t* data = map_ + data_start_ + e.begin;
  const auto options = torch::TensorOptions().dtype(e.dtype);
  if (e.end == e.begin) return torch::empty(e.shape, options);  // no elements, no bytes to point at
  if (reinterpret_cast<uintptr_t>(data) % c10::elementSize(e.dtype) != 0) {  // unaligned: copy it
    torch::Tensor copy = torch::empty(e.shape, options);
    std::memcpy(copy.data_ptr(), data, e.end - e.begin);
    return copy;
  }
  return torch::from_blob(const_cast<uint8_t*>(data), e.shape, options);
}

// ---- writing ------------------------------------------------------------------------------------------

void save_safetensors(const fs::path& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata,
                      std::optional<torch::ScalarType> floating_dtype) {
  // The dtype each tensor is written in: floating point ones converted when asked.
  auto stored_dtype = [&](const torch::Tensor& t) {
    return floating_dtype && t.is_floating_point() ? *floating_dtype : t.scalar_type();
  };
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__" || header.contains(name))
      throw std::invalid_argument(path.string() + ": tensor name \"" + name + "\" is reserved or used twice");
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * c10::elementSize(stored_dtype(t));
    header[name] = {{"dtype", safetensors_dtype_name(stored_dtype(t))},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  const fs::path temp = temp_path_beside(path);
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(path.string() + ": cannot write: " + std::strerror(errno));
    char length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
    out.write(length, 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& [name, t] : tensors) {  // one tensor at a time on the host
      if (t.numel() == 0) continue;
      const torch::Tensor host = t.detach().to(torch::kCPU, stored_dtype(t)).contiguous();
      out.write(static_cast<const char*>(host.data_ptr()),
                static_cast<std::streamsize>(host.numel() * host.element_size()));
    }
    out.flush();
    if (!out) {
      std::error_code ignored;
      fs::remove(temp, ignored);
      throw std::runtime_error(path.string() + ": cannot write (is the disk full?)");
    }
  }
  rename_into_place(temp, path);
}

}  // namespace nurture
