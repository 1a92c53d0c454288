// Tests for pipelines/rl/cross_rank_sums.h on one rank: values come back by name, and misuse is
// an error that names the value.
#include "pipelines/rl/cross_rank_sums.h"

#include <gmock/gmock.h>

#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;

TEST(CrossRankSums, ReadsEachSumBackByName) {
  rl::CrossRankSums sums(torch::kCPU);
  sums.add("reward", torch::tensor({0.5, 1.25, -2.0}, torch::kFloat64).sum());
  sums.add("tokens", torch::tensor(7, torch::kLong));
  sums.add("stop", 0.0);
  sums.add("half", torch::tensor(0.5f));
  sums.reduce();
  EXPECT_EQ(sums["reward"], -0.25);
  EXPECT_EQ(sums["tokens"], 7.0);
  EXPECT_EQ(sums["stop"], 0.0);
  EXPECT_EQ(sums["half"], 0.5);
}

TEST(CrossRankSums, MisuseNamesTheValue) {
  rl::CrossRankSums sums(torch::kCPU);
  sums.add("kl", 1.0);
  EXPECT_THAT(testing::error_of<std::logic_error>([&] { sums["kl"]; }), HasSubstr("'kl' read before reduce()"));
  EXPECT_THAT(testing::error_of<std::logic_error>([&] { sums.add("kl", 2.0); }), HasSubstr("'kl' added twice"));
  sums.reduce();
  EXPECT_THAT(testing::error_of<std::logic_error>([&] { sums["lk"]; }), HasSubstr("no sum named 'lk'"));
  EXPECT_THAT(testing::error_of<std::logic_error>([&] { sums.add("x", 1.0); }), HasSubstr("added after reduce()"));
  EXPECT_THAT(testing::error_of<c10::Error>([] { rl::CrossRankSums(torch::kCPU).add("v", torch::ones({2})); }),
              HasSubstr("'v' must be one value"));
}

}  // namespace
}  // namespace nurture
