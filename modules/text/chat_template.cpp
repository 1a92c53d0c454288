// ChatML rendering to ids with a loss mask, and to text.
#include "modules/text/chat_template.h"

#include <stdexcept>

namespace nurture {

namespace {

void require_chat_tokens(const Tokenizer& tokenizer, const std::string& template_name) {
  if (!tokenizer.has_chat_tokens())
    throw std::runtime_error(
        tokenizer.source() + ": chat template '" + template_name + "' needs the tokens " +
        kImStartToken + " and " + kImEndToken +
        ", which this tokenizer lacks. HINT: use a "
        "tokenizer trained by `nurture tokenizer train` (it always has them), or a chat template "
        "that matches this tokenizer");
}

// Appends `ids` with the same mask value for each.
void append(RenderedChat& chat, const std::vector<int64_t>& ids, uint8_t mask) {
  chat.ids.insert(chat.ids.end(), ids.begin(), ids.end());
  chat.loss_mask.insert(chat.loss_mask.end(), ids.size(), mask);
}

void append(RenderedChat& chat, int64_t id, uint8_t mask) {
  chat.ids.push_back(id);
  chat.loss_mask.push_back(mask);
}

}  // namespace

RenderedChat ChatMLTemplate::render(const Tokenizer& tokenizer,
                                    const std::vector<Message>& messages,
                                    bool add_generation_prompt) const {
  validate_messages(messages);
  require_chat_tokens(tokenizer, name());
  const int64_t im_start = tokenizer.im_start_id();
  const int64_t im_end = tokenizer.im_end_id();
  const std::vector<int64_t> newline = tokenizer.encode("\n");

  RenderedChat chat;
  for (const auto& message : messages) {
    const uint8_t learn = message.role == "assistant" ? 1 : 0;
    append(chat, im_start, 0);
    append(chat, tokenizer.encode(message.role + "\n"), 0);
    append(chat, tokenizer.encode(message.content, /*allow_special=*/false), learn);
    append(chat, im_end, learn);
    append(chat, newline, 0);
  }
  if (add_generation_prompt) {
    append(chat, im_start, 0);
    append(chat, tokenizer.encode("assistant\n"), 0);
  }
  return chat;
}

std::string ChatMLTemplate::render_text(const std::vector<Message>& messages,
                                        bool add_generation_prompt) const {
  validate_messages(messages);
  std::string text;
  for (const auto& message : messages)
    text += std::string(kImStartToken) + message.role + "\n" + message.content + kImEndToken + "\n";
  if (add_generation_prompt) text += std::string(kImStartToken) + "assistant\n";
  return text;
}

std::vector<int64_t> ChatMLTemplate::stop_ids(const Tokenizer& tokenizer) const {
  require_chat_tokens(tokenizer, name());
  std::vector<int64_t> ids = {tokenizer.im_end_id()};
  if (tokenizer.eot_id() >= 0) ids.push_back(tokenizer.eot_id());
  return ids;
}

Registry<ChatTemplateFactory>& chat_template_registry() {
  static Registry<ChatTemplateFactory> registry = [] {
    Registry<ChatTemplateFactory> r("chat template");
    r.add("chatml", [] { return std::make_shared<const ChatMLTemplate>(); });
    return r;
  }();
  return registry;
}

}  // namespace nurture
