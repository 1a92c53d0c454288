// The names users type, checked against the known ones: the closest known name within a few
// edits, and the lists error messages show.
#include "modules/core/names.h"

#include <gtest/gtest.h>

namespace nurture {
namespace {

TEST(Names, TheClosestKnownNameWithinAFewEdits) {
  const std::vector<std::string> known = {"sft", "pretrain", "reward_model", "ppo"};
  EXPECT_EQ(did_you_mean("sfft", known), "did you mean 'sft'?");
  EXPECT_EQ(did_you_mean("pretrian", known), "did you mean 'pretrain'?");  // a swap is two edits
  EXPECT_EQ(did_you_mean("rewardmodel", known), "did you mean 'reward_model'?");
  EXPECT_EQ(did_you_mean("tokenizer", known), "");  // nothing close
  EXPECT_EQ(did_you_mean("sft", {}), "");
  // Long words allow more edits (a third of their length), short ones two.
  EXPECT_EQ(did_you_mean("xyz", {"abc"}), "");
  EXPECT_EQ(did_you_mean("ab", {"xy"}), "did you mean 'xy'?");
}

TEST(Names, ListsJoinWithCommasOrSayNone) {
  EXPECT_EQ(join_names({"a", "b", "c"}), "a, b, c");
  EXPECT_EQ(join_names({"only"}), "only");
  EXPECT_EQ(join_names({}), "none");
}

}  // namespace
}  // namespace nurture
