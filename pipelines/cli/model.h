// What the commands that run a model directory share (`nurture generate`, `nurture chat`): the
// --device and sampling flags and their checks, loading the directory (a missing or incomplete
// one is bad input, exit status 2) and sampling one reply. `command` ("generate", "chat") names
// the subcommand in every message.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "modules/generation/sampling.h"
#include "modules/model/transformer.h"
#include "modules/text/chat_template.h"
#include "modules/text/tokenizer.h"
#include "pipelines/cli/args.h"

namespace nurture::cli {

// "nurture <command>: <flag> <what> (see nurture <command> --help)" as a UsageError.
[[noreturn]] void bad_value(const std::string& command, const std::string& flag, const std::string& what);

// "cpu", or "cuda" when this LibTorch sees a CUDA device; anything else names --device.
torch::Device parse_device(const std::string& command, const std::string& name);

// --dtype: "" (none: as stored), fp32, bf16 or f16 (and their long names); anything else names
// the flag.
c10::optional<torch::ScalarType> parse_dtype(const std::string& command, const std::string& name);

// A model directory: config.json, model.pt and tokenizer.model.
struct LoadedModel {
  Transformer model{nullptr};
  Tokenizer tokenizer;
};

// Loads `dir` on `device`. A directory that is missing, lacks one of its files or holds a file
// that does not load is a UsageError naming --model and the path.
LoadedModel load_model_dir(const std::string& command, const std::filesystem::path& dir,
                           const torch::Device& device, c10::optional<torch::ScalarType> dtype = c10::nullopt);

// Adds --chat-template (default auto: the model's own template, recognised).
void add_chat_template_option(po::options_description& options);

// The chat template --chat-template names for `tokenizer`; one that is unknown, unrecognised or
// wrong for the tokenizer is a UsageError naming the flag.
std::shared_ptr<const ChatTemplate> chat_template_option(const std::string& command, const po::variables_map& vm,
                                                         const Tokenizer& tokenizer);

// Adds --max-new-tokens, --temperature, --top-k and --top-p with these defaults.
void add_sampling_options(po::options_description& options, const SamplingOptions& defaults);

// The sampling flags of `vm`, checked: a value out of range is a UsageError naming its flag.
SamplingOptions sampling_options(const std::string& command, const po::variables_map& vm);

// Samples a continuation of `prompt` (shorter than the model's block_size) until one of
// `stop_ids` or sampling.max_new_tokens() (fewer when block_size is reached). Returns the
// generated ids without the stop token. Successive calls with the same generator continue its
// random stream.
std::vector<int64_t> sample_reply(LoadedModel& loaded, const std::vector<int64_t>& prompt,
                                  const SamplingOptions& sampling, const std::vector<int64_t>& stop_ids,
                                  at::Generator& generator);

}  // namespace nurture::cli
