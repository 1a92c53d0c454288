// Dataset formats by name: the built-in chat and alpaca records as conversations, and an unknown
// format named with the known ones.
#include "pipelines/data/dataset_format.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace nurture {
namespace {

using json = nlohmann::json;

TEST(DatasetFormat, BuiltInFormatsBecomeConversations) {
  const auto& formats = dataset_format_registry();
  ASSERT_EQ(formats.names(), (std::vector<std::string>{"alpaca", "chat"}));
  const auto alpaca = formats.get("alpaca").to_messages(json{{"instruction", "Add."}, {"input", "1 2"}, {"output", "3"}});
  ASSERT_EQ(alpaca.size(), 2u);
  EXPECT_EQ(alpaca[0].role, "user");
  EXPECT_EQ(alpaca[0].content, "Add.\n\n1 2");
  EXPECT_EQ(alpaca[1].content, "3");
  const auto chat = formats.get("chat").to_messages(json{{"system", "Be brief."}, {"prompt", "Hi"}, {"response", "Hello"}});
  ASSERT_EQ(chat.size(), 3u);
  EXPECT_EQ(chat[0].role, "system");
  EXPECT_EQ(chat[1].role, "user");
  EXPECT_EQ(chat[2].role, "assistant");
  EXPECT_EQ(chat[2].content, "Hello");
}

TEST(DatasetFormat, AnUnknownFormatNamesTheKnownOnes) {
  EXPECT_EQ(dataset_format_registry().unknown("alpacca"),
            "unknown dataset format 'alpacca' (known: alpaca, chat); did you mean 'alpaca'?");
  EXPECT_THROW(dataset_format_registry().get("sharegpt"), std::invalid_argument);
}

}  // namespace
}  // namespace nurture
