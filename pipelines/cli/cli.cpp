// `nurture` subcommand dispatch, --help/--version, and the mapping of exceptions to exit codes.
#include "pipelines/cli/cli.h"

#include <iostream>
#include <map>
#include <sstream>

#include "modules/core/compat.h"
#include "pipelines/cli/args.h"
#include "pipelines/recipe/config.h"
#include "pipelines/runner/registries.h"

namespace nurture::cli {

namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const std::vector<std::string>&);
};

const std::vector<Command>& commands() {
  static const std::vector<Command> list = {
      {"run", "run a recipe's stages (nurture run recipes/quickstart.yaml)", run_command},
      {"tokenizer", "train a SentencePiece tokenizer, encode or decode text", tokenizer_command},
      {"generate", "sample a completion from a model directory", generate_command},
      {"chat", "chat with a model directory, one message per line of stdin", chat_command},
      {"data", "tokenize pre-training text into a token shard, or write the demo data", data_command},
      {"bench", "time the training step or generation for a model shape (tokens/s, MFU, memory)", bench_command},
      {"score", "the log-probability (or reward) a model gives each line of a JSONL file", score_command},
      {"export", "convert a model directory to Hugging Face's format or nurture's", export_command},
      {"launch", "start the workers of a data-parallel job on this node (torchrun-style)", launch_command},
  };
  return list;
}

void print_usage(std::ostream& out) {
  out << "usage: nurture <command> [options]   (nurture <command> --help for its options)\n\n"
         "commands:\n";
  for (const auto& c : commands()) out << "  " << std::left << std::setw(11) << c.name << c.summary << "\n";
  out << "\nexit status: 0 success, 1 a stage or command failed, 2 bad command line, recipe or input,\n"
         "             3 stopped by SIGTERM/SIGINT after a checkpoint (run the same command to resume)\n";
}

}  // namespace

po::variables_map parse_args(const std::string& command, const std::vector<std::string>& args,
                             const po::options_description& options,
                             const po::positional_options_description& positional) {
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(options).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError("nurture " + command + ": " + e.what() + " (see nurture " + command + " --help)");
  }
  return vm;
}

void print_help(const std::string& usage, const std::string& summary,
                const po::options_description& options) {
  std::cout << "usage: nurture " << usage << "\n\n" << summary << "\n\n" << options;
}

int main(int argc, char** argv) {
  std::vector<std::string> words(argv + 1, argv + argc);
  try {
    if (words.empty() || words[0] == "--help" || words[0] == "-h" || words[0] == "help") {
      print_usage(words.empty() ? std::cerr : std::cout);
      return words.empty() ? kExitUsage : kExitOk;
    }
    if (words[0] == "--version") {
      std::cout << "nurture 0.1.0 (LibTorch " << compat::torch_version() << ")\n";
      return kExitOk;
    }
    for (const auto& c : commands()) {
      if (words[0] == c.name) return c.run({words.begin() + 1, words.end()});
    }
    std::vector<std::string> names;
    for (const auto& c : commands()) names.push_back(c.name);
    std::string hint = did_you_mean(words[0], names);
    throw UsageError("nurture: unknown command '" + words[0] + "'" +
                     (hint.empty() ? "" : "; " + hint) + " (commands: " + join_names(names) +
                     "; see nurture --help)");
  } catch (const UsageError& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return kExitUsage;
  } catch (const ConfigError& e) {
    for (const auto& m : e.messages()) std::cerr << "error: " << m << std::endl;
    if (e.messages().size() > 1) std::cerr << e.messages().size() << " errors; nothing was run" << std::endl;
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return kExitFailure;
  }
}

}  // namespace nurture::cli

// What tools/nurture.cpp calls once it has loaded this library.
extern "C" __attribute__((visibility("default"))) int nurture_cli_main(int argc, char** argv) {
  return nurture::cli::main(argc, argv);
}
