// The on-policy loop (see on_policy_loop.h).
#include "pipelines/rl/on_policy_loop.h"

#include <sstream>

namespace nurture::rl {

using json = nlohmann::json;

OnPolicyLoop::OnPolicyLoop(const StageContext& ctx, OnPolicyOptions options)
    : ctx_(ctx), options_(options), nonfinite_(ctx.name, options.max_nonfinite_steps) {}

// ---- checkpoints ------------------------------------------------------------------------------------

void OnPolicyLoop::resume_if_possible(const OnPolicyStep& step) {
  if (!load_checkpoint(ctx_.dir, step.modules(), step.optimizers(), state_, ctx_.name)) return;
  nonfinite_.set_skipped(state_.extra.value("skipped_updates", int64_t{0}));
  iteration_ = state_.extra.value("iteration", int64_t{0});
  const std::string note = step.load_state ? step.load_state(state_.extra) : std::string();
  last_metrics_ = state_.extra.value("last_metrics", json::object());
  last_eval_ = state_.extra.value("last_eval", json::object());
  last_eval_iteration_ = state_.extra.value("last_eval_iteration", int64_t{-1});
  log_line(ctx_.name, "resuming from the checkpoint at iteration " + std::to_string(iteration_) + "/" +
                          std::to_string(options_.iterations) + note);
  drop_metrics_after(ctx_.dir / "metrics.jsonl", "iteration", iteration_);
}

void OnPolicyLoop::checkpoint(const OnPolicyStep& step) {
  state_.extra["iteration"] = iteration_;
  state_.extra["last_metrics"] = last_metrics_;
  state_.extra["last_eval"] = last_eval_;
  state_.extra["last_eval_iteration"] = last_eval_iteration_;
  state_.extra["skipped_updates"] = nonfinite_.skipped();
  if (step.save_state) step.save_state(state_.extra);
  state_.step = iteration_;  // checkpoints are named by iteration
  last_checkpoint_ =
      save_checkpoint(ctx_.dir, step.modules(), step.optimizers(), state_, options_.keep_checkpoints).string();
}

// ---- the loop ---------------------------------------------------------------------------------------

bool OnPolicyLoop::due(int64_t every) const {
  return (every > 0 && iteration_ % every == 0) || iteration_ == options_.iterations;
}

void OnPolicyLoop::run(const OnPolicyStep& step) {
  MetricsLog metrics(ctx_.dir / "metrics.jsonl");
  Progress progress(ctx_.name, options_.iterations, /*plain_every_s=*/0.0);
  if (options_.eval_on_start && iteration_ == 0 && step.evaluate && is_main_process()) run_eval(step, metrics);
  while (iteration_ < options_.iterations) {
    IterationResult result = step.iterate(iteration_);
    ++iteration_;
    record_iteration(result, metrics, progress);
    const bool last = iteration_ == options_.iterations;
    // Rank 0 evaluates; the others wait for it in the next iteration's first all-reduce.
    if (step.evaluate && is_main_process() && due(options_.eval_every)) {
      progress.finish();
      run_eval(step, metrics);
    }
    if (due(options_.save_every)) checkpoint(step);
    if (result.stop && !last) {
      progress.finish();
      checkpoint(step);
      throw StageInterrupted("stopped at iteration " + std::to_string(iteration_) + "/" +
                             std::to_string(options_.iterations) + "; the checkpoint " + last_checkpoint_ +
                             " resumes it: run the same command again, without --force");
    }
  }
  progress.finish();
  // Resumed at the end: the last evaluation may not have run.
  if (step.evaluate && is_main_process() && last_eval_iteration_ != iteration_) run_eval(step, metrics);
}

// Where the iteration's time went goes to the log, not to the stage's results (which a resumed
// run reproduces).
void OnPolicyLoop::record_iteration(const IterationResult& result, MetricsLog& metrics, Progress& progress) {
  last_metrics_ = result.metrics;
  json record = result.metrics;
  for (const auto& [k, v] : result.timings.items()) record[k] = v;
  record["iteration"] = iteration_;
  record["split"] = "train";
  record["tokens"] = state_.tokens;
  metrics.write(record);
  progress.update(iteration_, result.progress);
}

void OnPolicyLoop::run_eval(const OnPolicyStep& step, MetricsLog& metrics) {
  last_eval_ = step.evaluate();
  last_eval_iteration_ = iteration_;
  json record = last_eval_;
  record["iteration"] = iteration_;
  record["split"] = "val";
  metrics.write(record);
  std::ostringstream line;
  line << "iteration " << iteration_;
  for (const auto& [k, v] : last_eval_.items()) line << " " << k << " " << fixed(v.get<double>(), 4);
  log_line(ctx_.name, line.str());
}

json OnPolicyLoop::final_metrics(const std::vector<std::string>& keys) const {
  json out = json::object();
  for (const auto& key : keys)
    if (last_metrics_.contains(key)) out[key] = last_metrics_[key];
  for (const auto& [k, v] : last_eval_.items()) out[k] = v;
  out["iterations"] = iteration_;
  out["tokens"] = state_.tokens;
  out["skipped_updates"] = nonfinite_.skipped();
  return out;
}

}  // namespace nurture::rl
