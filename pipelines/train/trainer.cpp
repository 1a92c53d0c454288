// The shared training loop: settings, schedule, optimizer, checkpoints and Trainer::fit.
#include "pipelines/train/trainer.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

#include "pipelines/runtime/log.h"
#include "pipelines/train/fused_adamw.h"

namespace nurture {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- settings ---------------------------------------------------------------------------------------

void add_training_fields(Schema& s, const TrainingDefaults& d) {
  s.add_int("max_steps", d.max_steps, "optimizer steps").at_least(1);
  s.add_int("batch_size", d.batch_size, "examples per micro-batch").at_least(1);
  s.add_int("grad_accum", 1, "micro-batches per optimizer step (every unit weighs the same)").at_least(1);
  s.add_int("global_batch_size", 0, "examples per optimizer step over all ranks: sets grad_accum to "
                                    "global_batch_size / (batch_size x ranks), which must divide exactly "
                                    "(0 = off: batch_size x grad_accum x ranks)").at_least(0);
  s.add_float("lr", d.lr, "peak learning rate (AdamW)").greater_than(0);
  s.add_float("min_lr_ratio", 0.1, "the schedule decays to lr * min_lr_ratio").at_least(0).at_most(1);
  s.add_int("warmup_steps", d.warmup_steps, "linear warmup from 0 over this many steps").at_least(0);
  s.add_enum("schedule", "cosine", {"cosine", "linear", "constant"}, "decay after warmup");
  s.add_float("weight_decay", d.weight_decay, "AdamW decay on matrices and embeddings (not on biases "
                                              "or norm gains)").at_least(0);
  s.add_float("beta1", 0.9, "AdamW beta1").at_least(0).at_most(1);
  s.add_float("beta2", 0.95, "AdamW beta2").at_least(0).at_most(1);
  s.add_float("eps", 1e-8, "AdamW epsilon").greater_than(0);
  s.add_float("grad_clip", 1.0, "clip the global gradient norm to this (0 = off)").at_least(0);
  s.add_int("eval_every", d.eval_every, "evaluate every N steps (0 = only at the end)").at_least(0);
  s.add_int("eval_batches", 0, "held-out batches per evaluation (0 = all)").at_least(0);
  s.add_int("save_every", d.save_every, "checkpoint every N steps (0 = only at the end)").at_least(0);
  s.add_int("keep_checkpoints", 2, "keep the newest N checkpoints (older ones are deleted)").at_least(1);
  s.add_int("max_nonfinite_steps", 5, "a step with a non-finite loss or gradient norm is skipped; this "
                                      "many in a row stop the stage").at_least(1);
  s.add_int("log_every", 10, "log a metrics line every N steps").at_least(1);
  s.add_check([](const Settings& t, ValidationContext& ctx) {
    const int64_t global = t.get_int("global_batch_size");
    if (global == 0) return;
    const int64_t batch = t.get_int("batch_size");
    const int64_t per_step = batch * ctx.world_size;
    if (t.get_int("grad_accum") != 1)
      ctx.errors.push_back(t.where("global_batch_size") + ": set global_batch_size or grad_accum, not both");
    else if (global % per_step != 0)
      ctx.errors.push_back(t.where("global_batch_size") + ": " + std::to_string(global) +
                           " is not divisible by batch_size " + std::to_string(batch) + " x " +
                           std::to_string(ctx.world_size) + (ctx.world_size == 1 ? " rank" : " ranks") +
                           " = " + std::to_string(per_step));
  });
}

TrainingOptions TrainingOptions::from(const Settings& s) {
  TrainingOptions o;
  o.max_steps = s.get_int("max_steps");
  o.batch_size = s.get_int("batch_size");
  o.grad_accum = s.get_int("global_batch_size") > 0
                     ? s.get_int("global_batch_size") / (s.get_int("batch_size") * dist::world_size())
                     : s.get_int("grad_accum");
  o.lr = s.get_float("lr");
  o.min_lr_ratio = s.get_float("min_lr_ratio");
  o.warmup_steps = s.get_int("warmup_steps");
  o.schedule = s.get_string("schedule");
  o.weight_decay = s.get_float("weight_decay");
  o.beta1 = s.get_float("beta1");
  o.beta2 = s.get_float("beta2");
  o.eps = s.get_float("eps");
  o.grad_clip = s.get_float("grad_clip");
  o.eval_every = s.get_int("eval_every");
  o.eval_batches = s.get_int("eval_batches");
  o.save_every = s.get_int("save_every");
  o.keep_checkpoints = s.get_int("keep_checkpoints");
  o.max_nonfinite_steps = s.get_int("max_nonfinite_steps");
  o.log_every = s.get_int("log_every");
  return o;
}

double learning_rate(const TrainingOptions& o, int64_t step) {
  if (step < o.warmup_steps) return o.lr * static_cast<double>(step + 1) / o.warmup_steps;
  const double min_lr = o.lr * o.min_lr_ratio;
  const int64_t decay_steps = std::max<int64_t>(1, o.max_steps - o.warmup_steps);
  const double progress = std::min(1.0, static_cast<double>(step - o.warmup_steps) / decay_steps);
  if (o.schedule == "cosine") return min_lr + (o.lr - min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
  if (o.schedule == "linear") return o.lr - (o.lr - min_lr) * progress;
  return o.lr;
}

std::unique_ptr<torch::optim::AdamW> make_adamw(torch::nn::Module& model, const TrainingOptions& o) {
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& p : model.parameters()) {
    if (!p.requires_grad()) continue;
    (p.dim() >= 2 ? decay : no_decay).push_back(p);
  }
  auto options = [&](double weight_decay) {
    auto opt = std::make_unique<torch::optim::AdamWOptions>(o.lr);
    opt->betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(weight_decay);
    return opt;
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!decay.empty()) groups.emplace_back(decay, options(o.weight_decay));
  if (!no_decay.empty()) groups.emplace_back(no_decay, options(0.0));
  TORCH_CHECK(!groups.empty(), "make_adamw: the model has no trainable parameters");
  torch::optim::AdamWOptions defaults(o.lr);
  defaults.betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay);
  return std::make_unique<FusedAdamW>(std::move(groups), defaults);
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

// ---- numerical faults -------------------------------------------------------------------------------

bool NonFiniteGuard::admit(const torch::Tensor& loss, const torch::Tensor& grad_norm, int64_t step,
                           const std::string& last_checkpoint) {
  const torch::Tensor norm = grad_norm.detach().to(torch::kFloat64);
  const bool finite = torch::isfinite(loss.defined() ? loss.detach().to(torch::kFloat64) + norm : norm).item<bool>();
  if (finite) {
    in_a_row_ = 0;
    return true;
  }
  ++skipped_;
  ++in_a_row_;
  const std::string values = (loss.defined() ? "loss " + std::to_string(loss.item<double>()) + ", " : std::string()) +
                             "gradient norm " + std::to_string(grad_norm.item<double>());
  if (in_a_row_ >= limit_)
    throw std::runtime_error("step " + std::to_string(step + 1) + ": " + std::to_string(in_a_row_) +
                             " steps in a row had a non-finite loss or gradient norm (" + values +
                             "); stopping. The last checkpoint is intact: " + last_checkpoint +
                             ". HINT: lower lr, raise warmup_steps or grad_clip, or look for broken "
                             "examples in the data (max_nonfinite_steps sets the limit)");
  warn_line(component_, "step " + std::to_string(step + 1) + " skipped (" + values + "); " +
                            std::to_string(skipped_) + " skipped so far");
  return false;
}

// ---- the loop ---------------------------------------------------------------------------------------

Trainer::Trainer(const StageContext& ctx, torch::nn::Module& model, TrainingOptions options)
    : ctx_(ctx),
      model_(model),
      options_(std::move(options)),
      optimizer_(make_adamw(model, options_)),
      nonfinite_(ctx.name, options_.max_nonfinite_steps) {
  for (const auto& p : model_.parameters())
    if (p.requires_grad()) params_.push_back(p);
  if (dist::world_size() > 1) {
    dist::broadcast_module(model_);  // every rank starts from rank 0's weights
    sync_ = std::make_unique<dist::GradientSync>(model_, ctx.run.bucket_mb << 20);
  }
}

std::vector<int64_t> take_positions(TrainingState& state, int64_t batch) {
  std::vector<int64_t> positions;
  const int64_t first = state.data_position + dist::rank() * batch;
  for (int64_t i = 0; i < batch; ++i) positions.push_back(first + i);
  state.data_position += dist::world_size() * batch;
  return positions;
}

void Trainer::resume_if_possible() {
  if (!load_checkpoint(ctx_.dir, {{"model", &model_}}, {{"optimizer", optimizer_.get()}}, state_, ctx_.name))
    return;
  nonfinite_.set_skipped(state_.extra.value("skipped_steps", int64_t{0}));
  log_line(ctx_.name, "resuming from the checkpoint at step " + std::to_string(state_.step) + "/" +
                          std::to_string(options_.max_steps));
  drop_metrics_after(ctx_.dir / "metrics.jsonl", "step", state_.step);
}

void Trainer::checkpoint() {
  last_checkpoint_ = save_checkpoint(ctx_.dir, {{"model", &model_}}, {{"optimizer", optimizer_.get()}}, state_,
                                     options_.keep_checkpoints)
                         .string();
}

// Global-norm clipping without reading the norm back to the host (the norm stays a tensor).
static torch::Tensor clip_gradients(const std::vector<torch::Tensor>& params, double max_norm) {
  std::vector<torch::Tensor> norms;
  for (const auto& p : params)
    if (p.grad().defined()) norms.push_back(p.grad().detach().norm(2).to(torch::kFloat64));
  if (norms.empty()) return torch::zeros({}, torch::kFloat64);
  torch::Tensor total = torch::stack(norms).norm(2);
  if (max_norm > 0) {
    torch::Tensor scale = (max_norm / (total + 1e-6)).clamp_max(1.0);
    for (const auto& p : params)
      if (p.grad().defined()) p.grad().mul_(scale.to(p.grad().scalar_type()));
  }
  return total;
}

StepResult Trainer::step(const MicroStep& micro_step) {
  StepResult r;
  r.lr = learning_rate(options_, state_.step);
  set_learning_rate(*optimizer_, r.lr);
  optimizer_->zero_grad();
  for (int64_t micro = 0; micro < options_.grad_accum; ++micro) {
    if (sync_ && micro == options_.grad_accum - 1) sync_->arm();
    MicroBatch mb = micro_step(state_);
    mb.loss_sum.backward();
    const torch::Tensor loss = mb.loss_sum.detach().to(torch::kFloat64);
    const torch::Tensor units = mb.units.detach().to(torch::kFloat64);
    r.loss_sum = r.loss_sum.defined() ? r.loss_sum + loss : loss;
    r.units = r.units.defined() ? r.units + units : units;
    for (auto& [k, v] : mb.sums) {
      torch::Tensor d = v.detach().to(torch::kFloat64);
      r.sums[k] = r.sums.count(k) ? r.sums[k] + d : d;
    }
    r.tokens += mb.tokens;
  }
  r.stop = stop_requested();
  if (sync_) {
    sync_->finish();  // gradients: Σ over the ranks
    // The step's sums over the ranks, in one all-reduce: loss, units, tokens, the stop flag, and
    // the pipeline's metrics (every rank has the same keys).
    std::vector<torch::Tensor> parts = {r.loss_sum.reshape({1}), r.units.reshape({1}),
                                        torch::full({1}, static_cast<double>(r.tokens), r.units.options()),
                                        torch::full({1}, r.stop ? 1.0 : 0.0, r.units.options())};
    for (const auto& [k, v] : r.sums) parts.push_back(v.reshape({1}));
    torch::Tensor packed = torch::cat(parts);
    dist::note_progress(ctx_.name + " step " + std::to_string(state_.step + 1));
    dist::all_reduce_sum(packed);
    r.loss_sum = packed[0];
    r.units = packed[1];
    const auto host = packed.narrow(0, 2, 2).cpu();
    r.tokens = static_cast<int64_t>(host[0].item<double>());
    r.stop = host[1].item<double>() > 0;
    int64_t i = 4;
    for (auto& [k, v] : r.sums) v = packed[i++];
  }
  state_.tokens += r.tokens;
  // Gradients of Σ loss over every micro-batch (and rank), divided once by the number of units:
  // the mean over units, however they were split into micro-batches and ranks.
  const torch::Tensor denom = r.units.clamp_min(1.0);
  for (auto& p : params_)
    if (p.grad().defined()) p.grad().div_(denom.to(p.grad().scalar_type()));
  r.grad_norm = clip_gradients(params_, options_.grad_clip);
  if (nonfinite_.admit(r.loss_sum, r.grad_norm, state_.step, last_checkpoint_)) {
    optimizer_->step();
  } else {
    r.skipped = true;
    optimizer_->zero_grad();
    state_.extra["skipped_steps"] = nonfinite_.skipped();
  }
  ++state_.step;
  return r;
}

// ---- the loop ----------------------------------------------------------------------------------------

namespace {

// Running sums since the last log line, kept on the device. A checkpoint taken between two log
// lines stores them (state.extra["log_window"]), so that a resumed run logs the same means as an
// uninterrupted one.
class LogWindow {
 public:
  explicit LogWindow(const json& extra) {
    if (!extra.contains("log_window")) return;
    const json& w = extra["log_window"];
    auto scalar = [](double v) { return torch::scalar_tensor(v, torch::kFloat64); };
    if (w.contains("loss")) loss_ = scalar(w["loss"]), units_ = scalar(w["units"]);
    for (const auto& [k, v] : w["sums"].items()) sums_[k] = scalar(v);
    tokens_ = w["tokens"];
  }

