// libFuzzer target: the checkpoint manifest reader. Any bytes as manifest.json must give a
// manifest whose fields are in range, or a std::runtime_error naming the key.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "pipelines/train/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const nurture::Manifest m = nurture::parse_manifest(text, "manifest.json");
    if (m.step < 0) std::abort();
    for (const auto& [name, entry] : m.files)
      if (name.empty() || name.find('/') != std::string::npos || entry.bytes < 0 || entry.sha256.size() != 64)
        std::abort();
    // What it reads back, it writes the same.
    if (nurture::parse_manifest(nurture::manifest_to_json(m), "again").files.size() != m.files.size()) std::abort();
  } catch (const std::runtime_error&) {
  }
  return 0;
}
