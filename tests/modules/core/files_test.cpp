// Tests of atomic writes: the new content replaces the old whole, nothing is left behind, and a
// write that fails keeps the old file and names the target.
#include "modules/core/files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace nurture {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::read_file;
using testing::write_file;

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(Files, AtomicWriteReplacesTheWholeFileAndLeavesNoTemporary) {
  const auto dir = testing::scratch_dir("files_replace");
  const auto target = dir / "summary.json";
  write_file_atomic(target, "a long first version of the file\n");
  write_file_atomic(target, "short\n");
  EXPECT_EQ(read_file(target), "short\n");
  EXPECT_EQ(entries(dir), std::vector<std::string>{"summary.json"});
}

TEST(Files, AFailedWriteKeepsTheOldFileAndNamesTheTarget) {
  const auto dir = testing::scratch_dir("files_fail");
  const auto target = write_file(dir / "metrics.jsonl", "old\n");
  // The temporary name taken by a directory: the write cannot start (even as root).
  fs::create_directories(temp_path_beside(target));
  try {
    write_file_atomic(target, "new\n");
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr(target.string() + ": cannot write"));
  }
  EXPECT_EQ(read_file(target), "old\n");
  fs::remove(temp_path_beside(target));

  // The target a non-empty directory: the rename fails, and the temporary is removed.
  const auto occupied = dir / "occupied";
  write_file(occupied / "inside", "x");
  EXPECT_THROW(write_file_atomic(occupied, "new\n"), std::runtime_error);
  EXPECT_EQ(entries(dir), (std::vector<std::string>{"metrics.jsonl", "occupied"}));
}

}  // namespace
}  // namespace nurture
