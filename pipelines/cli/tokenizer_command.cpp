// `nurture tokenizer train|encode|decode`: train a SentencePiece tokenizer, or run one by hand.
#include <filesystem>
#include <iostream>
#include <sstream>

#include "modules/text/tokenizer.h"
#include "pipelines/cli/args.h"
#include "pipelines/runner/registries.h"
#include "pipelines/runtime/log.h"

namespace nurture::cli {

namespace {

const std::vector<std::string> kActions = {"train", "encode", "decode"};

void print_overview(std::ostream& out) {
  out << "usage: nurture tokenizer <action> [options]   (nurture tokenizer <action> --help)\n\n"
         "actions:\n"
         "  train    train a SentencePiece tokenizer (BPE or unigram, byte fallback, ChatML tokens)\n"
         "  encode   print the token ids (or pieces) of texts, one line per text\n"
         "  decode   print the text of token ids\n";
}

// A model file that is missing or not a tokenizer is a bad input (exit status 2), not a failure.
Tokenizer load_model(const std::string& command, const po::variables_map& vm) {
  if (!vm.count("model"))
    throw UsageError("nurture tokenizer " + command + ": which tokenizer? e.g. --model "
                     "tokenizer.model (see nurture tokenizer " + command + " --help)");
  try {
    return Tokenizer::load(vm["model"].as<std::string>());
  } catch (const std::runtime_error& e) {
    throw UsageError(e.what());
  }
}

std::string join_ids(const std::vector<int64_t>& ids) {
  std::ostringstream out;
  for (size_t i = 0; i < ids.size(); ++i) out << (i ? " " : "") << ids[i];
  return out.str();
}

// ---- train -------------------------------------------------------------------------------------

int train(const std::vector<std::string>& args) {
  TokenizerTrainOptions defaults;
  po::options_description options("options");
  options.add_options()
      ("input", po::value<std::vector<std::string>>()->multitoken(),
       "text files, one sentence or document per line (required; several allowed)")
      ("output", po::value<std::string>(), "the .model file to write (required)")
      ("vocab-size", po::value<int64_t>()->default_value(defaults.vocab_size),
       "vocabulary size, including the 5 special and 256 byte pieces")
      ("model-type", po::value<std::string>()->default_value(defaults.model_type), "bpe or unigram")
      ("character-coverage", po::value<double>()->default_value(defaults.character_coverage, "0.9995"),
       "share of characters that get their own piece; 0.9995 for CJK/Korean, 1.0 for small "
       "alphabets")
      ("no-byte-fallback", "unknown characters become <unk> instead of UTF-8 byte pieces")
      ("no-split-digits", "let digits merge into multi-digit pieces")
      ("max-sentences", po::value<int64_t>()->default_value(defaults.max_sentences),
       "train on a random sample of this many lines (0 = all)")
      ("threads", po::value<int>()->default_value(defaults.num_threads), "training threads")
      ("seed", po::value<uint32_t>()->default_value(defaults.seed), "random seed (sampling)")
      ("verbose", "show SentencePiece's own training log")
      ("help,h", "this help");
  po::positional_options_description positional;
  positional.add("input", -1);
  auto vm = parse_args("tokenizer train", args, options, positional);
  if (vm.count("help")) {
    print_help("tokenizer train --input FILE... --output PATH.model [--vocab-size N] "
               "[--model-type bpe|unigram] [--character-coverage X] [--no-byte-fallback]",
               "Trains a tokenizer. Ids: 0 <|pad|>, 1 <unk>, 2 <|endoftext|>, 3 <|im_start|>, "
               "4 <|im_end|>,\nthen the 256 byte pieces and the learned pieces. Text is not "
               "normalised, so decoding gives back\nexactly the text encoded.",
               options);
    return kExitOk;
  }
  if (!vm.count("input"))
    throw UsageError("nurture tokenizer train: which text files? e.g. --input data/corpus.txt "
                     "(see nurture tokenizer train --help)");
  if (!vm.count("output"))
    throw UsageError("nurture tokenizer train: where to write the model? e.g. --output "
                     "tokenizer.model (see nurture tokenizer train --help)");

  TokenizerTrainOptions settings;
  settings.inputs = vm["input"].as<std::vector<std::string>>();
  settings.output = vm["output"].as<std::string>();
  settings.vocab_size = vm["vocab-size"].as<int64_t>();
  settings.model_type = vm["model-type"].as<std::string>();
  settings.character_coverage = vm["character-coverage"].as<double>();
  settings.byte_fallback = vm.count("no-byte-fallback") == 0;
  settings.split_digits = vm.count("no-split-digits") == 0;
  settings.max_sentences = vm["max-sentences"].as<int64_t>();
  settings.num_threads = vm["threads"].as<int>();
  settings.seed = vm["seed"].as<uint32_t>();
  settings.verbose = vm.count("verbose") > 0;
  for (const auto& input : settings.inputs) {
    if (!std::filesystem::is_regular_file(input))
      throw UsageError("nurture tokenizer train: input " + input + " does not exist or is not a "
                       "file (--input takes text files, one sentence or document per line)");
  }
  if (settings.model_type != "bpe" && settings.model_type != "unigram")
    throw UsageError("nurture tokenizer train: --model-type must be bpe or unigram, got '" +
                     settings.model_type + "'");

  std::ostringstream summary;
  summary << "training " << settings.model_type << " vocab " << settings.vocab_size << " on "
          << settings.inputs.size() << " file(s), character coverage " << settings.character_coverage
          << ", byte fallback " << (settings.byte_fallback ? "on" : "off");
  log_line("tokenizer", summary.str());
  const auto tokenizer = Tokenizer::train(settings);
  log_line("tokenizer", "wrote " + settings.output + " (vocab " +
                            std::to_string(tokenizer.vocab_size()) + "; pad " +
                            std::to_string(tokenizer.pad_id()) + ", <|endoftext|> " +
                            std::to_string(tokenizer.eot_id()) + ", <|im_start|> " +
                            std::to_string(tokenizer.im_start_id()) + ", <|im_end|> " +
                            std::to_string(tokenizer.im_end_id()) + ")");
  return kExitOk;
}

// ---- encode / decode ---------------------------------------------------------------------------

int encode(const std::vector<std::string>& args) {
  po::options_description options("options");
  options.add_options()
      ("model", po::value<std::string>(), "the tokenizer .model file, or a model directory (required)")
      ("special", "turn the text of special tokens (<|im_start|>, ...) into their ids")
      ("pieces", "print the pieces instead of the ids")
      ("text", po::value<std::vector<std::string>>(), "texts to encode (default: each line of stdin)")
      ("help,h", "this help");
  po::positional_options_description positional;
  positional.add("text", -1);
  auto vm = parse_args("tokenizer encode", args, options, positional);
  if (vm.count("help")) {
    print_help("tokenizer encode --model PATH [--special] [--pieces] TEXT...",
               "Prints the ids of each TEXT (or of each line of stdin), space-separated, one line "
               "per text.",
               options);
    return kExitOk;
  }
  const auto tokenizer = load_model("encode", vm);
  const bool special = vm.count("special") > 0, show_pieces = vm.count("pieces") > 0;
  auto print = [&](const std::string& text) {
    const auto ids = tokenizer.encode(text, special);
    if (!show_pieces) {
      std::cout << join_ids(ids) << "\n";
      return;
    }
    const auto pieces = tokenizer.pieces(ids);
    for (size_t i = 0; i < pieces.size(); ++i) std::cout << (i ? " " : "") << pieces[i];
    std::cout << "\n";
  };
  if (vm.count("text")) {
    for (const auto& text : vm["text"].as<std::vector<std::string>>()) print(text);
  } else {
    for (std::string line; std::getline(std::cin, line);) print(line);
  }
  return kExitOk;
}

int decode(const std::vector<std::string>& args) {
  po::options_description options("options");
  options.add_options()
      ("model", po::value<std::string>(), "the tokenizer .model file, or a model directory (required)")
      ("id", po::value<std::vector<int64_t>>(), "token ids (default: one sequence per line of stdin)")
      ("help,h", "this help");
  po::positional_options_description positional;
  positional.add("id", -1);
  auto vm = parse_args("tokenizer decode", args, options, positional);
  if (vm.count("help")) {
    print_help("tokenizer decode --model PATH ID...",
               "Prints the text of the ids (or of each line of ids on stdin). Special tokens "
               "appear as their text,\nthe padding token as nothing.",
               options);
    return kExitOk;
  }
  const auto tokenizer = load_model("decode", vm);
  auto print = [&](const std::vector<int64_t>& ids) {
    try {
      std::cout << tokenizer.decode(ids) << "\n";
    } catch (const std::out_of_range& e) {
      throw UsageError(std::string("nurture tokenizer decode: ") + e.what());
    }
  };
  if (vm.count("id")) {
    print(vm["id"].as<std::vector<int64_t>>());
    return kExitOk;
  }
  for (std::string line; std::getline(std::cin, line);) {
    std::istringstream words(line);
    std::vector<int64_t> ids;
    std::string word;
    while (words >> word) {
      try {
        size_t used = 0;
        ids.push_back(std::stoll(word, &used));
        if (used != word.size()) throw std::invalid_argument(word);
      } catch (const std::exception&) {
        throw UsageError("nurture tokenizer decode: '" + word + "' on stdin is not a token id");
      }
    }
    print(ids);
  }
  return kExitOk;
}

}  // namespace

int tokenizer_command(const std::vector<std::string>& args) {
  if (args.empty())
    throw UsageError("nurture tokenizer: which action? train, encode or decode "
                     "(see nurture tokenizer --help)");
  const std::string& action = args[0];
  if (action == "--help" || action == "-h" || action == "help") {
    print_overview(std::cout);
    return kExitOk;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (action == "train") return train(rest);
  if (action == "encode") return encode(rest);
  if (action == "decode") return decode(rest);
  const std::string hint = did_you_mean(action, kActions);
  throw UsageError("nurture tokenizer: unknown action '" + action + "'" +
                   (hint.empty() ? "" : "; " + hint) + " (actions: " + join_names(kActions) +
                   "; see nurture tokenizer --help)");
}

}  // namespace nurture::cli
