// Recipes written for a test: the RecipeTest fixture (a scratch r.yaml and its file:line:col
// positions), a small valid recipe, the errors load_recipe reports, and stages run through the
// runner — the same code path `nurture run` uses.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "pipelines/runner/registries.h"
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

// Stages (YAML under `stages:`) run through the runner with seed 0 on one thread, into dir/out.
struct StageRun {
  explicit StageRun(std::filesystem::path dir) : dir(std::move(dir)) {}
  // The run's exit status (0: every stage done).
  int operator()(const std::string& stages) const {
    const std::filesystem::path recipe = write_file(dir / "r.yaml", "seed: 0\nthreads: 1\nstages:\n" + stages);
    RunOptions options;
    options.output = (dir / "out").string();
    return run_recipe(load_recipe(recipe, options), options);
  }
  std::filesystem::path stage_dir(const std::string& stage) const { return dir / "out" / stage; }
  // The stage's stage.json: status, error, metrics.
  nlohmann::json stage_json(const std::string& stage) const {
    return nlohmann::json::parse(read_file(stage_dir(stage) / "stage.json"));
  }
  std::filesystem::path dir;
};

// One stage run directly, the way the runner starts it, its exceptions passed on (for the tests of
// a stage's own errors and metrics): writes the one-stage recipe recipe_dir/<pipeline>.yaml (seed
// 5, output_dir `out`, the stage named after its pipeline with `settings`, YAML lines indented by
// 4), loads it with `overrides`, runs the pipeline's registry entry and returns its metrics.
inline nlohmann::json run_one_stage(const std::filesystem::path& recipe_dir, const std::filesystem::path& out,
                                    const std::string& pipeline, const std::string& settings,
                                    const std::vector<std::string>& overrides = {}) {
  const std::filesystem::path recipe =
      write_file(recipe_dir / (pipeline + ".yaml"), "seed: 5\noutput_dir: " + out.string() + "\nstages:\n  " +
                                                        pipeline + ":\n    pipeline: " + pipeline + "\n" + settings);
  RunOptions options;
  options.overrides = overrides;
  Recipe r = load_recipe(recipe, options);
  const StagePlan& stage = r.stages.at(0);
  StageContext ctx{stage.name, stage.pipeline, r.run.output_dir / stage.name,
                   Settings(stage.settings, "stages." + stage.name), r.run, {}};
  std::filesystem::create_directories(ctx.dir);
  return registries().pipelines.get(stage.pipeline).create()->run(ctx);
}

// The records of stage_dir/metrics.jsonl whose split is `split` ("train", "eval"), in order.
inline std::vector<nlohmann::json> metric_records(const std::filesystem::path& stage_dir, const std::string& split) {
  std::vector<nlohmann::json> out;
  std::istringstream in(read_file(stage_dir / "metrics.jsonl"));
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j.value("split", "") == split) out.push_back(j);
  }
  return out;
}

}  // namespace nurture::testing
