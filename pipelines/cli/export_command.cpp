// `nurture export`: converts a model directory between nurture's format and Hugging Face's, in
// the dtype and shard size asked for, with its tokenizer files. The output is written beside its
// final name and renamed into place, so an interrupted export leaves nothing under that name.
#include <iostream>
#include <system_error>

#include "modules/model/model_dir.h"
#include "modules/text/tokenizer.h"
#include "pipelines/cli/model.h"

namespace nurture::cli {

namespace {

namespace fs = std::filesystem;

constexpr const char* kExportUsage =
    "export --model DIR --output OUT [--format hf|nurture] [--dtype fp32|bf16|f16]\n"
    "              [--shard-size SIZE]";

constexpr const char* kExportSummary =
    "Writes the model in DIR (either format; a language or reward model) to the new directory\n"
    "OUT: --format hf gives a directory transformers' from_pretrained and vLLM load (config.json,\n"
    "safetensors, split into shards of at most --shard-size, e.g. 5GB or 500MB, with an index);\n"
    "--format nurture gives config.json + model.pt. The tokenizer files come along. --dtype\n"
    "converts the weights (default: as stored).";

// The tokenizer and generation files a model directory may hold beside its weights.
const std::vector<std::string> kTokenizerFiles = {kTokenizerFileName,       "tokenizer.json",
                                                  "tokenizer_config.json",  "special_tokens_map.json",
                                                  "added_tokens.json",      "vocab.json",
                                                  "merges.txt",             "chat_template.jinja"};

// "5GB" (10^9), "500MB", "2GiB" (2^30), "123456" -> bytes.
int64_t parse_size(const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    bad_value("export", "--shard-size", "must be a size such as 5GB, 500MB or 2GiB, got '" + text + "'");
  }
  const std::string unit = text.substr(used);
  const std::vector<std::pair<std::string, double>> units = {
      {"", 1},          {"B", 1},          {"KB", 1e3},       {"MB", 1e6},         {"GB", 1e9},
      {"KiB", 1 << 10}, {"MiB", 1 << 20},  {"GiB", 1 << 30},  {"TB", 1e12}};
  for (const auto& [name, scale] : units) {
    if (unit == name) {
      if (!(value * scale >= 1)) bad_value("export", "--shard-size", "must be at least 1 byte, got '" + text + "'");
      return static_cast<int64_t>(value * scale);
    }
  }
  bad_value("export", "--shard-size", "unknown unit '" + unit + "' in '" + text + "' (B, KB, MB, GB, KiB, MiB, GiB)");
}

// The special ids a Hugging Face config names: from the source's config.json when it is one,
// else from its tokenizer.
HfSaveOptions special_ids(const fs::path& dir) {
  HfSaveOptions ids;
  if (is_hf_model_dir(dir)) {
    const HfModelConfig config = read_hf_config(dir);
    ids.bos_token_id = config.bos_token_id;
    ids.eos_token_id = config.eos_token_id;
    ids.pad_token_id = config.pad_token_id;
  } else if (fs::is_regular_file(dir / kTokenizerFileName) || fs::is_regular_file(dir / kHfTokenizerFileName)) {
    const Tokenizer tokenizer = Tokenizer::load(dir.string());
    ids.eos_token_id = tokenizer.eot_id();
    ids.pad_token_id = tokenizer.pad_id();
  }
  return ids;
}

std::string megabytes(const fs::path& dir) {
  uintmax_t bytes = 0;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file()) bytes += entry.file_size();
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MB", static_cast<double>(bytes) / 1e6);
  return text;
}

// The module of `kind` in `dir` and its options, on the CPU in the stored dtype.
std::pair<std::shared_ptr<torch::nn::Module>, TransformerOptions> load_as_stored(const fs::path& dir,
                                                                                const std::string& kind) {
  try {
    if (kind == "lm") {
      Transformer model = load_transformer(dir, torch::kCPU);
      return {model.ptr(), model->options};
    }
    if (kind == "reward") {
      RewardModel model = load_reward_model(dir, torch::kCPU);
      return {model.ptr(), model->options};
    }
    ValueModel model = load_value_model(dir, torch::kCPU);
    return {model.ptr(), model->options};
  } catch (const std::runtime_error& e) {
    throw UsageError("nurture export: --model " + std::string(e.what()));
  }
}

}  // namespace

