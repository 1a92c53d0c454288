// Chat templates: how a conversation becomes token ids, with the loss mask that says which
// tokens a supervised fine-tune learns (the assistant's replies). The template is a recipe
// setting ("auto": the model's own, recognised); ChatML and Llama 3's are built in, other formats
// subclass ChatTemplate.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "modules/core/registry.h"
#include "modules/text/message.h"
#include "modules/text/tokenizer.h"

namespace nurture {

struct RenderedChat {
  std::vector<int64_t> ids;
  std::vector<uint8_t> loss_mask;  // same length as ids; 1 where the model is trained to predict
};

class ChatTemplate {
 public:
  virtual ~ChatTemplate() = default;
  virtual std::string name() const = 0;
  // add_generation_prompt: end with the header of an assistant turn, for sampling the reply.
  virtual RenderedChat render(const Tokenizer& tokenizer, const std::vector<Message>& messages,
                              bool add_generation_prompt) const = 0;
  // The same conversation as text, for display and logs.
  virtual std::string render_text(const std::vector<Message>& messages,
                                  bool add_generation_prompt) const = 0;
  // Generation stops at any of these ids.
  virtual std::vector<int64_t> stop_ids(const Tokenizer& tokenizer) const = 0;
};

// ChatML:
//   <|im_start|>system\n{content}<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n
//   <|im_start|>assistant\n{content}<|im_end|>\n
// The loss mask is 1 on each assistant reply's content tokens and its closing <|im_end|>, and 0
// everywhere else (the headers, the "\n" after <|im_end|>, system and user turns). Headers,
// contents and separators are encoded separately, so token boundaries never depend on the
// neighbouring text; contents are encoded without special tokens (a "<|im_end|>" typed inside
// a message stays text). The generation prompt is "<|im_start|>assistant\n" (mask 0).
//
// Two variants the Qwen families' templates have:
//   default_system  rendered as a system turn when the conversation has none (Qwen2, Qwen2.5:
//                   "You are a helpful assistant.").
//   think_blocks    Qwen3: an assistant reply after the last user turn that is the conversation's
//                   last message, or carries reasoning ("<think>…</think>" before the answer),
//                   is written "<think>\n{reasoning}\n</think>\n\n{answer}" (an empty block when
//                   it has none); replies before the last user turn lose their reasoning.
struct ChatMLOptions {
  std::string default_system;
  bool think_blocks = false;
};

class ChatMLTemplate : public ChatTemplate {
 public:
  explicit ChatMLTemplate(ChatMLOptions options = {}) : options_(std::move(options)) {}
  std::string name() const override { return options_.think_blocks ? "qwen3" : "chatml"; }
  RenderedChat render(const Tokenizer& tokenizer, const std::vector<Message>& messages,
                      bool add_generation_prompt) const override;
  std::string render_text(const std::vector<Message>& messages,
                          bool add_generation_prompt) const override;
  // <|im_end|>, and <|endoftext|> when the tokenizer has it.
  std::vector<int64_t> stop_ids(const Tokenizer& tokenizer) const override;
  const ChatMLOptions& options() const { return options_; }

 private:
  // The turns as rendered: the default system turn added, assistant contents rewritten.
  std::vector<Message> turns(const std::vector<Message>& messages) const;

  ChatMLOptions options_;
};

// Llama 3's header format:
//   <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content, trimmed}<|eot_id|>...
// with the generation prompt "<|start_header_id|>assistant<|end_header_id|>\n\n". The loss mask
// is 1 on each assistant reply's content and its <|eot_id|>. `preamble` (Llama 3.1 and later:
// "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n") opens a system turn that
// is always there, the conversation's own system message (trimmed) after it. The template's
// fallback date is used where transformers would put today's (strftime_now): a run's data
// should not change with the day it runs.
struct Llama3Options {
  std::string preamble;
};

class Llama3Template : public ChatTemplate {
 public:
  explicit Llama3Template(Llama3Options options = {}) : options_(std::move(options)) {}
  std::string name() const override { return options_.preamble.empty() ? "llama3" : "llama3.1"; }
  RenderedChat render(const Tokenizer& tokenizer, const std::vector<Message>& messages,
                      bool add_generation_prompt) const override;
  std::string render_text(const std::vector<Message>& messages,
                          bool add_generation_prompt) const override;
  // <|eot_id|>, and the tokenizer's eos token.
  std::vector<int64_t> stop_ids(const Tokenizer& tokenizer) const override;
  const Llama3Options& options() const { return options_; }

 private:
  std::vector<Message> turns(const std::vector<Message>& messages) const;

  Llama3Options options_;
};

// A plain transcript, for base models that were never taught a chat format (DeepSeek-R1-Zero's RL
// starts from one this way):
//   {system}\nUser: {content}\nAssistant: {content}\n<eos>User: ...
// the form conversations have in pre-training text. The generation prompt is "Assistant:"; a reply
// ends with "\n" and the tokenizer's end-of-text token (mask 1 on " {content}\n<eos>"), where a
// pre-training document of one exchange ends. Pieces are encoded separately, "User: {content}"
// as one, so a word keeps its leading space as in running text. Generation stops at end-of-text.
class TranscriptTemplate : public ChatTemplate {
 public:
  std::string name() const override { return "transcript"; }
  RenderedChat render(const Tokenizer& tokenizer, const std::vector<Message>& messages,
                      bool add_generation_prompt) const override;
  std::string render_text(const std::vector<Message>& messages,
                          bool add_generation_prompt) const override;
  std::vector<int64_t> stop_ids(const Tokenizer& tokenizer) const override;  // end-of-text
};

// The family of a model's own Jinja chat template (tokenizer_config.json's chat_template or
// chat_template.jinja), recognised by what it writes: ChatML's <|im_start|> (with Qwen3's <think>
// blocks, and a default system message where the template has one as a literal), Llama 3's
// <|start_header_id|> (with 3.1's knowledge-date preamble). nullptr, with the reason in *why, for
// anything else — including the [INST] family of Llama 2 and Mistral, which nurture does not
// render yet. Recognition reads the template's text, it does not run it: a template that
// recognisably belongs to a family but renders differently is not detected as different.
std::shared_ptr<const ChatTemplate> recognise_chat_template(const std::string& jinja, std::string* why);

// What a stage's `chat_template` setting names: a registered template, or "auto": the model's own
// template recognised (recognise_chat_template), ChatML for a nurture tokenizer (trained with the
// ChatML tokens). A template that is not recognised, or a Hugging Face tokenizer without one, is
// a std::runtime_error that starts with `where` and asks for a template by name.
std::shared_ptr<const ChatTemplate> resolve_chat_template(const std::string& name, const Tokenizer& tokenizer,
                                                          const std::string& where);

// The templates a recipe's `chat_template` may name: "chatml", "qwen3", "llama3", "llama3.1",
// "transcript" (with the defaults above), registered on first use, and those plugins add.
using ChatTemplateFactory = std::function<std::shared_ptr<const ChatTemplate>()>;
Registry<ChatTemplateFactory>& chat_template_registry();

}  // namespace nurture
