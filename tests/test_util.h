// Shared helpers for the test suite: a seeding fixture and paths into the source/build trees.
#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <string>

namespace nurture::testing {

// Every test that draws random numbers derives from this: the same numbers on every run.
class Seeded : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(1234); }
};

inline std::filesystem::path source_dir() { return NURTURE_SOURCE_DIR; }
inline std::filesystem::path binary_dir() { return NURTURE_BINARY_DIR; }

// A fresh, empty directory under the build tree for one test's files.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto dir = binary_dir() / "test_scratch" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace nurture::testing
