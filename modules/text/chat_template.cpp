// The chat templates (ChatML and its Qwen variants, Llama 3, a plain transcript) rendered to ids
// with a loss mask and to text, and the recognition of a model's own Jinja template.
#include "modules/text/chat_template.h"

#include <stdexcept>

#include "modules/core/names.h"

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

// Jinja's `trim` and Python's strip('\n') / lstrip('\n').
std::string trim(const std::string& text, const char* characters = " \t\n\r\v\f") {
  const size_t begin = text.find_first_not_of(characters);
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(characters) + 1 - begin);
}

std::string lstrip_newlines(const std::string& text) {
  const size_t begin = text.find_first_not_of('\n');
  return begin == std::string::npos ? "" : text.substr(begin);
}

int64_t required_token(const Tokenizer& tokenizer, const std::string& token, const std::string& template_name) {
  const int64_t id = tokenizer.token_id(token);
  if (id < 0)
    throw std::runtime_error(tokenizer.source() + ": chat template '" + template_name + "' needs the token " + token +
                             ", which this tokenizer lacks. HINT: name the chat template that matches this tokenizer");
  return id;
}

}  // namespace

// ---- ChatML ---------------------------------------------------------------------------------

std::vector<Message> ChatMLTemplate::turns(const std::vector<Message>& messages) const {
  std::vector<Message> turns;
  if (!options_.default_system.empty() && (messages.empty() || messages.front().role != "system"))
    turns.push_back({"system", options_.default_system});
  if (!options_.think_blocks) {
    turns.insert(turns.end(), messages.begin(), messages.end());
    return turns;
  }
  // Qwen3: only replies after the last user turn keep (or get) a <think> block.
  size_t last_query = messages.size() - 1;
  for (size_t i = messages.size(); i-- > 0;) {
    if (messages[i].role == "user") {
      last_query = i;
      break;
    }
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    Message turn = messages[i];
    if (turn.role == "assistant") {
      std::string reasoning;
      const size_t end = turn.content.find("</think>");
      if (end != std::string::npos) {
        reasoning = turn.content.substr(0, end);
        reasoning.erase(reasoning.find_last_not_of('\n') + 1);
        const size_t open = reasoning.rfind("<think>");
        if (open != std::string::npos) reasoning = reasoning.substr(open + 7);
        reasoning = lstrip_newlines(reasoning);
        turn.content = lstrip_newlines(turn.content.substr(turn.content.rfind("</think>") + 8));
      }
      const bool last = i + 1 == messages.size();
      if (i > last_query && (last || !reasoning.empty()))
        turn.content = "<think>\n" + trim(reasoning, "\n") + "\n</think>\n\n" + lstrip_newlines(turn.content);
    }
    turns.push_back(std::move(turn));
  }
  return turns;
}

