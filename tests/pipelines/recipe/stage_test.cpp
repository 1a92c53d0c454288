// What a stage gets: the directory a stage reference names, an earlier stage's output or an existing
// directory, and an error naming the setting for anything else.
#include "pipelines/recipe/stage.h"

#include <gmock/gmock.h>

#include "pipelines/recipe/config.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using namespace nurture::testing;
namespace fs = std::filesystem;

TEST(StageContext, ReferencesNameEarlierStagesOrDirectories) {
  const fs::path dir = scratch_dir("StageContextReferences");
  fs::create_directories(dir / "elsewhere");
  const std::string text = "init_from: sft\nother: " + (dir / "elsewhere").string() + "\nmissing: sfft\n";
  StageContext ctx{"ppo", "ppo", dir / "ppo", Settings(parse_yaml(text, "r.yaml"), "stages.ppo"), {},
                   {{"sft", dir / "sft"}}};
  EXPECT_EQ(ctx.resolve_ref("init_from"), dir / "sft");  // a stage's directory, whether or not it exists yet
  EXPECT_EQ(ctx.resolve_ref("other"), dir / "elsewhere");
  EXPECT_EQ(ctx.resolve_ref("init_from", (dir / "elsewhere").string()), dir / "elsewhere");  // one item of a list
  EXPECT_EQ(error_of<std::runtime_error>([&] { ctx.resolve_ref("missing"); }),
            "r.yaml:3:10: stages.ppo.missing: 'sfft' is neither a completed stage nor a directory");
}

}  // namespace
}  // namespace nurture
