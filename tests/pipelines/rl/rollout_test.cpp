// Tests for pipelines/rl/rollout.h: seeds, greedy sampling, replies decoded without their stop
// token (modules/generation/sampling.h reply_ids), and rows of several rollouts padded into one.
#include "pipelines/rl/rollout.h"

#include <gmock/gmock.h>

#include <algorithm>
#include <string>
#include <vector>

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

// A rollout of `prompts` (left-padded to P) and `replies` (right-padded to N), pad id 0, with
// log-probs −(column + 1)/10 on the reply tokens.
rl::Rollout fake_rollout(const std::vector<std::vector<int64_t>>& prompts,
                         const std::vector<std::vector<int64_t>>& replies, const std::vector<PromptExample>& data) {
  int64_t P = 0, N = 0;
  for (const auto& p : prompts) P = std::max<int64_t>(P, static_cast<int64_t>(p.size()));
  for (const auto& r : replies) N = std::max<int64_t>(N, static_cast<int64_t>(r.size()));
  const int64_t B = static_cast<int64_t>(prompts.size());
  rl::Rollout r;
  r.prompt_length = P;
  r.response_length = N;
  r.tokens = torch::zeros({B, P + N}, torch::kLong);
  r.attention_mask = torch::zeros({B, P + N}, torch::kLong);
  r.response_mask = torch::zeros({B, N}, torch::kFloat);
  r.sample_logprobs = torch::zeros({B, N}, torch::kFloat);
  r.stopped = torch::zeros({B}, torch::kBool);
  for (int64_t i = 0; i < B; ++i) {
    const auto& p = prompts[static_cast<size_t>(i)];
    const auto& reply = replies[static_cast<size_t>(i)];
    const int64_t np = static_cast<int64_t>(p.size()), nr = static_cast<int64_t>(reply.size());
    for (int64_t t = 0; t < np; ++t) r.tokens[i][P - np + t] = p[static_cast<size_t>(t)];
    for (int64_t t = 0; t < nr; ++t) r.tokens[i][P + t] = reply[static_cast<size_t>(t)];
    r.attention_mask[i].narrow(0, P - np, np + nr).fill_(1);
    r.response_mask[i].narrow(0, 0, nr).fill_(1);
    for (int64_t t = 0; t < nr; ++t) r.sample_logprobs[i][t] = -(t + 1) / 10.0;
    r.stopped[i] = nr % 2 == 1;
    r.replies.push_back({"reply " + std::to_string(i), nr % 2 == 1, nr});
    r.examples.push_back(&data[static_cast<size_t>(i)]);
  }
  return r;
}

TEST(Rollout, RowsOfSeveralRolloutsArePaddedIntoOne) {
  const std::vector<PromptExample> data(3);
  const rl::Rollout a = fake_rollout({{1, 2}, {3}}, {{7, 8, 9}, {6}}, data);
  const rl::Rollout b = fake_rollout({{4, 5, 6}}, {{5, 5}}, data);
  const rl::Rollout r = rl::concat_rollout_rows({&a, &b}, {{1, 0}, {0}});
  EXPECT_EQ(r.prompt_length, 3);
  EXPECT_EQ(r.response_length, 3);
  // a's row 1, a's row 0, b's row 0: prompts end at column 3, replies start there.
  const auto expected = torch::tensor({0, 0, 3, 6, 0, 0,  //
                                       0, 1, 2, 7, 8, 9,  //
                                       4, 5, 6, 5, 5, 0},
                                      torch::kLong)
                            .view({3, 6});
  EXPECT_TRUE(torch::equal(r.tokens, expected)) << r.tokens;
  EXPECT_TRUE(torch::equal(r.attention_mask, (expected != 0).to(torch::kLong)));
  EXPECT_TRUE(torch::equal(r.response_mask, torch::tensor({1, 0, 0, 1, 1, 1, 1, 1, 0}, torch::kFloat).view({3, 3})));
  EXPECT_TRUE(torch::equal(r.stopped, torch::tensor({true, true, false})));
  EXPECT_NEAR(r.sample_logprobs[1][2].item<float>(), -0.3f, 1e-7);
  EXPECT_EQ(r.sample_logprobs[0][1].item<float>(), 0.0f);
  EXPECT_EQ(r.replies[0].text, "reply 1");
  EXPECT_EQ(r.examples[2], &data[0]);
  EXPECT_EQ(r.new_tokens, 6);
}

}  // namespace
}  // namespace nurture
