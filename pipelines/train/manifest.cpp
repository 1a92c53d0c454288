// Checkpoint manifests: sizes and SHA-256 of every file, written last and checked first.
#include "pipelines/train/manifest.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "modules/core/json_file.h"

namespace nurture {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A manifest lists a checkpoint's few files: kilobytes.
constexpr uint64_t kMaxManifestBytes = 1 << 20;

// ---- hashing -----------------------------------------------------------------------------------------

std::string sha256_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": cannot read");
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("SHA-256 is not available from OpenSSL");
  std::array<char, 1 << 16> buffer;
  while (in) {
    in.read(buffer.data(), buffer.size());
    if (in.gcount() > 0) EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) throw std::runtime_error(file.string() + ": read error");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  static const char* kHex = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

// ---- the manifest as JSON ----------------------------------------------------------------------------

Manifest parse_manifest(const std::string& text, const std::string& source) {
  const json j = parse_json(text, source, {kMaxManifestBytes});
  auto fail = [&](const std::string& key, const std::string& what) -> std::runtime_error {
    return std::runtime_error(source + ": " + key + ": " + what);
  };
  if (!j.is_object()) throw fail("manifest", "expected an object, got " + std::string(j.type_name()));
  if (!j.contains("format") || j["format"] != 1) throw fail("format", "expected 1 (a nurture checkpoint manifest)");
  if (!j.contains("step") || !j["step"].is_number_integer() || j["step"].get<int64_t>() < 0)
    throw fail("step", "expected a whole number >= 0");
  if (!j.contains("files") || !j["files"].is_object() || j["files"].empty())
    throw fail("files", "expected an object of file name -> {bytes, sha256}");
  Manifest m;
  m.step = j["step"].get<int64_t>();
  for (const auto& [name, entry] : j["files"].items()) {
    const std::string key = "files." + name;
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
        name == kManifestFileName)
      throw fail(key, "not a file name of the checkpoint directory");
    if (!entry.is_object()) throw fail(key, "expected {bytes, sha256}");
    if (!entry.contains("bytes") || !entry["bytes"].is_number_integer() || entry["bytes"].get<int64_t>() < 0)
      throw fail(key + ".bytes", "expected a whole number >= 0");
    if (!entry.contains("sha256") || !entry["sha256"].is_string())
      throw fail(key + ".sha256", "expected 64 hex digits");
    const std::string hash = entry["sha256"].get<std::string>();
    if (hash.size() != 64 || hash.find_first_not_of("0123456789abcdef") != std::string::npos)
      throw fail(key + ".sha256", "expected 64 lowercase hex digits, got \"" + hash.substr(0, 80) + "\"");
    m.files[name] = {entry["bytes"].get<int64_t>(), hash};
  }
  return m;
}

std::string manifest_to_json(const Manifest& m) {
  json files = json::object();
  for (const auto& [name, e] : m.files) files[name] = {{"bytes", e.bytes}, {"sha256", e.sha256}};
  return json{{"format", 1}, {"step", m.step}, {"files", files}}.dump(2) + "\n";
}

// ---- durable writes ---------------------------------------------------------------------------------

void sync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path.string() + ": cannot open to sync (" + std::strerror(errno) + ")");
  const int rc = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  // Some file systems refuse fsync on directories (EINVAL); the data itself was synced.
  if (rc != 0 && error != EINVAL)
    throw std::runtime_error(path.string() + ": fsync failed (" + std::strerror(error) + ")");
}

void write_file_durably(const fs::path& file, const std::string& content) {
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out << content;
    out.flush();
    if (!out) throw std::runtime_error(file.string() + ": write failed (disk full?)");
  }
  sync_path(file);
}

void write_manifest(const fs::path& dir, int64_t step, const std::vector<std::string>& names) {
  Manifest m;
  m.step = step;
  for (const auto& name : names) {
    const fs::path file = dir / name;
    sync_path(file);
    m.files[name] = {static_cast<int64_t>(fs::file_size(file)), sha256_file(file)};
  }
  write_file_durably(dir / kManifestFileName, manifest_to_json(m));
}

// ---- verification -----------------------------------------------------------------------------------

std::optional<Manifest> verify_checkpoint_dir(const fs::path& dir, std::string* problem) {
  const fs::path file = dir / kManifestFileName;
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    *problem = "no " + std::string(kManifestFileName) + " (the checkpoint was not finished)";
    return std::nullopt;
  }
  std::error_code error;
  if (const auto bytes = fs::file_size(file, error); !error && bytes > kMaxManifestBytes) {
    *problem = file.string() + ": " + std::to_string(bytes) + " bytes, more than a manifest has";
    return std::nullopt;
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Manifest m;
  try {
    m = parse_manifest(text, file.string());
  } catch (const std::runtime_error& e) {
    *problem = e.what();
    return std::nullopt;
  }
  for (const auto& [name, entry] : m.files) {
    const fs::path path = dir / name;
    std::error_code ec;
    const auto bytes = fs::file_size(path, ec);
    if (ec) {
      *problem = name + ": missing";
      return std::nullopt;
    }
    if (static_cast<int64_t>(bytes) != entry.bytes) {
      *problem = name + ": " + std::to_string(bytes) + " bytes, the manifest says " + std::to_string(entry.bytes) +
                 (static_cast<int64_t>(bytes) < entry.bytes ? " (truncated?)" : "");
      return std::nullopt;
    }
    if (sha256_file(path) != entry.sha256) {
      *problem = name + ": its SHA-256 differs from the manifest's (the file was altered or damaged)";
      return std::nullopt;
    }
  }
  return m;
}

}  // namespace nurture
