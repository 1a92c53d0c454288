// `nurture chat`: a conversation with a model directory in the ChatML template, one user turn per
// line of stdin. On a terminal it prompts `you> ` and prefixes replies with `assistant> `;
// otherwise each reply is one plain line on stdout, so a script can drive it. The conversation
// is kept between turns (its oldest turns forgotten when it outgrows the model's block_size);
// /reset forgets it, /exit or the end of input quits.
#include <unistd.h>

#include <deque>
#include <iostream>

#include "modules/chat_template.h"
#include "modules/compat.h"
#include "pipelines/cli_model.h"
#include "pipelines/log.h"

namespace nurture::cli {

namespace {

constexpr const char* kChatUsage =
    "chat --model DIR [--system TEXT] [--max-new-tokens N] [--temperature T] [--top-k K]\n"
    "            [--top-p P] [--seed S] [--device cpu|cuda]";

constexpr const char* kChatSummary =
    "Chats with the model in DIR (config.json, model.pt, tokenizer.model; any stage's model)\n"
    "in the ChatML template. Each line of stdin is the user's next message; the reply is printed\n"
    "on stdout (after `assistant> ` on a terminal, as a plain line otherwise, for scripts). The\n"
    "conversation is kept; when it and a reply of --max-new-tokens no longer fit the model's\n"
    "block_size, its oldest turns are forgotten (never the system message). Without\n"
    "--max-new-tokens a reply takes at most 128 tokens or a quarter of the block_size.\n\n"
    "commands:  /reset  forget the conversation     /exit  quit (so does the end of input)\n"
    "           a line starting with // is sent as a message starting with /";

// ---- The conversation ------------------------------------------------------------------------

// The system message (kept through /reset and truncation) and the turns so far, oldest first:
// user, assistant, user, ... ending with the user's message while a reply is being prepared.
class Conversation {
 public:
  Conversation(const Tokenizer& tokenizer, std::vector<Message> system)
      : tokenizer_(tokenizer), system_(std::move(system)) {}

  // The prompt that asks for the reply to the turns so far.
  std::vector<int64_t> prompt() const {
    std::vector<Message> messages(system_);
    messages.insert(messages.end(), turns_.begin(), turns_.end());
    return template_.render(tokenizer_, messages, /*add_generation_prompt=*/true).ids;
  }

  // Adds the user's message and returns the prompt for the reply, first forgetting the oldest
  // (user, assistant) pairs while the prompt plus `room` tokens exceed `block_size`. Sets
  // *forgot when a turn was forgotten. The prompt may still be too long when the system message
  // and this message alone are; the caller checks.
  std::vector<int64_t> ask(const std::string& text, int64_t block_size, int64_t room, bool* forgot) {
    turns_.push_back({"user", text});
    auto ids = prompt();
    while (static_cast<int64_t>(ids.size()) + room > block_size && turns_.size() > 1) {
      turns_.pop_front();
      turns_.pop_front();
      *forgot = true;
      ids = prompt();
    }
    return ids;
  }

  void answer(const std::string& reply) { turns_.push_back({"assistant", reply}); }
  void withdraw() { turns_.pop_back(); }  // the user's last message, which got no reply
  void reset() { turns_.clear(); }
  bool has_system() const { return !system_.empty(); }

  std::vector<int64_t> stop_ids() const { return template_.stop_ids(tokenizer_); }

