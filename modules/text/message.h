// A chat message: who speaks (system, user or assistant) and what they say. Conversations are
// lists of them; chat templates (chat_template.h) turn them into tokens.
#pragma once
#include <string>
#include <vector>

namespace nurture {

struct Message {
  std::string role;  // "system" | "user" | "assistant"
  std::string content;
};

// Throws std::invalid_argument naming the message's index and role unless it is system, user
// or assistant.
void validate_messages(const std::vector<Message>& messages);

}  // namespace nurture
