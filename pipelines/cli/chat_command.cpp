// `nurture chat`: a conversation with a model directory in its chat template (--chat-template, default the model's own), one user turn per
// line of stdin. On a terminal it prompts `you> ` and prefixes replies with `assistant> `;
// otherwise each reply is one plain line on stdout, so a script can drive it. The conversation
// is kept between turns (its oldest turns forgotten when it outgrows the model's block_size);
// /reset forgets it, /exit or the end of input quits.
#include <unistd.h>

#include <deque>
#include <iostream>

#include "modules/core/compat.h"
#include "modules/text/chat_template.h"
#include "pipelines/cli/model.h"
#include "pipelines/runtime/log.h"

namespace nurture::cli {

namespace {

constexpr const char* kChatUsage =
    "chat --model DIR [--system TEXT] [--chat-template NAME] [--max-new-tokens N]\n"
    "            [--temperature T] [--top-k K] [--top-p P] [--seed S] [--device cpu|cuda]";

constexpr const char* kChatSummary =
    "Chats with the model in DIR (any stage's model, or a Hugging Face directory) in its chat\n"
    "template. Each line of stdin is the user's next message; the reply is printed\n"
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
  Conversation(const Tokenizer& tokenizer, std::shared_ptr<const ChatTemplate> chat_template,
               std::vector<Message> system)
      : tokenizer_(tokenizer), template_(std::move(chat_template)), system_(std::move(system)) {}

  // The prompt that asks for the reply to the turns so far.
  std::vector<int64_t> prompt() const {
    std::vector<Message> messages(system_);
    messages.insert(messages.end(), turns_.begin(), turns_.end());
    return template_->render(tokenizer_, messages, /*add_generation_prompt=*/true).ids;
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

  std::vector<int64_t> stop_ids() const { return template_->stop_ids(tokenizer_); }

 private:
  const Tokenizer& tokenizer_;
  std::shared_ptr<const ChatTemplate> template_;
  std::vector<Message> system_;
  std::deque<Message> turns_;
};

std::string trimmed(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t") - begin + 1);
}

// ---- The session ---------------------------------------------------------------------------

// The model, the conversation with it, and how its replies are sampled; one user line at a time.
class ChatSession {
 public:
  ChatSession(const po::variables_map& vm, LoadedModel loaded, SamplingOptions sampling,
              const torch::Device& device)
      : loaded_(std::move(loaded)),
        tokenizer_(loaded_.tokenizer),
        sampling_(std::move(sampling)),
        block_size_(loaded_.model->options.block_size()),
        conversation_(tokenizer_, chat_template_option("chat", vm, tokenizer_), system_message(vm)),
        generator_(compat::make_generator(vm["seed"].as<uint64_t>(), device)),
        terminal_(::isatty(STDIN_FILENO) == 1) {
    // Unless asked otherwise, a reply takes at most a quarter of a small model's block, so that the
    // conversation keeps its last turns instead of forgetting them all for room it rarely uses.
    if (vm["max-new-tokens"].defaulted())
      sampling_.max_new_tokens(std::min<int64_t>(sampling_.max_new_tokens(), std::max<int64_t>(1, block_size_ / 4)));
    if (const auto length = static_cast<int64_t>(conversation_.prompt().size()); length >= block_size_ - 1)
      bad_value("chat", "--system",
                "takes " + std::to_string(length) + " tokens, which leaves no room for a message "
                "and a reply within the model's block_size of " + std::to_string(block_size_) +
                    " tokens; shorten it");
    stop_ids_ = conversation_.stop_ids();
  }

  // The conversation loop: one user message per line, until /exit or the end of input.
  void run(const std::string& dir) {
    if (terminal_)
      log_line("chat", dir + " (block_size " + std::to_string(block_size_) + ", replies of up to " +
                           std::to_string(sampling_.max_new_tokens()) +
                           " tokens); /reset forgets the conversation, /exit quits");
    for (std::string line;;) {
      if (terminal_) std::cout << "you> " << std::flush;
      if (!std::getline(std::cin, line)) {
        if (terminal_) std::cout << std::endl;
        return;
      }
      ++line_number_;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!handle(line)) return;
    }
  }