  void add(const StepResult& r) {
    if (!r.skipped) {  // a skipped step's NaN stays out of the logged means
      loss_ = loss_.defined() ? loss_ + r.loss_sum : r.loss_sum;
      units_ = units_.defined() ? units_ + r.units : r.units;
      for (const auto& [k, v] : r.sums) sums_[k] = sums_.count(k) ? sums_[k] + v : v;
    }
    tokens_ += r.tokens;
  }

  // The window's means (loss, each extra sum per unit), r's lr and gradient norm, and the
  // throughput; then a new window starts.
  json close(const StepResult& r) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double units = units_.defined() ? units_.item<double>() : 0.0;
    json means = {{"loss", loss_.defined() ? loss_.item<double>() / std::max(units, 1.0) : NAN},
                  {"lr", r.lr},
                  {"grad_norm", r.grad_norm.item<double>()},
                  {"tokens_per_s", elapsed > 0 ? tokens_ / elapsed : 0.0}};
    for (auto& [k, v] : sums_) means[k] = v.item<double>() / std::max(units, 1.0);
    loss_ = units_ = torch::Tensor();
    sums_.clear();
    tokens_ = 0;
    start_ = std::chrono::steady_clock::now();
    return means;
  }

  json saved() const {
    json w = {{"tokens", tokens_}, {"sums", json::object()}};
    if (loss_.defined()) w["loss"] = loss_.item<double>(), w["units"] = units_.item<double>();
    for (const auto& [k, v] : sums_) w["sums"][k] = v.item<double>();
    return w;
  }

