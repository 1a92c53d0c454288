// The recipe runner: validation of the whole recipe first, then the stages in order.
#include "pipelines/runner/runner.h"

#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>

#include "modules/core/compat.h"
#include "modules/core/files.h"
#include "modules/core/json_file.h"
#include "pipelines/runner/plugin.h"
#include "pipelines/runner/registries.h"
#include "pipelines/runtime/distributed.h"
#include "pipelines/runtime/log.h"
#include "pipelines/runtime/stop.h"
#include "pipelines/runtime/threads.h"

namespace nurture {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- the recipe's run-wide section -----------------------------------------------------------------

std::shared_ptr<const Schema> run_schema() {
  auto s = std::make_shared<Schema>();
  s->add_string("description", "", "what this recipe is for (free text)");
  s->add_enum("device", "cpu", {"cpu", "cuda", "auto"}, "where tensors live; auto = cuda if available");
  s->add_int("seed", 0, "seed for every random number generator").at_least(0);
  s->add_int("threads", 1, "intra-op CPU threads; auto = the cores this process is bound to, or the "
                           "machine's cores shared among this node's processes").or_auto().at_least(1)
      .default_value = "auto";
  s->add_enum("precision", "fp32", {"fp32", "bf16", "fp64"},
              "compute precision: bf16 runs matrix products and attention in bfloat16 (autocast, "
              "CPU or CUDA) while weights, optimizer state and losses stay fp32; fp64 keeps weights "
              "and compute in float64 (slow; for numerical checks)");
  s->add_bool("tf32", true, "on CUDA, fp32 matrix products use TensorFloat-32 tensor cores (several "
                           "times faster from Ampere on, ~1e-3 relative error per product); false = "
                           "IEEE fp32");
  s->add_string("output_dir", "", "where stages write their outputs; default runs/<recipe name>");
  auto distributed = std::make_shared<Schema>();
  distributed->add_int("timeout_s", 1800, "how long a rank waits for the others (rendezvous, every "
                                          "collective); a rank that died or hangs stops the rest "
                                          "after this long").at_least(1);
  distributed->add_int("bucket_mb", 25, "gradients are all-reduced in buckets of about this size, "
                                        "each as soon as its gradients are ready").at_least(1);
  s->add_section("distributed", distributed, "data parallelism over processes (nurture launch, "
                                             "torchrun, Slurm or Open MPI set the ranks)");
  s->add_string_list("plugins", "shared libraries that register extra components");
  s->add_any("stages", "the ordered stages: name -> {pipeline: NAME, ...settings}").must_be_required();
  return s;
}

static std::string default_output_dir(const fs::path& recipe) {
  return (fs::path("runs") / recipe.stem()).string();
}

// ---- ${stage} references inside values ---------------------------------------------------------------

// Calls `fn(name, node, key_path)` for every `${name}` in the scalars under `node`.
template <class Fn>
static void for_each_stage_placeholder(const ConfigNode& node, const std::string& path, Fn&& fn) {
  if (node.is_scalar()) {
    const std::string& t = node.text();
    for (size_t at = t.find("${"); at != std::string::npos; at = t.find("${", at + 2)) {
      const size_t end = t.find('}', at);
      if (end == std::string::npos) break;
      fn(t.substr(at + 2, end - at - 2), node, path);
    }
  }
  for (const auto& e : node.entries()) for_each_stage_placeholder(e.value, path + "." + e.key, fn);
  for (const auto& item : node.items()) for_each_stage_placeholder(item, path, fn);
}

// The earlier stages a stage reads: its `${name}` placeholders and its stage-reference settings.
static std::set<std::string> stage_inputs(const StagePlan& stage, const std::vector<StagePlan>& stages) {
  std::set<std::string> names;
  for_each_stage_placeholder(stage.settings, "", [&](const std::string& name, const ConfigNode&,
                                                     const std::string&) { names.insert(name); });
  Settings settings(stage.settings, "stages." + stage.name);
  // Held here: a range-for over schema()->fields() would outlive the schema the call returns.
  const auto schema = registries().pipelines.get(stage.pipeline).schema();
  for (const auto& field : schema->fields()) {
    if (field.type != FieldType::StageRef || !settings.has(field.key)) continue;
    for (const auto& ref : field.list ? settings.get_string_list(field.key)
                                      : std::vector<std::string>{settings.get_string(field.key)})
      for (const auto& s : stages)
        if (s.name == ref) names.insert(ref);
  }
  return names;
}

// Replaces each `${name}` with that stage's output directory.
static void substitute_stage_dirs(ConfigNode& node, const std::map<std::string, fs::path>& dirs) {
  if (node.is_scalar()) {
    std::string t = node.text();
    for (const auto& [name, dir] : dirs) {
      const std::string token = "${" + name + "}";
      for (size_t at = t.find(token); at != std::string::npos; at = t.find(token, at))
        t.replace(at, token.size(), dir.string());
    }
    node = ConfigNode::scalar(t, node.where(), node.quoted());
  }
  for (auto& e : node.entries()) substitute_stage_dirs(e.value, dirs);
  for (auto& item : node.items()) substitute_stage_dirs(item, dirs);
}

// ---- loading and validation -------------------------------------------------------------------------

static void load_plugins(const ConfigNode& root) {
  const ConfigNode* plugins = root.find("plugins");
  if (!plugins || plugins->is_null()) return;
  std::vector<const ConfigNode*> items;
  if (plugins->is_scalar()) items.push_back(plugins);
  else if (plugins->is_sequence())
    for (const auto& item : plugins->items()) items.push_back(&item);
  else
    throw ConfigError({plugins->where().str() + ": plugins: expected a list of shared library paths"});
  for (const ConfigNode* item : items) {
    if (!item->is_scalar())
      throw ConfigError({item->where().str() + ": plugins: expected a path, got " + item->kind_name()});
    load_plugin(item->text(), item->where().str());
  }
}

static torch::Device resolve_device(const std::string& name, const ConfigNode* where,
                                    std::vector<std::string>& errors) {
  if (name != "cuda" && name != "auto") return torch::kCPU;  // cpu, or a value already reported
  const bool cuda = torch::cuda::is_available();
  if (name == "auto") return cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  if (!cuda) {
    errors.push_back((where ? where->where().str() : std::string("<recipe>")) +
                     ": device: cuda requested, but this LibTorch (" + compat::torch_version() +
                     ") sees no CUDA device; use device: cpu or auto");
  }
  return torch::Device(torch::kCUDA);
}

// One stage's settings against its pipeline's schema, and its ${stage} placeholders against the
// stages before it. Returns the resolved stage, or nothing when it had errors (added to ctx).
static std::optional<StagePlan> validate_stage(const ConfigNode::Entry& e, ValidationContext& ctx) {
  Registries& reg = registries();
  const std::string path = "stages." + e.key;
  if (!e.value.is_map()) {
    ctx.errors.push_back(e.value.where().str() + ": " + path +
                         ": expected the stage's settings (a mapping with `pipeline:`), got " +
                         e.value.kind_name());
    return std::nullopt;
  }
  const ConfigNode* pipeline = e.value.find("pipeline");
  if (!pipeline || !pipeline->is_scalar()) {
    ctx.errors.push_back(e.key_where.str() + ": " + path + ": missing required key 'pipeline' (one of " +
                         join_names(reg.pipelines.names()) + ")");
    return std::nullopt;
  }
  if (!reg.pipelines.contains(pipeline->text())) {
    ctx.errors.push_back(pipeline->where().str() + ": " + path + ".pipeline: " +
                         reg.pipelines.unknown(pipeline->text()));
    return std::nullopt;
  }
  ConfigNode settings = e.value;
  settings.erase("pipeline");
  auto schema = reg.pipelines.get(pipeline->text()).schema();
  const size_t before = ctx.errors.size();
  schema->validate(settings, path, ctx);
  for_each_stage_placeholder(settings, path, [&](const std::string& name, const ConfigNode& n,
                                                 const std::string& key) {
    for (const auto& earlier : ctx.earlier_stages)
      if (earlier.first == name) return;
    std::vector<std::string> names;
    for (const auto& earlier : ctx.earlier_stages) names.push_back(earlier.first);
    std::string hint = did_you_mean(name, names);
    ctx.errors.push_back(n.where().str() + ": " + key + ": ${" + name +
                         "} names no earlier stage (earlier: " + join_names(names) + ")" +
                         (hint.empty() ? "" : "; " + hint));
  });
  if (ctx.errors.size() != before) return std::nullopt;
  return StagePlan{e.key, pipeline->text(), schema->resolve(settings), true};
}

// The recipe's tree as written, with --set overrides and --output applied; its plugins loaded
// (they register the pipelines its stages may name).
static ConfigNode read_recipe_tree(const fs::path& file, const RunOptions& options) {
  ConfigNode root = load_recipe_file(file);
  for (const auto& assignment : options.overrides) apply_override(root, assignment);
  if (!options.output.empty()) {
    SourceLocation where;
    where.file = "--output";
    where.override = "--output " + options.output;
    root.set("output_dir", ConfigNode::scalar(options.output, where), where);
  }
  load_plugins(root);
  return root;
}

// What validation knows beyond the tree: the ranks, and what each registered pipeline produces.
static ValidationContext validation_context() {
  ValidationContext ctx;
  try {
    ctx.world_size = dist::environment_from_process().world_size;
  } catch (const std::invalid_argument&) {  // reported with the recipe's errors
  }
  const auto& pipelines = registries().pipelines;
  for (const auto& name : pipelines.names()) ctx.products[name] = pipelines.get(name).produces;
  return ctx;
}

// Validates the stages in order, each against the ones before it; returns every stage's name and
// adds the valid ones to recipe.stages.
static std::vector<std::string> validate_stages(const ConfigNode* stages, ValidationContext& ctx,
                                                Recipe& recipe) {
  std::vector<std::string> stage_names;
  if (stages && !stages->is_map() && !stages->is_null()) {
    ctx.errors.push_back(stages->where().str() +
                         ": stages: expected a mapping of stage name -> settings, got " +
                         stages->kind_name());
  } else if (stages && stages->entries().empty()) {
    ctx.errors.push_back(stages->where().str() + ": stages: a recipe needs at least one stage");
  } else if (stages) {
    for (const auto& e : stages->entries()) {
      stage_names.push_back(e.key);
      if (auto stage = validate_stage(e, ctx)) recipe.stages.push_back(std::move(*stage));
      // Later stages may refer to this one even when its own settings are wrong; an empty
      // pipeline (unknown or missing) skips the check of what it produces.
      const ConfigNode* pipeline = e.value.is_map() ? e.value.find("pipeline") : nullptr;
      const bool known = pipeline && pipeline->is_scalar() &&
                         registries().pipelines.contains(pipeline->text());
      ctx.earlier_stages.emplace_back(e.key, known ? pipeline->text() : std::string());
    }
  }
  return stage_names;
}

// Command-line stage selection must name real stages; the process's place among the ranks comes
// from the environment, and a malformed one is reported with the recipe's errors.
static void check_selection_and_environment(const RunOptions& options,
                                            const std::vector<std::string>& stage_names,
                                            ValidationContext& ctx) {
  for (const auto& [flag, value] : {std::pair<std::string, std::string>{"--only", options.only},
                                    {"--from", options.from}}) {
    if (value.empty() || std::find(stage_names.begin(), stage_names.end(), value) != stage_names.end())
      continue;
    std::string hint = did_you_mean(value, stage_names);
    ctx.errors.push_back(flag + " " + value + ": no such stage (stages: " + join_names(stage_names) +
                         ")" + (hint.empty() ? "" : "; " + hint));
  }
  try {
    dist::environment_from_process();
  } catch (const std::invalid_argument& e) {
    ctx.errors.push_back(std::string("environment: ") + e.what());
  }
}

// The run-wide settings from the resolved tree, with the defaults that depend on the recipe
// itself (output_dir) filled in there.
static void read_run_settings(const fs::path& file, ConfigNode& resolved, Recipe& recipe) {
  if (resolved.find("output_dir")->text().empty()) {
    SourceLocation where;
    where.file = "default";
    resolved.set("output_dir", ConfigNode::scalar(default_output_dir(file), where));
  }
  recipe.threads_setting = resolved.find("threads")->text();

  Settings top(resolved, "");
  recipe.run.seed = top.get_int("seed");
  recipe.run.precision = top.get_string("precision");
  recipe.run.tf32 = top.get_bool("tf32");
  recipe.run.output_dir = top.get_string("output_dir");
  recipe.run.threads = recipe.threads_setting == "auto" ? default_cpu_threads()
                                                         : static_cast<int>(top.get_int("threads"));
  const Settings distributed = top.section("distributed");
  recipe.run.bucket_mb = distributed.get_int("bucket_mb");
  recipe.distributed_timeout_s = distributed.get_int("timeout_s");
}

// --only / --from: which stages run.
static void select_stages(const RunOptions& options, std::vector<StagePlan>& stages) {
  bool selecting = options.from.empty();
  for (auto& stage : stages) {
    if (stage.name == options.from) selecting = true;
    stage.selected = options.only.empty() ? selecting : stage.name == options.only;
  }
}

// The resolved tree's stages: each stage with `pipeline` first, then its resolved settings.
static ConfigNode resolved_stages(const ConfigNode* stages, const std::vector<StagePlan>& plans) {
  ConfigNode stages_node = ConfigNode::map(stages ? stages->where() : SourceLocation{});
  for (const auto& stage : plans) {
    ConfigNode s = ConfigNode::map(stage.settings.where());
    s.set("pipeline", ConfigNode::scalar(stage.pipeline, stage.settings.where()));
    for (const auto& e : stage.settings.entries()) s.set(e.key, e.value, e.key_where);
    stages_node.set(stage.name, s);
  }
  return stages_node;
}

Recipe load_recipe(const fs::path& file, const RunOptions& options) {
  const ConfigNode root = read_recipe_tree(file, options);
  ValidationContext ctx = validation_context();
  auto run = run_schema();
  run->validate(root, "", ctx);

  Recipe recipe;
  recipe.source = file.string();
  const ConfigNode* stages = root.find("stages");
  const std::vector<std::string> stage_names = validate_stages(stages, ctx, recipe);
  check_selection_and_environment(options, stage_names, ctx);
  if (!ctx.errors.empty()) throw ConfigError(ctx.errors);

  ConfigNode resolved = run->resolve(root);
  recipe.run.device = resolve_device(resolved.find("device")->text(), root.find("device"), ctx.errors);
  if (!ctx.errors.empty()) throw ConfigError(ctx.errors);
  read_run_settings(file, resolved, recipe);
  select_stages(options, recipe.stages);
  resolved.set("stages", resolved_stages(stages, recipe.stages));
  recipe.resolved = resolved;
  return recipe;
}

static json read_json_or_null(const fs::path& path) {
  if (!std::ifstream(path)) return nullptr;
  try {
    return read_json_file(path, {/*max_bytes=*/1 << 20});
  } catch (const std::runtime_error&) {
    return nullptr;
  }
}

// ---- running ------------------------------------------------------------------------------------------

namespace {

struct StageResult {
  std::string name, pipeline, status;  // done | failed | skipped | not run
  double seconds = 0;
  json metrics = json::object();
  std::string error;
};

json to_json(const StageResult& r) {
  json j = {{"name", r.name}, {"pipeline", r.pipeline}, {"status", r.status},
            {"seconds", r.seconds}, {"metrics", r.metrics}};
  if (!r.error.empty()) j["error"] = r.error;
  return j;
}

std::string format_metric(const json& v) {
  if (v.is_number_float()) {
    std::ostringstream s;
    s << std::setprecision(4) << v.get<double>();
    return s.str();
  }
  return v.dump();
}

void print_table(const std::vector<StageResult>& results) {
  std::ostringstream out;
  out << std::left << std::setw(16) << "stage" << std::setw(14) << "pipeline" << std::setw(10)
      << "status" << std::right << std::setw(9) << "seconds" << "  metrics\n";
  for (const auto& r : results) {
    out << std::left << std::setw(16) << r.name << std::setw(14) << r.pipeline << std::setw(10)
        << r.status << std::right << std::setw(9) << std::fixed << std::setprecision(1) << r.seconds
        << "  ";
    out.unsetf(std::ios::fixed);
    int shown = 0;
    for (const auto& [k, v] : r.metrics.items()) {
      if (v.is_object() || v.is_array()) continue;
      if (shown++ == 6) {
        out << " ...";
        break;
      }
      out << (shown > 1 ? ", " : "") << k << " " << format_metric(v);
    }
    out << "\n";
  }
  if (is_main_process()) std::cout << out.str() << std::flush;
}

}  // namespace

// SIGTERM (a scheduler preempting the job) or Ctrl-C: the running stage checkpoints and stops.
// A second one of either kills the process as usual (a checkpoint being written then is left as
// a .tmp directory, which resuming ignores). Counted rather than left to the handler's reset of
// the dispositions: two signals sent together can reach two threads before either reset.
static std::atomic<int> stop_signals{0};

extern "C" void on_stop_signal(int sig) {
  if (stop_signals.fetch_add(1) > 0) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  request_stop();
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}

// How a stage ended, as the ranks tell each other: 0 done, 1 interrupted, 2 failed.
static int status_code(const std::string& status) {
  return status == "done" ? 0 : status == "interrupted" ? 1 : 2;
}

// Runs one stage on this rank (every rank for a data-parallel stage; rank 0 alone otherwise,
// the others learning how it ended from the store) and returns how it ended.
static StageResult run_stage(const StagePlan& stage, const StageContext& ctx, bool parallel) {
  StageResult result{stage.name, stage.pipeline, "not run"};
  const auto start = std::chrono::steady_clock::now();
  if (parallel || is_main_process()) {
    try {
      auto pipeline = registries().pipelines.get(stage.pipeline).create();
      // precision bf16: every forward pass of the stage autocasts; weights stay fp32.
      compat::AutocastGuard autocast(ctx.run.device, ctx.run.compute_dtype());
      result.metrics = pipeline->run(ctx);
      result.status = "done";
    } catch (const StageInterrupted& e) {
      result.status = "interrupted";
      result.error = e.what();
    } catch (const std::exception& e) {
      result.status = "failed";
      result.error = e.what();
    }
  }
  if (dist::world_size() > 1) {
    if (parallel) {
      // The worst ending over the ranks is the stage's (a rank that failed fails it for all). When
      // the ranks cannot even agree on that (one died), this rank's own ending stands.
      torch::Tensor codes = torch::zeros({dist::world_size()}, torch::kFloat64);
      codes[dist::rank()] = status_code(result.status);
      try {
        dist::all_reduce_sum(codes);
        const auto worst = codes.max(0);
        const int code = static_cast<int>(std::get<0>(worst).item<double>());
        if (code > status_code(result.status)) {
          result.status = code == 1 ? "interrupted" : "failed";
          result.error = "rank " + std::to_string(std::get<1>(worst).item<int64_t>()) + " " + result.status +
                         " (its own output says why)";
        }
      } catch (const std::exception& e) {
        if (result.status == "done") {
          result.status = "failed";
          result.error = e.what();
        }
      }
    } else if (is_main_process()) {
      const json told = {{"status", result.status}, {"error", result.error}};
      dist::publish("stage/" + stage.name, told.dump(-1, ' ', false, json::error_handler_t::replace));
    } else {
      const json told = json::parse(dist::wait_for("stage/" + stage.name));
      result.status = told["status"];
      result.error = told["error"];
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

// ---- the run, stage by stage ---------------------------------------------------------------------

// SIGTERM and SIGINT ask the running stage to stop (see on_stop_signal).
static void install_stop_handlers() {
  clear_stop_request();
  stop_signals = 0;
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
}

// Joins the other ranks (if any) and returns the run settings of this process: its own device.
static RunSettings join_ranks(const Recipe& recipe) {
  set_cpu_threads(recipe.run.threads);
  torch::manual_seed(static_cast<uint64_t>(recipe.run.seed));
  const dist::Environment env = dist::environment_from_process();
  dist::init(env, recipe.run.device, std::chrono::seconds(recipe.distributed_timeout_s));
  RunSettings run = recipe.run;
  run.device = dist::local_device(run.device);
  if (run.device.is_cuda()) compat::set_cuda_matmul_tf32(run.tf32);
  log_line("run", "recipe " + recipe.source + " -> " + recipe.run.output_dir.string());
  log_line("run", "LibTorch " + compat::torch_version() + ", device " + run.device.str() + ", threads " +
                      std::to_string(torch::get_num_threads()) + " (intra-op, " + recipe.threads_setting +
                      "), precision " + run.precision + (run.device.is_cuda() && run.tf32 && run.precision == "fp32" ? " (tf32 matmuls)" : "") +
                      ", seed " + std::to_string(run.seed));
  if (dist::world_size() > 1)
    log_line("run", std::to_string(dist::world_size()) + " ranks (" + env.source + ", " +
                        std::to_string(env.local_world_size) + " on this node), backend " + dist::backend() +
                        ", master " + env.master_addr + ":" + std::to_string(env.master_port));
  return run;
}

namespace {

// One invocation of a recipe: which stages run again, which are kept, what each ended as.
class RecipeRun {
 public:
  RecipeRun(const Recipe& recipe, const RunOptions& options, RunSettings run)
      : recipe_(recipe), options_(options), run_(std::move(run)), out_dir_(recipe.run.output_dir) {}

  int run_all() {
    start();
    for (const auto& stage : recipe_.stages) results_.push_back(stage_result(stage));
    finish();
    return exit_code_;
  }

 private:
  // The resolved recipe beside the outputs, and what earlier runs left, read by every rank before
  // rank 0 changes anything: all ranks decide alike which stages run.
  void start() {
    if (is_main_process()) {
      fs::create_directories(out_dir_);
      write_file_atomic(out_dir_ / "recipe.yaml", "# resolved from " + recipe_.source + "\n" + to_yaml(recipe_.resolved));
    }
    for (const auto& stage : recipe_.stages)
      previous_[stage.name] = read_json_or_null(out_dir_ / stage.name / "stage.json");
    dist::barrier();
  }

  // Runs the stage, or keeps what an earlier run left, or fails it for a missing input.
  StageResult stage_result(const StagePlan& stage) {
    const json& before = previous_[stage.name];
    const bool done_before = before.is_object() && before.value("status", "") == "done";
    const bool out_of_date = done_before && reads_changed_input(stage);
    if (exit_code_ != 0 || !stage.selected || (done_before && !options_.force && !out_of_date))
      return kept(stage, before, done_before);

    ConfigNode resolved = stage.settings;
    substitute_stage_dirs(resolved, stage_dirs_);
    const Settings settings(resolved, "stages." + stage.name);
    const std::string missing = missing_input(stage, resolved, settings);
    if (!missing.empty()) {
      if (is_main_process()) std::cerr << "[run] error: " << missing << std::endl;
      exit_code_ = 1;
      StageResult result{stage.name, stage.pipeline, "failed"};
      result.error = missing;
      return result;
    }
    return run_now(stage, settings, out_of_date);
  }

  // Whether the stage reads a stage that ran in this invocation (or is out of date itself): then
  // it runs again if selected, else it is reported out of date, and so are the stages reading it.
  bool reads_changed_input(const StagePlan& stage) {
    std::string changed_input;
    for (const auto& input : stage_inputs(stage, recipe_.stages))
      if (ran_.count(input)) changed_input = input;
    if (changed_input.empty()) return false;
    if (stage.selected && exit_code_ == 0) {
      log_line("run", "stage " + stage.name + " reads " + changed_input + ", which ran again: running " +
                          stage.name + " again");
    } else {
      log_line("run", "warning: stage " + stage.name + " reads " + changed_input +
                          ", which ran again; its outputs are out of date (run with --from " + stage.name + ")");
      ran_.insert(stage.name);  // and so are the stages that read it
    }
    return true;
  }

  // A stage that does not run now: done before (its record stands) or not run.
  StageResult kept(const StagePlan& stage, const json& before, bool done_before) {
    StageResult result{stage.name, stage.pipeline, "not run"};
    if (!done_before) return result;
    const fs::path dir = out_dir_ / stage.name;
    result.status = exit_code_ != 0 || !stage.selected ? "done" : "skipped";
    result.seconds = before.value("seconds", 0.0);
    result.metrics = before.value("metrics", json::object());
    stage_dirs_[stage.name] = dir;
    if (result.status == "skipped")
      log_line("run", "stage " + stage.name + " is already done in " + dir.string() +
                          " (use --force to run it again)");
    return result;
  }

  // Every stage this one refers to must have an output to read; returns the error, or "".
  std::string missing_input(const StagePlan& stage, const ConfigNode& resolved, const Settings& settings) const {
    const std::string remedy = " has not completed in " + out_dir_.string() +
                               " (run it first, or run without --only/--from)";
    std::string missing;
    for_each_stage_placeholder(resolved, settings.path(), [&](const std::string& ref, const ConfigNode& n,
                                                              const std::string& key) {
      missing = n.where().str() + ": " + key + ": stage '" + ref + "'" + remedy;
    });
    const auto schema = registries().pipelines.get(stage.pipeline).schema();
    for (const auto& field : schema->fields()) {
      if (field.type != FieldType::StageRef || !settings.has(field.key)) continue;
      const auto refs = field.list ? settings.get_string_list(field.key)
                                   : std::vector<std::string>{settings.get_string(field.key)};
      for (const auto& ref : refs) {
        const bool is_stage = std::any_of(recipe_.stages.begin(), recipe_.stages.end(),
                                          [&](const StagePlan& s) { return s.name == ref; });
        if (is_stage && !stage_dirs_.count(ref)) missing = settings.where(field.key) + ": stage '" + ref + "'" + remedy;
      }
    }
    return missing;
  }

  // Runs the stage into a fresh directory (when forced or out of date) and records how it ended.
  StageResult run_now(const StagePlan& stage, const Settings& settings, bool out_of_date) {
    const fs::path dir = out_dir_ / stage.name;
    const bool parallel = registries().pipelines.get(stage.pipeline).data_parallel;
    if (is_main_process()) {
      if ((options_.force || out_of_date) && fs::exists(dir)) fs::remove_all(dir);
      fs::create_directories(dir);
      log_line(stage.name, "stage " + stage.name + " (pipeline " + stage.pipeline + ")" +
                               (dist::world_size() > 1 ? parallel ? ", on every rank" : ", on rank 0" : ""));
      write_file_atomic(dir / "stage.json", json{{"status", "running"}}.dump(2) + "\n");
    }
    if (parallel) dist::barrier();  // the stage's directory is ready before any rank looks into it
    const StageContext ctx{stage.name, stage.pipeline, dir, settings, run_, stage_dirs_};
    StageResult result = run_stage(stage, ctx, parallel);
    // (replace: an error quoting a user's invalid UTF-8 must not stop the record being written)
    if (is_main_process())
      write_file_atomic(dir / "stage.json", to_json(result).dump(2, ' ', false, json::error_handler_t::replace) + "\n");
    report(result, dir);
    return result;
  }

  void report(const StageResult& result, const fs::path& dir) {
    if (result.status == "done") {
      stage_dirs_[result.name] = dir;
      ran_.insert(result.name);
      log_line(result.name, "done in " + human_duration(result.seconds));
    } else if (result.status == "interrupted") {
      if (is_main_process()) std::cerr << "[" << result.name << "] interrupted: " << result.error << std::endl;
      exit_code_ = kExitInterrupted;
    } else {
      std::cerr << "[" << result.name << "] error: " << result.error << std::endl;
      if (is_main_process())
        std::cerr << "[run] stage " << result.name << " failed; outputs of earlier stages in " << out_dir_.string()
                  << " are intact" << std::endl;
      exit_code_ = 1;
    }
  }

  // summary.json and the table.
  void finish() const {
    json summary = {{"recipe", recipe_.source},
                    {"output_dir", out_dir_.string()},
                    {"torch_version", compat::torch_version()},
                    {"device", run_.device.str()},
                    {"threads", torch::get_num_threads()},
                    {"ranks", dist::world_size()},
                    {"status", exit_code_ == 0 ? "done" : exit_code_ == kExitInterrupted ? "interrupted" : "failed"},
                    {"stages", json::array()}};
    for (const auto& r : results_) summary["stages"].push_back(to_json(r));
    // A pipeline may contribute run-level sections (e.g. the eval stage's comparison table).
    for (const auto& r : results_)
      if (r.metrics.contains("summary") && r.metrics["summary"].is_object())
        for (const auto& [k, v] : r.metrics["summary"].items()) summary[k] = v;
    if (is_main_process()) {
      write_file_atomic(out_dir_ / "summary.json", summary.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
      print_table(results_);
      log_line("run", "summary written to " + (out_dir_ / "summary.json").string());
    }
  }

  const Recipe& recipe_;
  const RunOptions& options_;
  const RunSettings run_;
  const fs::path out_dir_;
  std::map<std::string, json> previous_;       // each stage's stage.json from earlier runs
  std::vector<StageResult> results_;
  std::map<std::string, fs::path> stage_dirs_;  // stages with an output to read
  int exit_code_ = 0;
  std::set<std::string> ran_;  // stages that ran in this invocation (or are out of date): what reads them is out of date
};

}  // namespace

int run_recipe(const Recipe& recipe, const RunOptions& options) {
  install_stop_handlers();
  const int exit_code = RecipeRun(recipe, options, join_ranks(recipe)).run_all();
  dist::shutdown();  // rank 0 (the store's server) leaves last
  return exit_code;
}

}  // namespace nurture