 private:
  static std::vector<Message> system_message(const po::variables_map& vm) {
    std::vector<Message> system;
    if (vm.count("system")) system.push_back({"system", vm["system"].as<std::string>()});
    return system;
  }

  std::string where() const { return "stdin:" + std::to_string(line_number_); }

  // A command or a message; false at /exit.
  bool handle(const std::string& line) {
    const std::string command = trimmed(line);
    if (command.empty()) return true;
    if (command == "/exit") return false;
    if (command == "/reset") {
      conversation_.reset();
      if (terminal_) log_line("chat", "conversation forgotten");
      return true;
    }
    if (command[0] == '/' && command.rfind("//", 0) != 0) {
      warn_line("chat", where() + ": unknown command '" + command.substr(0, command.find_first_of(" \t")) +
                            "' (commands: /reset, /exit; start a message with // to send a /)");
      return true;
    }
    reply_to(command.rfind("//", 0) == 0 ? line.substr(line.find('/') + 1) : line);
    return true;
  }

  // Asks the model, printing its reply; a message that leaves no room for one is refused (on a
  // terminal the user may shorten it; a script's input is an error).
  void reply_to(const std::string& message) {
    bool forgot = false;
    const auto prompt = conversation_.ask(message, block_size_, sampling_.max_new_tokens(), &forgot);
    if (forgot && !told_forgetting_) {
      warn_line("chat", "the conversation and a reply of up to " +
                            std::to_string(sampling_.max_new_tokens()) +
                            " tokens no longer fit the model's block_size of " +
                            std::to_string(block_size_) + " tokens: forgetting its oldest turns" +
                            (conversation_.has_system() ? ", keeping the system message" : "") +
                            "; this note is not repeated");
      told_forgetting_ = true;
    }
    if (static_cast<int64_t>(prompt.size()) >= block_size_) {
      conversation_.withdraw();
      const std::string what = where() + ": this message makes a " + std::to_string(prompt.size()) +
                               "-token prompt" + (conversation_.has_system() ? " with the system message" : "") +
                               ", which leaves no room for a reply within the model's block_size of " +
                               std::to_string(block_size_) + " tokens; shorten it";
      if (!terminal_) throw UsageError("nurture chat: " + what);
      warn_line("chat", what);
      return;
    }
    const std::string reply = tokenizer_.decode(sample_reply(loaded_, prompt, sampling_, stop_ids_, generator_));
    conversation_.answer(reply);
    std::cout << (terminal_ ? "assistant> " : "") << reply << std::endl;
  }

  LoadedModel loaded_;
  const Tokenizer& tokenizer_;
  SamplingOptions sampling_;
  const int64_t block_size_;
  Conversation conversation_;
  std::vector<int64_t> stop_ids_;
  at::Generator generator_;
  const bool terminal_;
  bool told_forgetting_ = false;
  int64_t line_number_ = 0;
};

po::options_description chat_options() {
  const SamplingOptions defaults = SamplingOptions().max_new_tokens(128).temperature(0.7);
  po::options_description options("options");
  options.add_options()
      ("model", po::value<std::string>(), "model directory (required)")
      ("system", po::value<std::string>(), "a system message at the start of the conversation");
  add_chat_template_option(options);
  add_sampling_options(options, defaults);
  options.add_options()
      ("seed", po::value<uint64_t>()->default_value(0), "random seed (for the whole conversation)")
      ("device", po::value<std::string>()->default_value("cpu"), "cpu or cuda")
      ("help,h", "this help");
  return options;
}

}  // namespace

int chat_command(const std::vector<std::string>& args) {
  const po::options_description options = chat_options();
  auto vm = parse_args("chat", args, options);
  if (vm.count("help")) {
    print_help(kChatUsage, kChatSummary, options);
    return kExitOk;
  }
  if (!vm.count("model"))
    throw UsageError("nurture chat: which model? e.g. --model runs/quickstart/sft/model "
                     "(see nurture chat --help)");
  auto sampling = sampling_options("chat", vm);
  const torch::Device device = parse_device("chat", vm["device"].as<std::string>());
  const std::string dir = vm["model"].as<std::string>();
  LoadedModel loaded = load_model_dir("chat", dir, device);
  ChatSession(vm, std::move(loaded), std::move(sampling), device).run(dir);
  return kExitOk;
}

}  // namespace nurture::cli
