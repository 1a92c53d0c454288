// Writing files so that a crash or a full disk never leaves a half-written file under its real
// name: the bytes go to a temporary name beside the target (same directory, so the same file
// system), which is renamed over the target only once everything is written. A reader sees the
// old file or the new one, never a mixture. Every failure is a std::runtime_error naming the
// target; the temporary file is removed.
#pragma once

#include <filesystem>
#include <string>

namespace nurture {

// A temporary name beside `target`, unique to this process: dir/.name.tmp.<pid>.
std::filesystem::path temp_path_beside(const std::filesystem::path& target);

// Renames `temp` (written completely) over `target`; on failure removes `temp` and throws.
void rename_into_place(const std::filesystem::path& temp, const std::filesystem::path& target);

// Writes `bytes` to `target` through temp_path_beside(target) and rename_into_place.
void write_file_atomic(const std::filesystem::path& target, const std::string& bytes);

}  // namespace nurture
