// Loading plugins: a missing file, a file that is no shared library, and a library without the
// registration function are errors naming the recipe's location and the path (the plugin that
// loads and registers is in tests/integration/plugin_test.cpp).
#include "pipelines/runner/plugin.h"

#include <gmock/gmock.h>

#include "pipelines/recipe/config.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;

// The message of the ConfigError that loading `path` gives.
std::string load_error(const std::string& path) {
  try {
    load_plugin(path, "r.yaml:1:11");
  } catch (const ConfigError& e) {
    return e.messages().at(0);
  }
  return "(loaded)";
}

TEST(PluginLoading, EachWayOfFailingIsNamed) {
  EXPECT_EQ(load_error("nowhere/libx.so"), "r.yaml:1:11: plugins: no file 'nowhere/libx.so' (build the plugin "
                                           "first; relative paths start in the working directory)");
  const fs::path not_elf = write_file(scratch_dir("PluginLoading") / "notlib.so", "not an ELF file");
  EXPECT_THAT(load_error(not_elf.string()), HasSubstr("r.yaml:1:11: plugins: cannot load '" + not_elf.string() + "': "));
  const std::string no_entry = (binary_dir() / "libnurture_core.so").string();  // a library, not a plugin
  EXPECT_EQ(load_error(no_entry), "r.yaml:1:11: plugins: '" + no_entry +
                                      "' has no nurture_register_plugin function (define it with NURTURE_PLUGIN)");
}

TEST(PluginLoading, ARecipesBadPluginPathsAreClearErrors) {
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

}  // namespace
}  // namespace nurture
