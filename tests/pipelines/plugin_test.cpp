// Plugins: the example plugin (tests/plugins/example_plugin.cpp, its own shared library) adds a
// pipeline and a reward function that a recipe then uses, without touching the framework.
#include <gmock/gmock.h>

#include <nlohmann/json.hpp>

#include "pipelines/plugin.h"
#include "pipelines/runner.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

fs::path plugin_path() { return binary_dir() / "libnurture_example_plugin.so"; }

TEST(Plugin, RecipeRunsThePluginsPipeline) {
  const fs::path dir = scratch_dir("plugin_recipe");
  write_file(dir / "words.txt", "the cat\na dog\nthe end\n");
  write_file(dir / "r.yaml", "plugins: ['" + plugin_path().string() + "']\nstages:\n  count:\n"
                             "    pipeline: line_count\n    file: " + (dir / "words.txt").string() + "\n");
  auto r = run_nurture("run " + (dir / "r.yaml").string() + " --output " + (dir / "out").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto summary = nlohmann::json::parse(read_file(dir / "out" / "summary.json"));
  EXPECT_EQ(summary["stages"][0]["pipeline"], "line_count");
  EXPECT_EQ(summary["stages"][0]["metrics"]["lines"], 3);
  EXPECT_EQ(summary["stages"][0]["metrics"]["matching"], 2);
  EXPECT_EQ(read_file(dir / "out" / "count" / "count.txt"), "3\n");

  // The plugin's schema validates like a built-in one.
  write_file(dir / "bad.yaml", "plugins: ['" + plugin_path().string() +
                                   "']\nstages:\n  count:\n    pipeline: line_count\n    wrod: x\n");
  r = run_nurture("run " + (dir / "bad.yaml").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("bad.yaml:5:5: stages.count.wrod: unknown key; did you mean 'word'?"));
  EXPECT_THAT(r.err, HasSubstr("stages.count: missing required key 'file'"));
}

TEST(Plugin, RegistersARewardFunction) {
  load_plugin(plugin_path().string(), "test");
  const RewardFunction& reward = registries().rewards.get("shorter_is_better");
  const std::string prompt = "q", response = "four", reference = "";
  EXPECT_EQ(reward({prompt, response, reference}), -4.0);
  EXPECT_TRUE(registries().rewards.contains("exact_match"));  // built-ins stay
}

TEST(Plugin, BadPluginPathsAreClearErrors) {
  const fs::path dir = scratch_dir("plugin_bad");
  write_file(dir / "r.yaml", "plugins: [nowhere/libx.so]\nstages:\n  d:\n    pipeline: demo_data\n");
  auto r = run_nurture("run " + (dir / "r.yaml").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("r.yaml:1:11: plugins: no file 'nowhere/libx.so'"));
  write_file(dir / "notlib.so", "not an ELF file");
  write_file(dir / "r.yaml", "plugins: [" + (dir / "notlib.so").string() +
                                 "]\nstages:\n  d:\n    pipeline: demo_data\n");
  r = run_nurture("run " + (dir / "r.yaml").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("plugins: cannot load '"));
}

TEST(Registry, UnknownNamesListTheKnownOnes) {
  try {
    registries().rewards.get("exact_mach");
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("unknown reward function 'exact_mach' (known: exact_match"));
    EXPECT_THAT(e.what(), HasSubstr("did you mean 'exact_match'?"));
  }
  EXPECT_THROW(registries().pipelines.add("tokenizer", registries().pipelines.get("tokenizer")),
               std::logic_error);
  EXPECT_TRUE(registries().model_presets.contains("gpt2_124m"));
  EXPECT_TRUE(registries().chat_templates.contains("chatml"));
}

}  // namespace
}  // namespace nurture
