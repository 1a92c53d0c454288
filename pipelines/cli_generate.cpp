// `nurture generate`: sample a completion of one prompt from a model directory (config.json,
// model.pt, tokenizer.model), plainly or as a ChatML conversation, and print it on stdout.
#include <filesystem>
#include <iostream>
#include <sstream>

#include "modules/chat_template.h"
#include "modules/compat.h"
#include "modules/model_dir.h"
#include "modules/sampling.h"
#include "modules/tokenizer.h"
#include "pipelines/cli_args.h"

namespace nurture::cli {

namespace {

constexpr const char* kUsage =
    "generate --model DIR --prompt TEXT [--chat [--system TEXT]] [--max-new-tokens N]\n"
    "                [--temperature T] [--top-k K] [--top-p P] [--seed S] [--device cpu|cuda]";

constexpr const char* kSummary =
    "Prints a completion of TEXT sampled from the model in DIR (config.json, model.pt,\n"
    "tokenizer.model). Plain prompts stop at <|endoftext|>; with --chat the prompt is the user's\n"
    "turn of a ChatML conversation, the model writes the assistant's reply and stops at\n"
    "<|im_end|>. --temperature 0 is greedy; the same --seed gives the same completion.";

// The words of the usage error for one bad value.
[[noreturn]] void bad_value(const std::string& flag, const std::string& what) {
  throw UsageError("nurture generate: " + flag + " " + what + " (see nurture generate --help)");
}

std::string str(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name != "cuda") bad_value("--device", "must be cpu or cuda, got '" + name + "'");
  if (!torch::cuda::is_available())
    bad_value("--device", "cuda: no CUDA device is available to this LibTorch; use --device cpu");
  return torch::kCUDA;
}

// The model and its tokenizer; a directory that is missing or incomplete is bad input (status 2).
struct LoadedModel {
  Transformer model{nullptr};
  Tokenizer tokenizer;
};

LoadedModel load(const std::filesystem::path& dir, const torch::Device& device) {
  if (!std::filesystem::is_directory(dir))
    bad_value("--model", dir.string() + ": no such directory (a model directory holds "
                                        "config.json, model.pt and tokenizer.model)");
  for (const char* file : {"config.json", "model.pt", kTokenizerFileName}) {
    if (!std::filesystem::is_regular_file(dir / file))
      bad_value("--model", (dir / file).string() + " is missing; is " + dir.string() +
                               " a model directory written by nurture?");
  }
  try {
    return {load_transformer(dir, device), Tokenizer::load(dir.string())};
  } catch (const std::runtime_error& e) {
    throw UsageError("nurture generate: " + std::string(e.what()));
  }
}

}  // namespace

