// Recipes written for a test: the RecipeTest fixture (a scratch r.yaml and its file:line:col
// positions), a small valid recipe, and the errors load_recipe reports, through the same code
// path `nurture run` uses.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "pipelines/runner/runner.h"
#include "tests/test_util.h"

namespace nurture::testing {

// The errors a recipe produces, or an empty list when it validates.
inline std::vector<std::string> errors_of(const std::filesystem::path& recipe, const RunOptions& options = {}) {
  try {
    load_recipe(recipe, options);
  } catch (const ConfigError& e) {
    return e.messages();
  }
  return {};
}

class RecipeTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = scratch_dir(::testing::UnitTest::GetInstance()->current_test_info()->name()); }
  std::filesystem::path recipe(const std::string& text) { return write_file(dir_ / "r.yaml", text); }
  std::string at(int line, int col) const {
    return (dir_ / "r.yaml").string() + ":" + std::to_string(line) + ":" + std::to_string(col);
  }
  std::filesystem::path dir_;
};

// Two stages: the demo data and a 400-piece tokenizer trained on it.
inline const char* kGood =
    "seed: 1\n"
    "stages:\n"
    "  data:\n"
    "    pipeline: demo_data\n"
    "  tok:\n"
    "    pipeline: tokenizer\n"
    "    inputs: [\"${data}/pretrain.txt\"]\n"
    "    vocab_size: 400\n";

}  // namespace nurture::testing
