// `nurture generate`: sample a completion of one prompt from a model directory (nurture's or
// Hugging Face's), plainly or as a turn of its chat template, and print it on stdout.
#include <iostream>

#include "modules/core/compat.h"
#include "modules/text/chat_template.h"
#include "pipelines/cli/model.h"

namespace nurture::cli {

namespace {

constexpr const char* kGenerateUsage =
    "generate --model DIR --prompt TEXT [--chat [--system TEXT] [--chat-template NAME]]\n"
    "                [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
    "                [--device cpu|cuda]";

constexpr const char* kGenerateSummary =
    "Prints a completion of TEXT sampled from the model in DIR (nurture's format or a Hugging\n"
    "Face directory). Plain prompts stop at the end-of-text token; with --chat the prompt is the\n"
    "user's turn of a conversation in the model's chat template (--chat-template to name one),\n"
    "the model writes the assistant's reply and stops at the turn's end. --temperature 0 is\n"
    "greedy; the same --seed gives the same completion.";

}  // namespace

int generate_command(const std::vector<std::string>& args) {
  const SamplingOptions defaults = SamplingOptions().max_new_tokens(256);
  po::options_description options("options");
  options.add_options()
      ("model", po::value<std::string>(), "model directory (required)")
      ("prompt", po::value<std::string>(), "the text to continue, or with --chat the user's message (required)")
      ("chat", "render the prompt as a user turn of the model's chat template and generate the reply")
      ("system", po::value<std::string>(), "with --chat: a system message before the user's");
  add_chat_template_option(options);
  add_sampling_options(options, defaults);
  options.add_options()
      ("seed", po::value<uint64_t>()->default_value(0), "random seed")
      ("device", po::value<std::string>()->default_value("cpu"), "cpu or cuda")
      ("help,h", "this help");
  po::positional_options_description positional;
  positional.add("prompt", 1);
  auto vm = parse_args("generate", args, options, positional);
  if (vm.count("help")) {
    print_help(kGenerateUsage, kGenerateSummary, options);
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
  if (vm.count("system") && !chat) bad_value("generate", "--system", "needs --chat");
  const auto sampling = sampling_options("generate", vm);
  const torch::Device device = parse_device("generate", vm["device"].as<std::string>());

  // ---- Model, prompt ids, stop ids ----
  auto loaded = load_model_dir("generate", vm["model"].as<std::string>(), device);
  const Tokenizer& tokenizer = loaded.tokenizer;
  const std::string& text = vm["prompt"].as<std::string>();
  std::vector<int64_t> prompt;
  std::vector<int64_t> stop_ids;
  if (chat) {
    const auto chat_template = chat_template_option("generate", vm, tokenizer);
    std::vector<Message> messages;
    if (vm.count("system")) messages.push_back({"system", vm["system"].as<std::string>()});
    messages.push_back({"user", text});
    prompt = chat_template->render(tokenizer, messages, /*add_generation_prompt=*/true).ids;
    stop_ids = chat_template->stop_ids(tokenizer);
  } else {
    prompt = tokenizer.prefix_ids();
    const auto ids = tokenizer.encode(text);
    prompt.insert(prompt.end(), ids.begin(), ids.end());
    if (tokenizer.eot_id() >= 0) stop_ids.push_back(tokenizer.eot_id());
  }
  if (prompt.empty()) bad_value("generate", "--prompt", "is empty: give the model some text to continue");
  const int64_t block_size = loaded.model->options.block_size();
  if (static_cast<int64_t>(prompt.size()) >= block_size)
    bad_value("generate", "--prompt",
              "is " + std::to_string(prompt.size()) + " tokens long, which leaves no room to "
              "generate within the model's block_size of " + std::to_string(block_size) +
                  " tokens; shorten it");

  // ---- Generate and print the completion (without the stop token) ----
  auto generator = compat::make_generator(vm["seed"].as<uint64_t>(), device);
  const auto ids = sample_reply(loaded, prompt, sampling, stop_ids, generator);
  std::cout << tokenizer.decode(ids) << std::endl;
  return kExitOk;
}

}  // namespace nurture::cli
