// Tests for pipelines/rl/rollout.h: seeds, greedy sampling, and replies decoded without their stop
// token (modules/generation/sampling.h reply_ids).
#include "pipelines/rl/rollout.h"

#include <gmock/gmock.h>

#include "tests/test_util.h"

namespace nurture {
namespace {

TEST(Rollout, SeedsDifferPerRankAndIterationAndRepeat) {
  EXPECT_EQ(rl::rollout_seed(7, 0, 3), rl::rollout_seed(7, 0, 3));
  EXPECT_NE(rl::rollout_seed(7, 0, 3), rl::rollout_seed(7, 1, 3));
  EXPECT_NE(rl::rollout_seed(7, 0, 3), rl::rollout_seed(7, 0, 4));
  EXPECT_EQ(rl::rollout_seed(7, 0, 3), rl::derive_seed(7, 3));  // rank 0 keeps the stage's seed
  EXPECT_NE(rl::derive_seed(7, 3, 1), rl::derive_seed(7, 3, 2));
}

TEST(Rollout, RepliesLoseTheirStopTokenOnly) {
  // Row 0 stopped on its third token (9, the stop id); row 1 ran out of tokens; row 2 stopped at once.
  Generation g;
  g.response = torch::tensor({4, 5, 9, 6, 7, 8, 9, 0, 0}, torch::kLong).view({3, 3});
  g.response_mask = torch::tensor({1, 1, 1, 1, 1, 1, 1, 0, 0}, torch::kLong).view({3, 3});
  g.stopped = torch::tensor({true, false, true});
  const auto ids = reply_ids(g);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[0], (std::vector<int64_t>{4, 5}));
  EXPECT_EQ(ids[1], (std::vector<int64_t>{6, 7, 8}));
  EXPECT_TRUE(ids[2].empty());
}

TEST(Rollout, GreedySamplingSwitchesFilteringOff) {
  const rl::ReplySampling sampling{24, 0.7, 20, 0.9};
  const rl::ReplySampling greedy = sampling.greedy();
  EXPECT_EQ(greedy.temperature, 0.0);
  EXPECT_EQ(greedy.max_new_tokens, 24);
}

}  // namespace
}  // namespace nurture
