// Chat templates: how a conversation becomes token ids, with the loss mask that says which
// tokens a supervised fine-tune learns (the assistant's replies). The template is a recipe
// setting; ChatML is the built-in one, other formats subclass ChatTemplate.
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
class ChatMLTemplate : public ChatTemplate {
 public:
  std::string name() const override { return "chatml"; }
  RenderedChat render(const Tokenizer& tokenizer, const std::vector<Message>& messages,
                      bool add_generation_prompt) const override;
  std::string render_text(const std::vector<Message>& messages,
                          bool add_generation_prompt) const override;
  // <|im_end|>, and <|endoftext|> when the tokenizer has it.
  std::vector<int64_t> stop_ids(const Tokenizer& tokenizer) const override;
};

// The templates a recipe's `chat_template` may name: "chatml", registered on first use, and those
// plugins add.
using ChatTemplateFactory = std::function<std::shared_ptr<const ChatTemplate>()>;
Registry<ChatTemplateFactory>& chat_template_registry();

}  // namespace nurture
