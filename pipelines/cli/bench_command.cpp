// `nurture bench`: time the real training step or batched generation for a model shape and print
// tokens/s, step time, MFU and memory (or all of it as JSON).
#include <iostream>

#include "pipelines/cli/bench.h"
#include "pipelines/cli/model.h"
#include "pipelines/runtime/distributed.h"

namespace nurture::cli {

namespace {

constexpr const char* kBenchUsage =
    "bench --preset NAME [--set KEY=VALUE]... [--batch B] [--ctx T] [--steps N] [--warmup W]\n"
    "              [--device cpu|cuda] [--precision fp32|bf16] [--mode train|generate]\n"
    "              [--prompt-len P] [--new-tokens N] [--threads N] [--peak-tflops X] [--profile FILE] [--json]";

constexpr const char* kBenchSummary =
    "Times the training step stages run (forward, backward, clipping, AdamW) on random tokens, or\n"
    "batched KV-cache generation, for a model preset with overrides (--set n_layer=4, or\n"
    "--set model.n_layer=4). Reports the median step time after warm-up, tokens/s, MFU (flops per\n"
    "token 6N + 6LCT as llm.c counts them, against the measured matrix-product rate on CPU or the\n"
    "datasheet's on GPUs) and peak memory.";

po::options_description bench_flags() {
  const BenchOptions d;
  po::options_description options("options");
  options.add_options()
      ("preset", po::value<std::string>()->default_value(d.preset), "model preset (nurture run --describe "
                                                                     "pretrain lists them)")
      ("set", po::value<std::vector<std::string>>()->composing(), "model option override KEY=VALUE (repeatable)")
      ("mode", po::value<std::string>()->default_value(d.mode), "train (forward, backward, optimizer), generate, or load (a checkpoint: "
                                                                 "time and peak memory)")
      ("batch", po::value<int64_t>()->default_value(d.batch), "rows per step")
      ("ctx", po::value<int64_t>()->default_value(d.context), "train: tokens per row")
      ("prompt-len", po::value<int64_t>()->default_value(d.prompt_length), "generate: prompt tokens per row")
      ("new-tokens", po::value<int64_t>()->default_value(d.new_tokens), "generate: new tokens per row")
      ("steps", po::value<int64_t>()->default_value(d.steps), "timed steps")
      ("warmup", po::value<int64_t>()->default_value(d.warmup), "untimed steps before them")
      ("device", po::value<std::string>()->default_value("cpu"), "cpu or cuda")
      ("precision", po::value<std::string>()->default_value(d.precision), "fp32 or bf16 (autocast)")
      ("threads", po::value<int>()->default_value(0), "CPU intra-op threads (0 = all cores)")
      ("peak-tflops", po::value<double>()->default_value(0.0, "0"), "the peak MFU is measured against "
                                                                     "(0 = measured on CPU, datasheet on GPU)")
      ("seed", po::value<uint64_t>()->default_value(0), "random seed (weights, tokens)")
      ("profile", po::value<std::string>(), "profile the timed steps with LibTorch's profiler: write its "
                                              "chrome trace to this file and print the ops by self time")
      ("json", "print the result as one JSON object")
      ("help,h", "this help");
  return options;
}

// The flags as BenchOptions, checked: a value that cannot work is a UsageError naming its flag.
BenchOptions bench_options(const po::variables_map& vm) {
  BenchOptions o;
  o.preset = vm["preset"].as<std::string>();
  o.mode = vm["mode"].as<std::string>();
  o.batch = vm["batch"].as<int64_t>();
  o.context = vm["ctx"].as<int64_t>();
  o.prompt_length = vm["prompt-len"].as<int64_t>();
  o.new_tokens = vm["new-tokens"].as<int64_t>();
  o.steps = vm["steps"].as<int64_t>();
  o.warmup = vm["warmup"].as<int64_t>();
  o.precision = vm["precision"].as<std::string>();
  o.threads = vm["threads"].as<int>();
  o.peak_flops = vm["peak-tflops"].as<double>() * 1e12;
  o.seed = vm["seed"].as<uint64_t>();
  if (vm.count("profile")) o.profile = vm["profile"].as<std::string>();
  if (o.mode != "train" && o.mode != "generate" && o.mode != "load")
    bad_value("bench", "--mode", "must be train, generate or load, got '" + o.mode + "'");
  if (o.precision != "fp32" && o.precision != "bf16")
    bad_value("bench", "--precision", "must be fp32 or bf16, got '" + o.precision + "'");
  for (const auto& [flag, value] : {std::pair<const char*, int64_t>{"--batch", o.batch}, {"--ctx", o.context},
                                    {"--prompt-len", o.prompt_length}, {"--new-tokens", o.new_tokens},
                                    {"--steps", o.steps}})
    if (value < 1) bad_value("bench", flag, "must be at least 1, got " + std::to_string(value));
  if (o.warmup < 0) bad_value("bench", "--warmup", "must be 0 or more, got " + std::to_string(o.warmup));
  if (o.threads < 0) bad_value("bench", "--threads", "must be 0 (all cores) or more, got " + std::to_string(o.threads));
  if (o.peak_flops < 0) bad_value("bench", "--peak-tflops", "must be 0 or more");
  if (vm.count("set")) {
    for (const auto& assignment : vm["set"].as<std::vector<std::string>>()) {
      const auto eq = assignment.find('=');
      if (eq == std::string::npos || eq == 0)
        bad_value("bench", "--set", assignment + ": expected KEY=VALUE, e.g. --set n_layer=4");
      std::string key = assignment.substr(0, eq);
      if (key.rfind("model.", 0) == 0) key = key.substr(6);
      o.overrides.emplace_back(key, assignment.substr(eq + 1));
    }
  }
  try {
    bench_model_options(o);
  } catch (const std::invalid_argument& e) {
    bad_value("bench", "--preset/--set", std::string("give a valid model: ") + e.what());
  }
  o.device = parse_device("bench", vm["device"].as<std::string>());
  return o;
}

}  // namespace

int bench_command(const std::vector<std::string>& args) {
  const po::options_description options = bench_flags();
  auto vm = parse_args("bench", args, options);
  if (vm.count("help")) {
    print_help(kBenchUsage, kBenchSummary, options);
    return kExitOk;
  }
  BenchOptions o = bench_options(vm);

  // Under nurture launch (or torchrun, Slurm): the training step of every rank, in lockstep.
  const dist::Environment env = dist::environment_from_process();
  dist::init(env, o.device, std::chrono::minutes(30));
  o.device = dist::local_device(o.device);
  nlohmann::json result;
  try {
    result = run_bench(o);
  } catch (const std::invalid_argument& e) {
    throw UsageError("nurture bench: " + std::string(e.what()));
  }
  const bool report = dist::rank() == 0;
  dist::shutdown();
  if (!report) return kExitOk;
  if (vm.count("json")) std::cout << result.dump() << std::endl;
  else std::cout << format_bench(result) << std::flush;
  return kExitOk;
}

}  // namespace nurture::cli