int export_command(const std::vector<std::string>& args) {
  po::options_description options("options");
  options.add_options()
      ("model", po::value<std::string>(), "the model directory to convert (required)")
      ("output", po::value<std::string>(), "the directory to write; must not exist yet (required)")
      ("format", po::value<std::string>()->default_value("hf"), "hf (Hugging Face) or nurture")
      ("dtype", po::value<std::string>()->default_value(""), "fp32, bf16 or f16 (default: as stored)")
      ("shard-size", po::value<std::string>()->default_value("5GB"), "hf: largest safetensors file")
      ("help,h", "this help");
  auto vm = parse_args("export", args, options);
  if (vm.count("help")) {
    print_help(kExportUsage, kExportSummary, options);
    return kExitOk;
  }

  // ---- Validate the flags before reading anything ----
  if (!vm.count("model")) throw UsageError("nurture export: which model? e.g. --model runs/quickstart/sft/model");
  if (!vm.count("output")) throw UsageError("nurture export: where to? e.g. --output exported/sft");
  const fs::path dir = vm["model"].as<std::string>(), out = vm["output"].as<std::string>();
  const std::string format_name = vm["format"].as<std::string>();
  if (format_name != "hf" && format_name != "nurture")
    bad_value("export", "--format", "must be hf or nurture, got '" + format_name + "'");
  const auto format = format_name == "hf" ? ModelFormat::kHuggingFace : ModelFormat::kNurture;
  const auto dtype = parse_dtype("export", vm["dtype"].as<std::string>());
  const int64_t shard_bytes = parse_size(vm["shard-size"].as<std::string>());
  if (fs::exists(out)) bad_value("export", "--output", out.string() + " exists; choose a new directory");
  if (!fs::is_directory(dir)) bad_value("export", "--model", dir.string() + ": no such directory");

  // ---- Load the model as what it is ----
  std::string kind;
  try {
    kind = read_model_kind(dir);
  } catch (const std::runtime_error& e) {
    throw UsageError("nurture export: --model " + std::string(e.what()));
  }
  if (kind == "value" && format == ModelFormat::kHuggingFace)
    bad_value("export", "--format", "hf: " + dir.string() + " is a value model, which has no Hugging Face class; use --format nurture");
  const std::string from = model_format_of(dir) == ModelFormat::kHuggingFace ? "hf" : "nurture";

  // The module and its options, loaded on the CPU in the stored dtype.
  auto [module, model_options] = load_as_stored(dir, kind);
  std::string why;
  if (format == ModelFormat::kHuggingFace && hf_model_type_of(model_options, &why).empty())
    bad_value("export", "--format", "hf: no Hugging Face architecture has this model's shape (" + why + "); use --format nurture");

  // ---- Write beside the output, then rename ----
  const fs::path tmp = out.string() + ".tmp";
  std::error_code ignored;
  fs::remove_all(tmp, ignored);
  try {
    HfSaveOptions hf = special_ids(dir);
    hf.dtype = dtype;
    hf.shard_bytes = shard_bytes;
    if (format == ModelFormat::kNurture && dtype) module->to(*dtype);
    save_model(tmp, *module, model_options, kind, format, hf);
    int copied = 0;
    for (const auto& name : kTokenizerFiles) {
      if (fs::is_regular_file(dir / name)) {
        fs::copy_file(dir / name, tmp / name);
        ++copied;
      }
    }
    fs::rename(tmp, out);
    const std::string to = format == ModelFormat::kHuggingFace ? "hf " + hf_model_type_of(model_options) : "nurture";
    std::cout << "[export] " << dir.string() << " (" << from << ", " << kind << ") -> " << out.string() << " (" << to
              << ", " << megabytes(out) << ", " << copied << " tokenizer file" << (copied == 1 ? "" : "s") << ")"
              << std::endl;
    if (copied == 0) std::cout << "[export] note: " << dir.string() << " has no tokenizer files to copy" << std::endl;
  } catch (const std::invalid_argument& e) {
    fs::remove_all(tmp, ignored);
    throw UsageError("nurture export: " + std::string(e.what()));
  } catch (...) {
    fs::remove_all(tmp, ignored);
    throw;
  }
  return kExitOk;
}

}  // namespace nurture::cli
