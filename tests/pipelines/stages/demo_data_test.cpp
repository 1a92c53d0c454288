// The demo_data stage: the recipe's settings and the run's seed reach write_demo_data, whose files
// and counts the stage hands on unchanged.
#include <gtest/gtest.h>

#include "pipelines/data/demo_data.h"
#include "tests/recipe_files.h"

namespace nurture {
namespace {

using namespace nurture::testing;

TEST(DemoDataStage, WritesTheWorldItsSettingsDescribe) {
  const StageRun run(scratch_dir("DemoDataStage"));
  ASSERT_EQ(run("  data:\n    pipeline: demo_data\n    prose_repeats: 2\n    max_operand: 4\n    heldout_fraction: 0.5\n"), 0);
  DemoDataOptions same;
  same.seed = 0;  // the run's seed
  same.prose_repeats = 2;
  same.max_operand = 4;
  same.heldout_fraction = 0.5;
  const auto direct = scratch_dir("DemoDataStageDirect");
  const nlohmann::json counts = write_demo_data(direct, same);
  const nlohmann::json metrics = run.stage_json("data")["metrics"];
  for (const auto& [key, value] : counts.items()) EXPECT_EQ(metrics[key], value) << key;
  for (const char* file : {"pretrain.txt", "sft.jsonl", "eval_prompts.jsonl", "icl.jsonl"})
    EXPECT_EQ(read_file(run.stage_dir("data") / file), read_file(direct / file)) << file;
}

}  // namespace
}  // namespace nurture
