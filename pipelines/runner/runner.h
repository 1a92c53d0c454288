// The recipe runner behind `nurture run`: loads and validates a recipe (base inheritance,
// overrides, plugins), then runs its stages in order, each into <output_dir>/<stage>/, skipping
// stages already done, and writes <output_dir>/summary.json.
#pragma once
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pipelines/recipe/config.h"
#include "pipelines/recipe/schema.h"
#include "pipelines/recipe/stage.h"
#include "pipelines/runtime/distributed.h"

namespace nurture {

struct RunOptions {
  std::vector<std::string> overrides;  // --set KEY.PATH=VALUE, applied in order
  std::string only;                    // --only STAGE
  std::string from;                    // --from STAGE
  bool force = false;                  // --force: re-run stages already done
  std::string output;                  // --output DIR: replaces output_dir
};

struct StagePlan {
  std::string name;
  std::string pipeline;
  ConfigNode settings;  // resolved (defaults filled), without the `pipeline` key
  bool selected = true; // false when --only/--from leave it out
};

// A recipe that passed validation, with every default filled in.
struct Recipe {
  std::string source;    // the recipe file
  ConfigNode resolved;   // the whole resolved tree (what --dry-run prints)
  RunSettings run;       // device, seed, threads, precision, output_dir
  std::string threads_setting;  // "auto" or a number, as written
  int64_t distributed_timeout_s = 1800;
  std::vector<StagePlan> stages;
};

// The run-wide keys of a recipe (device, seed, threads, ...), for validation and the reference.
std::shared_ptr<const Schema> run_schema();

// Loads, merges, overrides, loads plugins and validates. Throws ConfigError listing every
// problem (each `file:line:col: key.path: what`), before any directory is created.
Recipe load_recipe(const std::filesystem::path& file, const RunOptions& options);

// The exit status of a run stopped by SIGTERM/SIGINT after checkpointing (rerun to resume).
inline constexpr int kExitInterrupted = 3;

// Runs the selected stages. Returns 0 when all succeeded, 1 when a stage failed (the message is
// printed and recorded; earlier stages' outputs stay as they are), kExitInterrupted when a
// signal stopped it.
int run_recipe(const Recipe& recipe, const RunOptions& options);

}  // namespace nurture
