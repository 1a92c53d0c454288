// Chat messages: a conversation holds system, user and assistant messages, and any other role is
// an error naming the message.
#include "modules/text/message.h"

#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace nurture {
namespace {

TEST(Message, OnlyTheThreeRolesAreValid) {
  EXPECT_NO_THROW(validate_messages({{"system", "be brief"}, {"user", "hi"}, {"assistant", "hello"}}));
  EXPECT_NO_THROW(validate_messages({}));
  EXPECT_EQ(testing::error_of<std::invalid_argument>([] {
              validate_messages({{"user", "hi"}, {"assistant", "hello"}, {"tool", "42"}});
            }),
            "chat message 2: unknown role \"tool\"; expected system, user or assistant");
  EXPECT_THROW(validate_messages({{"User", "hi"}}), std::invalid_argument);  // roles are lower case
}

}  // namespace
}  // namespace nurture
