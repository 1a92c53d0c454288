// `nurture data prepare|demo`: tokenize pre-training text into a token shard (what the pretrain
// stage reads), or write the quickstart's demo world (every data format the lifecycle uses).
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "pipelines/cli/args.h"
#include "pipelines/data/data.h"
#include "pipelines/data/demo_data.h"
#include "pipelines/runner/registries.h"
#include "pipelines/runtime/log.h"

namespace nurture::cli {

namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kActions = {"prepare", "demo"};

void print_overview(std::ostream& out) {
  out << "usage: nurture data <action> [options]   (nurture data <action> --help)\n\n"
         "actions:\n"
         "  prepare  tokenize pre-training text (.txt, .jsonl) into a token shard: tokens.bin + index.json\n"
         "  demo     write the quickstart's demo world: pre-training text, chat, preference pairs,\n"
         "           prompts and in-context tasks about capitals and small sums\n";
}

[[noreturn]] void bad_flag(const std::string& action, const std::string& flag, const std::string& what) {
  throw UsageError("nurture data " + action + ": " + flag + " " + what + " (see nurture data " + action +
                   " --help)");
}

// ---- prepare -----------------------------------------------------------------------------------

// The files a prepared shard holds; anything else in --output means it is not one.
bool is_shard_file(const fs::path& name) { return name == "tokens.bin" || name == "index.json"; }

// prepare_token_shard replaces the whole output directory, so it must be new, empty or a shard.
void check_output(const fs::path& dir) {
  if (!fs::exists(dir)) return;
  if (!fs::is_directory(dir)) bad_flag("prepare", "--output", dir.string() + " is a file, not a directory");
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!is_shard_file(entry.path().filename()))
      bad_flag("prepare", "--output",
               dir.string() + " holds " + entry.path().filename().string() +
                   ", so it is not a token shard; preparing replaces the whole directory — name "
                   "a new one (or an earlier shard to overwrite)");
  }
}

Tokenizer load_tokenizer(const std::string& path) {
  if (!fs::exists(path))
    bad_flag("prepare", "--tokenizer",
             path + ": no such file or directory (give a tokenizer .model file or a model directory)");
  try {
    return Tokenizer::load(path);
  } catch (const std::runtime_error& e) {
    throw UsageError("nurture data prepare: --tokenizer " + std::string(e.what()));
  }
}

int prepare(const std::vector<std::string>& args) {
  po::options_description options("options");
  options.add_options()
      ("tokenizer", po::value<std::string>(), "a tokenizer .model file, or a model directory holding one (required)")
      ("input", po::value<std::vector<std::string>>()->multitoken(),
       "text files: .txt (one document per line) or .jsonl ({\"text\": ...} per line) (required; several allowed)")
      ("output", po::value<std::string>(), "the shard directory to write (required; replaced if it is a shard)")
      ("whole-files", "each .txt file is one document, not one per line")
      ("skip-bad-lines", "skip malformed .jsonl lines instead of stopping at the first")
      ("help,h", "this help");
  po::positional_options_description positional;
  positional.add("input", -1);
  auto vm = parse_args("data prepare", args, options, positional);
  if (vm.count("help")) {
    print_help("data prepare --tokenizer FILE_OR_MODEL_DIR --input FILE [--input FILE...] --output DIR\n"
               "                    [--whole-files] [--skip-bad-lines]",
               "Tokenizes the inputs into DIR/tokens.bin (uint16 when the vocabulary fits, else uint32),\n"
               "each document followed by <|endoftext|>, with DIR/index.json describing it. Blank lines are\n"
               "not documents. The pretrain stage reads such a shard memory-mapped.",
               options);
    return kExitOk;
  }
  if (!vm.count("tokenizer"))
    throw UsageError("nurture data prepare: which tokenizer? e.g. --tokenizer runs/quickstart/tokenizer "
                     "(see nurture data prepare --help)");
  if (!vm.count("input"))
    throw UsageError("nurture data prepare: which text files? e.g. --input corpus.txt "
                     "(see nurture data prepare --help)");
  if (!vm.count("output"))
    throw UsageError("nurture data prepare: where to write the shard? e.g. --output data/pretrain "
                     "(see nurture data prepare --help)");

  PrepareOptions settings;
  settings.inputs = vm["input"].as<std::vector<std::string>>();
  settings.whole_files = vm.count("whole-files") > 0;
  settings.skip_bad_lines = vm.count("skip-bad-lines") > 0;
  for (const auto& input : settings.inputs) {
    if (!fs::is_regular_file(input))
      bad_flag("prepare", "--input", input + " does not exist or is not a file");
  }
  const fs::path dir = vm["output"].as<std::string>();
  check_output(dir);
  const Tokenizer tokenizer = load_tokenizer(vm["tokenizer"].as<std::string>());
  if (tokenizer.eot_id() < 0)
    bad_flag("prepare", "--tokenizer",
             tokenizer.source() + " has no <|endoftext|> token, which separates the documents of a "
                                  "shard; use a tokenizer trained by nurture");

  log_line("data", "tokenizing " + std::to_string(settings.inputs.size()) + " file(s) with " +
                       tokenizer.source() + " (vocab " + std::to_string(tokenizer.vocab_size()) + ")");
  ShardIndex index;
  try {
    index = prepare_token_shard(dir, tokenizer, settings);
  } catch (const fs::filesystem_error&) {
    throw;  // the disk, not the input
  } catch (const std::runtime_error& e) {
    // A malformed line ("file:line: what"), or inputs that hold no text.
    throw UsageError("nurture data prepare: " + std::string(e.what()));
  }
  log_line("data", "wrote " + dir.string() + ": " + std::to_string(index.num_documents) + " documents, " +
                       std::to_string(index.num_tokens) + " tokens, " + index.dtype + ", " +
                       std::to_string(fs::file_size(dir / "tokens.bin")) + " bytes");
  return kExitOk;
}

