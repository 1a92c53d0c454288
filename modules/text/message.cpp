// Chat messages: the roles a conversation may hold.
#include "modules/text/message.h"

#include <stdexcept>

namespace nurture {

void validate_messages(const std::vector<Message>& messages) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant")
      throw std::invalid_argument("chat message " + std::to_string(i) + ": unknown role \"" + role +
                                  "\"; expected system, user or assistant");
  }
}

}  // namespace nurture
