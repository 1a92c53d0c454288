// Atomic file writes: a temporary file beside the target, then a rename.
#include "modules/core/files.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <system_error>

namespace nurture {

namespace fs = std::filesystem;

fs::path temp_path_beside(const fs::path& target) {
  return target.parent_path() / ("." + target.filename().string() + ".tmp." + std::to_string(::getpid()));
}

void rename_into_place(const fs::path& temp, const fs::path& target) {
  std::error_code error;
  fs::rename(temp, target, error);
  if (error) {
    std::error_code ignored;
    fs::remove(temp, ignored);
    throw std::runtime_error(target.string() + ": cannot write: " + error.message());
  }
}

void write_file_atomic(const fs::path& target, const std::string& bytes) {
  const fs::path temp = temp_path_beside(target);
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out)
      throw std::runtime_error(target.string() + ": cannot write: " + std::strerror(errno) +
                               " (is the directory writable?)");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::error_code ignored;
      fs::remove(temp, ignored);
      throw std::runtime_error(target.string() + ": cannot write: the write failed (disk full?)");
    }
  }
  rename_into_place(temp, target);
}

}  // namespace nurture