int generate_command(const std::vector<std::string>& args) {
  const SamplingOptions defaults = SamplingOptions().max_new_tokens(256);
  po::options_description options("options");
  options.add_options()
      ("model", po::value<std::string>(), "model directory (required)")
      ("prompt", po::value<std::string>(), "the text to continue, or with --chat the user's message (required)")
      ("chat", "render the prompt as a ChatML user turn and generate the assistant's reply")
      ("system", po::value<std::string>(), "with --chat: a system message before the user's")
      ("max-new-tokens", po::value<int64_t>()->default_value(defaults.max_new_tokens()),
       "most tokens to generate (fewer if the model's block_size is reached)")
      ("temperature", po::value<double>()->default_value(defaults.temperature(), "1.0"),
       "softmax temperature; 0 = greedy")
      ("top-k", po::value<int64_t>()->default_value(defaults.top_k()), "sample from the K most likely tokens (0 = all)")
      ("top-p", po::value<double>()->default_value(defaults.top_p(), "1.0"),
       "sample from the smallest set of tokens with probability >= P (1 = all)")
      ("seed", po::value<uint64_t>()->default_value(0), "random seed")
      ("device", po::value<std::string>()->default_value("cpu"), "cpu or cuda")
      ("help,h", "this help");
  po::positional_options_description positional;
  positional.add("prompt", 1);
  auto vm = parse_args("generate", args, options, positional);
  if (vm.count("help")) {
    print_help(kUsage, kSummary, options);
    return kExitOk;
  }

  // ---- Validate the flags before loading anything ----
  if (!vm.count("model"))
    throw UsageError("nurture generate: which model? e.g. --model runs/quickstart/sft/model "
                     "(see nurture generate --help)");
  if (!vm.count("prompt"))
    throw UsageError("nurture generate: what prompt? e.g. --prompt \"Once upon a time\" "
                     "(see nurture generate --help)");
  const bool chat = vm.count("chat") > 0;
  if (vm.count("system") && !chat) bad_value("--system", "needs --chat");
  const auto sampling = SamplingOptions()
                            .max_new_tokens(vm["max-new-tokens"].as<int64_t>())
                            .temperature(vm["temperature"].as<double>())
                            .top_k(vm["top-k"].as<int64_t>())
                            .top_p(vm["top-p"].as<double>());
  if (sampling.max_new_tokens() < 1)
    bad_value("--max-new-tokens", "must be at least 1, got " + std::to_string(sampling.max_new_tokens()));
  if (sampling.temperature() < 0)
    bad_value("--temperature", "must be >= 0 (0 = greedy), got " + str(sampling.temperature()));
  if (sampling.top_k() < 0)
    bad_value("--top-k", "must be >= 0 (0 = off), got " + std::to_string(sampling.top_k()));
  if (!(sampling.top_p() > 0 && sampling.top_p() <= 1))
    bad_value("--top-p", "must be in (0, 1] (1 = off), got " + str(sampling.top_p()));
  const torch::Device device = parse_device(vm["device"].as<std::string>());

  // ---- Model, prompt ids, stop ids ----
  auto loaded = load(vm["model"].as<std::string>(), device);
  const Tokenizer& tokenizer = loaded.tokenizer;
  const std::string& text = vm["prompt"].as<std::string>();
  std::vector<int64_t> prompt;
  std::vector<int64_t> stop_ids;
  if (chat) {
    if (!tokenizer.has_chat_tokens())
      bad_value("--chat", "needs a tokenizer with <|im_start|> and <|im_end|>; " +
                              tokenizer.source() + " lacks them (drop --chat)");
    std::vector<Message> messages;
    if (vm.count("system")) messages.push_back({"system", vm["system"].as<std::string>()});
    messages.push_back({"user", text});
    const ChatMLTemplate chat_template;
    prompt = chat_template.render(tokenizer, messages, /*add_generation_prompt=*/true).ids;
    stop_ids = chat_template.stop_ids(tokenizer);
  } else {
    prompt = tokenizer.encode(text);
    if (tokenizer.eot_id() >= 0) stop_ids.push_back(tokenizer.eot_id());
  }
  if (prompt.empty()) bad_value("--prompt", "is empty: give the model some text to continue");
  const int64_t block_size = loaded.model->options.block_size();
  if (static_cast<int64_t>(prompt.size()) >= block_size)
    bad_value("--prompt", "is " + std::to_string(prompt.size()) + " tokens long, which leaves no "
                          "room to generate within the model's block_size of " +
                          std::to_string(block_size) + " tokens; shorten it");
  const int64_t pad = tokenizer.pad_id();
  auto settings = SamplingOptions(sampling).stop_ids(stop_ids).pad_id(
      pad >= 0 && pad < loaded.model->options.vocab_size() ? pad : 0);

  // ---- Generate and print the completion (without the stop token) ----
  auto out = generate(loaded.model, {prompt}, settings,
                      compat::make_generator(vm["seed"].as<uint64_t>(), device));
  const auto length = out.response_mask.sum().item<int64_t>();
  const bool stopped = out.stopped[0].item<bool>();
  auto response =
      out.response[0].narrow(0, 0, stopped ? length - 1 : length).to(torch::kCPU).contiguous();
  std::vector<int64_t> ids(response.data_ptr<int64_t>(),
                           response.data_ptr<int64_t>() + response.numel());
  std::cout << tokenizer.decode(ids) << std::endl;
  return kExitOk;
}

}  // namespace nurture::cli