 private:
  const Tokenizer& tokenizer_;
  ChatMLTemplate template_;
  std::vector<Message> system_;
  std::deque<Message> turns_;
};

std::string trimmed(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t") - begin + 1);
}

}  // namespace

int chat_command(const std::vector<std::string>& args) {
  const SamplingOptions defaults = SamplingOptions().max_new_tokens(128).temperature(0.7);
  po::options_description options("options");
  options.add_options()
      ("model", po::value<std::string>(), "model directory (required)")
      ("system", po::value<std::string>(), "a system message at the start of the conversation");
  add_sampling_options(options, defaults);
  options.add_options()
      ("seed", po::value<uint64_t>()->default_value(0), "random seed (for the whole conversation)")
      ("device", po::value<std::string>()->default_value("cpu"), "cpu or cuda")
      ("help,h", "this help");
  auto vm = parse_args("chat", args, options);
  if (vm.count("help")) {
    print_help(kChatUsage, kChatSummary, options);
    return kExitOk;
  }

  // ---- Validate the flags, load the model ----
  if (!vm.count("model"))
    throw UsageError("nurture chat: which model? e.g. --model runs/quickstart/sft/model "
                     "(see nurture chat --help)");
  auto sampling = sampling_options("chat", vm);
  const torch::Device device = parse_device("chat", vm["device"].as<std::string>());
  const std::string dir = vm["model"].as<std::string>();
  auto loaded = load_model_dir("chat", dir, device);
  const Tokenizer& tokenizer = loaded.tokenizer;
  if (!tokenizer.has_chat_tokens())
    bad_value("chat", "--model", tokenizer.source() + " has no <|im_start|> and <|im_end|> tokens, "
                                 "which a chat needs; use nurture generate for plain text");
  const int64_t block_size = loaded.model->options.block_size();
  // Unless asked otherwise, a reply takes at most a quarter of a small model's block, so that the
  // conversation keeps its last turns instead of forgetting them all for room it rarely uses.
  if (vm["max-new-tokens"].defaulted())
    sampling.max_new_tokens(std::min<int64_t>(sampling.max_new_tokens(), std::max<int64_t>(1, block_size / 4)));
  std::vector<Message> system;
  if (vm.count("system")) system.push_back({"system", vm["system"].as<std::string>()});
  Conversation conversation(tokenizer, system);
  if (const auto length = static_cast<int64_t>(conversation.prompt().size()); length >= block_size - 1)
    bad_value("chat", "--system",
              "takes " + std::to_string(length) + " tokens, which leaves no room for a message "
              "and a reply within the model's block_size of " + std::to_string(block_size) +
                  " tokens; shorten it");
  const auto stop_ids = conversation.stop_ids();
  auto generator = compat::make_generator(vm["seed"].as<uint64_t>(), device);

  // ---- The conversation loop: one user message per line ----
  const bool terminal = ::isatty(STDIN_FILENO) == 1;
  if (terminal)
    log_line("chat", dir + " (block_size " + std::to_string(block_size) + ", replies of up to " +
                         std::to_string(sampling.max_new_tokens()) +
                         " tokens); /reset forgets the conversation, /exit quits");
  bool told_forgetting = false;
  int64_t line_number = 0;
  for (std::string line;;) {
    if (terminal) std::cout << "you> " << std::flush;
    if (!std::getline(std::cin, line)) {
      if (terminal) std::cout << std::endl;
      break;
    }
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string command = trimmed(line);
    if (command.empty()) continue;
    if (command == "/exit") break;
    if (command == "/reset") {
      conversation.reset();
      if (terminal) log_line("chat", "conversation forgotten");
      continue;
    }
    if (command[0] == '/' && command.rfind("//", 0) != 0) {
      warn_line("chat", "stdin:" + std::to_string(line_number) + ": unknown command '" +
                            command.substr(0, command.find_first_of(" \t")) +
                            "' (commands: /reset, /exit; start a message with // to send a /)");
      continue;
    }
    const std::string message = command.rfind("//", 0) == 0 ? line.substr(line.find('/') + 1) : line;

    bool forgot = false;
    const auto prompt = conversation.ask(message, block_size, sampling.max_new_tokens(), &forgot);
    if (forgot && !told_forgetting) {
      warn_line("chat", "the conversation and a reply of up to " +
                            std::to_string(sampling.max_new_tokens()) +
                            " tokens no longer fit the model's block_size of " +
                            std::to_string(block_size) + " tokens: forgetting its oldest turns" +
                            (conversation.has_system() ? ", keeping the system message" : "") +
                            "; this note is not repeated");
      told_forgetting = true;
    }
    if (static_cast<int64_t>(prompt.size()) >= block_size) {
      conversation.withdraw();
      const std::string what = "stdin:" + std::to_string(line_number) + ": this message makes a " +
                               std::to_string(prompt.size()) + "-token prompt" +
                               (conversation.has_system() ? " with the system message" : "") +
                               ", which leaves no room for a reply within the model's block_size of " +
                               std::to_string(block_size) + " tokens; shorten it";
      if (!terminal) throw UsageError("nurture chat: " + what);
      warn_line("chat", what);
      continue;
    }
    const std::string reply = tokenizer.decode(sample_reply(loaded, prompt, sampling, stop_ids, generator));
    conversation.answer(reply);
    std::cout << (terminal ? "assistant> " : "") << reply << std::endl;
  }
  return kExitOk;
}

}  // namespace nurture::cli