RenderedChat ChatMLTemplate::render(const Tokenizer& tokenizer,
                                    const std::vector<Message>& messages,
                                    bool add_generation_prompt) const {
  validate_messages(messages);
  require_chat_tokens(tokenizer, name());
  const int64_t im_start = tokenizer.im_start_id();
  const int64_t im_end = tokenizer.im_end_id();
  const std::vector<int64_t> newline = tokenizer.encode("\n");

  RenderedChat chat;
  for (const auto& message : turns(messages)) {
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
  for (const auto& message : turns(messages))
    text += std::string(kImStartToken) + message.role + "\n" + message.content + kImEndToken + "\n";
  if (add_generation_prompt) text += std::string(kImStartToken) + "assistant\n";
  return text;
}

std::vector<int64_t> ChatMLTemplate::stop_ids(const Tokenizer& tokenizer) const {
  require_chat_tokens(tokenizer, name());
  std::vector<int64_t> ids = {tokenizer.im_end_id()};
  if (tokenizer.eot_id() >= 0 && tokenizer.eot_id() != tokenizer.im_end_id()) ids.push_back(tokenizer.eot_id());
  return ids;
}

// ---- Llama 3 --------------------------------------------------------------------------------

namespace {
constexpr const char* kBeginOfText = "<|begin_of_text|>";
constexpr const char* kStartHeader = "<|start_header_id|>";
constexpr const char* kEndHeader = "<|end_header_id|>";
constexpr const char* kEndOfTurn = "<|eot_id|>";
}  // namespace

std::vector<Message> Llama3Template::turns(const std::vector<Message>& messages) const {
  std::vector<Message> turns;
  size_t first = 0;
  if (!options_.preamble.empty()) {
    const bool has_system = !messages.empty() && messages.front().role == "system";
    turns.push_back({"system", options_.preamble + (has_system ? trim(messages.front().content) : "")});
    first = has_system ? 1 : 0;
  }
  for (size_t i = first; i < messages.size(); ++i) turns.push_back({messages[i].role, trim(messages[i].content)});
  return turns;
}

RenderedChat Llama3Template::render(const Tokenizer& tokenizer, const std::vector<Message>& messages,
                                    bool add_generation_prompt) const {
  validate_messages(messages);
  const int64_t start_header = required_token(tokenizer, kStartHeader, name());
  const int64_t end_header = required_token(tokenizer, kEndHeader, name());
  const int64_t end_of_turn = required_token(tokenizer, kEndOfTurn, name());
  std::vector<int64_t> bos = tokenizer.prefix_ids();
  if (bos.empty()) bos = {required_token(tokenizer, kBeginOfText, name())};
  const std::vector<int64_t> blank_line = tokenizer.encode("\n\n");

  RenderedChat chat;
  append(chat, bos, 0);
  auto header = [&](const std::string& role) {
    append(chat, start_header, 0);
    append(chat, tokenizer.encode(role), 0);
    append(chat, end_header, 0);
    append(chat, blank_line, 0);
  };
  for (const auto& message : turns(messages)) {
    const uint8_t learn = message.role == "assistant" ? 1 : 0;
    header(message.role);
    append(chat, tokenizer.encode(message.content, /*allow_special=*/false), learn);
    append(chat, end_of_turn, learn);
  }
  if (add_generation_prompt) header("assistant");
  return chat;
}

std::string Llama3Template::render_text(const std::vector<Message>& messages, bool add_generation_prompt) const {
  validate_messages(messages);
  std::string text = kBeginOfText;
  for (const auto& message : turns(messages))
    text += std::string(kStartHeader) + message.role + kEndHeader + "\n\n" + message.content + kEndOfTurn;
  if (add_generation_prompt) text += std::string(kStartHeader) + "assistant" + kEndHeader + "\n\n";
  return text;
}

std::vector<int64_t> Llama3Template::stop_ids(const Tokenizer& tokenizer) const {
  std::vector<int64_t> ids = {required_token(tokenizer, kEndOfTurn, name())};
  if (tokenizer.eot_id() >= 0 && tokenizer.eot_id() != ids[0]) ids.push_back(tokenizer.eot_id());
  return ids;
}

// ---- a plain transcript ----------------------------------------------------------------------------

namespace {

int64_t required_end_of_text(const Tokenizer& tokenizer) {
  if (tokenizer.eot_id() < 0)
    throw std::runtime_error(tokenizer.source() + ": chat template 'transcript' ends replies with the end-of-text "
                                                  "token, which this tokenizer lacks");
  return tokenizer.eot_id();
}

// A turn's text: "User: …\n", "Assistant: …\n", or a system turn's content alone.
std::string transcript_turn(const Message& m) {
  if (m.role == "system") return m.content + "\n";
  return (m.role == "user" ? "User: " : "Assistant: ") + m.content + "\n";
}

}  // namespace

RenderedChat TranscriptTemplate::render(const Tokenizer& tokenizer, const std::vector<Message>& messages,
                                        bool add_generation_prompt) const {
  validate_messages(messages);
  const int64_t end_of_text = required_end_of_text(tokenizer);
  RenderedChat chat;
  for (const auto& message : messages) {
    if (message.role != "assistant") {
      append(chat, tokenizer.encode(transcript_turn(message), /*allow_special=*/false), 0);
      continue;
    }
    append(chat, tokenizer.encode("Assistant:"), 0);
    append(chat, tokenizer.encode(" " + message.content + "\n", /*allow_special=*/false), 1);
    append(chat, end_of_text, 1);
  }
  if (add_generation_prompt) append(chat, tokenizer.encode("Assistant:"), 0);
  return chat;
}

std::string TranscriptTemplate::render_text(const std::vector<Message>& messages, bool add_generation_prompt) const {
  validate_messages(messages);
  std::string text;
  for (const auto& message : messages) text += transcript_turn(message);
  if (add_generation_prompt) text += "Assistant:";
  return text;
}

std::vector<int64_t> TranscriptTemplate::stop_ids(const Tokenizer& tokenizer) const {
  return {required_end_of_text(tokenizer)};
}

// ---- recognising a model's own template -----------------------------------------------------

namespace {

// The text of a Jinja string literal from `pos` (just after its opening quote, or inside it) up to
// its closing quote or, with stop_at_newline, its first "\n"; escapes resolved. "" if the literal
// holds Jinja expressions ('{') or runs to the end of the template.
std::string jinja_literal(const std::string& jinja, size_t pos, bool stop_at_newline) {
  std::string text;
  for (size_t i = pos; i < jinja.size(); ++i) {
    const char c = jinja[i];
    if (c == '\'' || c == '"') return text;
    if (c == '{' || c == '}') return "";
    if (c == '\n' && stop_at_newline) return text;
    if (c != '\\' || i + 1 == jinja.size()) {
      text += c;
      continue;
    }
    const char e = jinja[++i];
    if (e == 'n' && stop_at_newline) return text;
    text += e == 'n' ? '\n' : e == 't' ? '\t' : e;
  }
  return "";
}

// The literal a default system turn carries: <|im_start|>system\n{literal}<|im_end|>.
std::string chatml_default_system(const std::string& jinja) {
  const std::string head = std::string(kImStartToken) + "system";
  for (size_t at = jinja.find(head); at != std::string::npos; at = jinja.find(head, at + 1)) {
    size_t pos = at + head.size();
    if (jinja.compare(pos, 2, "\\n") == 0) {
      pos += 2;
    } else if (jinja.compare(pos, 1, "\n") == 0) {
      pos += 1;
    } else {
      continue;
    }
    const std::string literal = jinja_literal(jinja, pos, /*stop_at_newline=*/false);
    const size_t end = literal.find(kImEndToken);
    if (end != std::string::npos && end > 0) return literal.substr(0, end);
  }
  return "";
}

// The literal a Jinja variable is set to: {% set name = "literal" %} (the first such).
std::string jinja_set_literal(const std::string& jinja, const std::string& name) {
  const std::string head = name + " = ";
  for (size_t at = jinja.find(head); at != std::string::npos; at = jinja.find(head, at + 1)) {
    const size_t pos = at + head.size();
    if (pos < jinja.size() && (jinja[pos] == '"' || jinja[pos] == '\'')) return jinja_literal(jinja, pos + 1, false);
  }
  return "";
}

}  // namespace

std::shared_ptr<const ChatTemplate> recognise_chat_template(const std::string& jinja, std::string* why) {
  auto has = [&](const char* text) { return jinja.find(text) != std::string::npos; };
  if (has(kStartHeader) && has(kEndOfTurn)) {
    Llama3Options options;
    const std::string knowledge_head = "Cutting Knowledge Date: ";
    const size_t knowledge = jinja.find(knowledge_head);
    if (knowledge != std::string::npos) {
      const std::string cutoff = jinja_literal(jinja, knowledge + knowledge_head.size(), /*stop_at_newline=*/true);
      const std::string date = jinja_set_literal(jinja, "date_string");
      if (cutoff.empty() || date.empty()) {
        *why = "a Llama 3.1-style template whose knowledge-date preamble has no literal cutoff and date_string";
        return nullptr;
      }
      options.preamble = knowledge_head + cutoff + "\nToday Date: " + date + "\n\n";
    }
    return std::make_shared<const Llama3Template>(options);
  }
  if (has(kImStartToken) && has(kImEndToken)) {
    ChatMLOptions options;
    options.think_blocks = has("<think>");
    options.default_system = chatml_default_system(jinja);
    return std::make_shared<const ChatMLTemplate>(options);
  }
  if (has("[INST]")) {
    *why = "the [INST] format of Llama 2 and Mistral, which nurture does not render";
    return nullptr;
  }
  *why = std::string("neither ChatML (") + kImStartToken + ") nor Llama 3's headers (" + kStartHeader + ")";
  return nullptr;
}

std::shared_ptr<const ChatTemplate> resolve_chat_template(const std::string& name, const Tokenizer& tokenizer,
                                                          const std::string& where) {
  const auto& templates = chat_template_registry();
  const std::string ask = ". HINT: name a template: chat_template: " + join_names(templates.names()) + " (or auto)";
  if (name != "auto") {
    if (!templates.contains(name)) throw std::runtime_error(where + ": " + templates.unknown(name));
    return templates.get(name)();
  }
  const std::string& jinja = tokenizer.chat_template_jinja();
  if (jinja.empty()) {
    if (!tokenizer.is_hugging_face()) return std::make_shared<const ChatMLTemplate>();  // trained with its tokens
    throw std::runtime_error(where + ": auto: " + tokenizer.source() + " comes with no chat template" + ask);
  }
  std::string why;
  auto found = recognise_chat_template(jinja, &why);
  if (!found)
    throw std::runtime_error(where + ": auto: the chat template of " + tokenizer.source() + " is " + why + ask);
  return found;
}

Registry<ChatTemplateFactory>& chat_template_registry() {
  static Registry<ChatTemplateFactory> registry = [] {
    Registry<ChatTemplateFactory> r("chat template");
    r.add("chatml", [] { return std::make_shared<const ChatMLTemplate>(); });
    r.add("qwen3", [] { return std::make_shared<const ChatMLTemplate>(ChatMLOptions{"", true}); });
    r.add("llama3", [] { return std::make_shared<const Llama3Template>(); });
    r.add("llama3.1", [] {
      return std::make_shared<const Llama3Template>(
          Llama3Options{"Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"});
    });
    r.add("transcript", [] { return std::make_shared<const TranscriptTemplate>(); });
    return r;
  }();
  return registry;
}

}  // namespace nurture