// ---- demo --------------------------------------------------------------------------------------

// The demo world's files in the order the lifecycle uses them: file, count key, what it holds.
struct DemoFile {
  const char* file;
  const char* count;
  const char* what;
};
const DemoFile kDemoFiles[] = {
    {"pretrain.txt", "pretrain_lines", "pre-training prose, one document per line"},
    {"pretrain_val.txt", "pretrain_val_lines", "held-out prose for the validation loss"},
    {"pretrain_lists.jsonl", "pretrain_lists", "pre-training lists (\"Korea: Seoul\" ...), one per document"},
    {"pretrain_dialogues.jsonl", "pretrain_dialogues", "pre-training dialogues (\"User: ...\\nAssistant: ...\"), one per document"},
    {"sft.jsonl", "sft_examples", "chat examples for supervised fine-tuning"},
    {"sft_val.jsonl", "sft_val_examples", "held-out chat examples"},
    {"prefs.jsonl", "pref_pairs", "preference pairs (chosen, rejected) for the reward model and DPO"},
    {"prefs_val.jsonl", "pref_val_pairs", "held-out preference pairs"},
    {"prompts.jsonl", "ppo_prompts", "prompts with reference answers for PPO"},
    {"eval_prompts.jsonl", "eval_prompts", "held-out prompts with reference answers for evaluation"},
    {"sums_prompts.jsonl", "sums_prompts", "the sums' questions with their numeric answers, for GRPO"},
    {"sums_eval_prompts.jsonl", "sums_eval_prompts", "held-out sums with their numeric answers"},
    {"icl.jsonl", "icl_examples", "in-context tasks (input -> target)"},
};

int demo(const std::vector<std::string>& args) {
  const DemoDataOptions defaults;
  po::options_description options("options");
  options.add_options()
      ("output", po::value<std::string>(), "the directory to write into (required; created if needed)")
      ("seed", po::value<uint64_t>()->default_value(defaults.seed), "random seed (the same seed writes the same files)")
      ("prose-repeats", po::value<int64_t>()->default_value(defaults.prose_repeats),
       "how often each fact is told in the pre-training prose (>= 1)")
      ("max-operand", po::value<int64_t>()->default_value(defaults.max_operand),
       "sums a + b use 0 <= a, b <= N (1..99)")
      ("heldout-fraction", po::value<double>()->default_value(defaults.heldout_fraction, "0.25"),
       "share of facts kept out of SFT/RM/PPO training, for evaluation (0 < F <= 0.9)")
      ("help,h", "this help");
  auto vm = parse_args("data demo", args, options);
  if (vm.count("help")) {
    print_help("data demo --output DIR [--seed S] [--prose-repeats N] [--max-operand N] [--heldout-fraction F]",
               "Writes the quickstart's small world (countries, their capitals and continents, small sums)\ninto DIR "
               "in every data format the lifecycle uses, and prints how many lines each file holds.",
               options);
    return kExitOk;
  }
  if (!vm.count("output"))
    throw UsageError("nurture data demo: where to write? e.g. --output data/demo (see nurture data demo --help)");
  DemoDataOptions settings;
  settings.seed = vm["seed"].as<uint64_t>();
  settings.prose_repeats = vm["prose-repeats"].as<int64_t>();
  settings.max_operand = vm["max-operand"].as<int64_t>();
  settings.heldout_fraction = vm["heldout-fraction"].as<double>();
  if (settings.prose_repeats < 1)
    bad_flag("demo", "--prose-repeats", "must be at least 1, got " + std::to_string(settings.prose_repeats));
  if (settings.max_operand < 1 || settings.max_operand > 99)
    bad_flag("demo", "--max-operand", "must be in 1..99, got " + std::to_string(settings.max_operand));
  if (!(settings.heldout_fraction > 0 && settings.heldout_fraction <= 0.9)) {
    std::ostringstream got;
    got << settings.heldout_fraction;
    bad_flag("demo", "--heldout-fraction", "must be in (0, 0.9], got " + got.str());
  }
  const fs::path dir = vm["output"].as<std::string>();
  if (fs::exists(dir) && !fs::is_directory(dir))
    bad_flag("demo", "--output", dir.string() + " is a file, not a directory");

  const auto counts = write_demo_data(dir, settings);
  log_line("data", "wrote the demo world into " + dir.string() + " (seed " + std::to_string(settings.seed) + ")");
  for (const auto& f : kDemoFiles) {
    std::cout << "  " << std::left << std::setw(26) << f.file << std::right << std::setw(7)
              << counts.at(f.count).get<int64_t>() << "  " << f.what << "\n";
  }
  std::cout << std::flush;
  return kExitOk;
}

}  // namespace

int data_command(const std::vector<std::string>& args) {
  if (args.empty())
    throw UsageError("nurture data: which action? prepare or demo (see nurture data --help)");
  const std::string& action = args[0];
  if (action == "--help" || action == "-h" || action == "help") {
    print_overview(std::cout);
    return kExitOk;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (action == "prepare") return prepare(rest);
  if (action == "demo") return demo(rest);
  const std::string hint = did_you_mean(action, kActions);
  throw UsageError("nurture data: unknown action '" + action + "'" + (hint.empty() ? "" : "; " + hint) +
                   " (actions: " + join_names(kActions) + "; see nurture data --help)");
}

}  // namespace nurture::cli
