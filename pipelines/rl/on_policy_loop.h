// The on-policy loop every RL stage shares: resume from the newest checkpoint, then per
// iteration the algorithm's step (sample -> score -> advantages -> update), its metrics in
// metrics.jsonl and the progress display, evaluation (rank 0) and checkpoints at their cadence,
// and a stop request (SIGTERM) turned into a checkpoint and StageInterrupted.
//
// The loop owns what every algorithm checkpoints alike (iteration, data cursor, last metrics and
// evaluation, skipped updates); the algorithm adds its own state (β, update count) through
// save_state / load_state.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "pipelines/recipe/stage.h"
#include "pipelines/runtime/log.h"
#include "pipelines/train/checkpoint.h"
#include "pipelines/train/trainer.h"

namespace nurture::rl {

struct OnPolicyOptions {
  int64_t iterations = 100;
  int64_t eval_every = 10;  // iterations; 0 = only at the end
  int64_t save_every = 10;  // iterations; 0 = only at the end
  int64_t keep_checkpoints = 2;
  int64_t max_nonfinite_steps = 5;
  bool eval_on_start = false;  // also evaluate before the first iteration (iteration 0)
};

// What one iteration hands back to the loop.
struct IterationResult {
  nlohmann::json metrics = nlohmann::json::object();  // logged, checkpointed, in the stage's results
  nlohmann::json timings = nlohmann::json::object();  // logged only (a resumed run differs in them)
  Progress::Fields progress;                          // the progress line's fields
  bool stop = false;                                  // some rank asked to stop
};

// What the algorithm plugs into the loop.
struct OnPolicyStep {
  std::function<IterationResult(int64_t iteration)> iterate;  // iteration: 0-based
  std::function<nlohmann::json()> evaluate;  // held-out metrics; empty = no evaluation
  std::function<NamedModules()> modules;
  std::function<NamedOptimizers()> optimizers;
  std::function<void(nlohmann::json& extra)> save_state;           // into the checkpoint's extras
  std::function<std::string(const nlohmann::json& extra)> load_state;  // back; a note for the log
};

class OnPolicyLoop {
 public:
  OnPolicyLoop(const StageContext& ctx, OnPolicyOptions options);

  // Continues from the newest checkpoint when there is one.
  void resume_if_possible(const OnPolicyStep& step);
  // Runs the remaining iterations (throws StageInterrupted after checkpointing on a stop request).
  void run(const OnPolicyStep& step);
  // `keys` of the last iteration's metrics, the last evaluation, iterations, tokens and
  // skipped_updates: the stage's results.
  nlohmann::json final_metrics(const std::vector<std::string>& keys) const;

  TrainingState& state() { return state_; }
  NonFiniteGuard& nonfinite() { return nonfinite_; }
  const std::string& last_checkpoint() const { return last_checkpoint_; }

 private:
  bool due(int64_t every) const;
  void record_iteration(const IterationResult& result, MetricsLog& metrics, Progress& progress);
  void run_eval(const OnPolicyStep& step, MetricsLog& metrics);
  void checkpoint(const OnPolicyStep& step);

  const StageContext& ctx_;
  OnPolicyOptions options_;
  TrainingState state_;
  NonFiniteGuard nonfinite_;
  int64_t iteration_ = 0;
  nlohmann::json last_metrics_ = nlohmann::json::object(), last_eval_ = nlohmann::json::object();
  int64_t last_eval_iteration_ = -1;
  std::string last_checkpoint_ = "none yet";
};

}  // namespace nurture::rl