 private:
  torch::Tensor loss_, units_;
  std::map<std::string, torch::Tensor> sums_;
  int64_t tokens_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// One metrics.jsonl record: `values` at `step` of `split` (train | val).
void write_record(MetricsLog& metrics, json record, int64_t step, const std::string& split) {
  record["step"] = step;
  record["split"] = split;
  metrics.write(record);
}

}  // namespace

json Trainer::fit(const MicroStep& micro_step, const Evaluate& evaluate) {
  model_.train();
  MetricsLog metrics(ctx_.dir / "metrics.jsonl");
  Progress progress(ctx_.name, options_.max_steps);
  json last_train, last_eval;
  int64_t last_eval_step = -1;
  auto run_eval = [&] {
    {
      torch::NoGradGuard no_grad;
      model_.eval();
      last_eval = evaluate();
      model_.train();
    }
    last_eval_step = state_.step;
    write_record(metrics, last_eval, state_.step, "val");
    std::ostringstream line;
    line << "step " << state_.step;
    for (const auto& [k, v] : last_eval.items()) line << " " << k << " " << v.dump();
    log_line(ctx_.name, line.str());
  };
  LogWindow window(state_.extra);
  auto checkpoint_with_window = [&] {
    state_.extra["log_window"] = window.saved();
    checkpoint();
  };

  while (state_.step < options_.max_steps) {
    const StepResult r = step(micro_step);
    window.add(r);
    const bool last = state_.step == options_.max_steps;
    if (state_.step % options_.log_every == 0 || last) {
      last_train = window.close(r);
      state_.extra["last_train"] = last_train;  // a run resumed at its end still reports it
      json record = last_train;
      record["tokens"] = state_.tokens;
      write_record(metrics, record, state_.step, "train");
      progress.update(state_.step, {{"loss", fixed(last_train["loss"].get<double>(), 4)},
                                    {"lr", scientific(r.lr, 2)},
                                    {"tok/s", human_count(last_train["tokens_per_s"].get<double>())}});
    }
    // Rank 0 evaluates; the others go on to the next step's all-reduce and wait for it there.
    if (((options_.eval_every > 0 && state_.step % options_.eval_every == 0) || last) && is_main_process()) {
      progress.finish();
      run_eval();
    }
    if ((options_.save_every > 0 && state_.step % options_.save_every == 0) || last) checkpoint_with_window();
    if (r.stop && !last) {
      progress.finish();
      checkpoint_with_window();
      throw StageInterrupted("stopped at step " + std::to_string(state_.step) + "/" +
                             std::to_string(options_.max_steps) + "; the checkpoint " + last_checkpoint_ +
                             " resumes it: run the same command again, without --force");
    }
  }
  progress.finish();
  if (last_eval_step != state_.step && is_main_process()) run_eval();  // resumed at the end: evaluate once more
  return final_metrics(last_eval, last_train);
}

// The last evaluation, the last training means as train_*, and the counts.
json Trainer::final_metrics(const json& last_eval, json last_train) const {
  json result = last_eval;
  if (last_train.empty()) last_train = state_.extra.value("last_train", json::object());
  for (const auto& [k, v] : last_train.items()) result["train_" + k] = v;
  result["steps"] = state_.step;
  result["tokens"] = state_.tokens;
  result["skipped_steps"] = nonfinite_.skipped();
  return result;
}

}  // namespace nurture
