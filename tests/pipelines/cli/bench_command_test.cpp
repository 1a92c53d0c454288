// `nurture bench` through the executable: the profile's trace and op ranking, JSON figures that
// agree with one another, readable output, and bad flags as usage errors naming the flag.
#include <gmock/gmock.h>

#include <nlohmann/json.hpp>
#include <set>

#include "pipelines/cli/bench.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;

TEST(BenchCommand, ProfileWritesATraceAndRanksTheOps) {
  const auto trace = scratch_dir("bench_profile") / "trace.json";
  auto r = run_nurture("bench --preset gpt2_tiny --set n_layer=1 --batch 2 --ctx 16 --steps 2 --warmup 1 "
                       "--threads 1 --json --profile " + trace.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(std::filesystem::exists(trace));
  const auto& ops = j["profile"]["ops"];
  ASSERT_FALSE(ops.empty());
  std::set<std::string> names;
  for (const auto& op : ops) names.insert(op["op"].get<std::string>());
  EXPECT_TRUE(names.count("aten::mm") || names.count("aten::addmm")) << ops.dump();
  for (size_t i = 1; i < ops.size(); ++i) EXPECT_GE(ops[i - 1]["self_s"], ops[i]["self_s"]);
}

TEST(BenchCommand, TrainJsonFiguresAgree) {
  auto r = run_nurture("bench --preset gpt2_tiny --set n_layer=1 --set model.vocab_size=64 --batch 2 "
                       "--ctx 16 --steps 3 --warmup 1 --threads 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  auto shape = preset("gpt2_tiny").n_layer(1).vocab_size(64);
  EXPECT_EQ(j["parameters"].get<int64_t>(), count_parameters(shape));
  EXPECT_EQ(j["model"]["n_layer"], 1);
  EXPECT_EQ(j["step_times_s"].size(), 3u);
  EXPECT_EQ(j["threads"], 1);
  EXPECT_EQ(j["tokens_per_step"].get<double>(), 32.0);
  const double step = j["step_time_s"].get<double>();
  EXPECT_GT(step, 0.0);
  EXPECT_NEAR(j["tokens_per_s"].get<double>(), 32.0 / step, 1e-9 * 32.0 / step);
  EXPECT_DOUBLE_EQ(j["flops_per_token"].get<double>(), train_flops_per_token(shape, 16));
  EXPECT_NEAR(j["mfu"].get<double>(), j["achieved_flops"].get<double>() / j["peak_flops"].get<double>(), 1e-12);
  EXPECT_THAT(j["peak_flops_source"].get<std::string>(), HasSubstr("measured"));
  EXPECT_GT(j["peak_rss_bytes"].get<int64_t>(), 0);
}

TEST(BenchCommand, GenerateAndReadableOutput) {
  auto r = run_nurture("bench --preset gpt2_tiny --mode generate --batch 2 --prompt-len 8 --new-tokens 4 "
                       "--steps 2 --warmup 0 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("[bench] generate: batch 2, prompts of 8 + 4 new tokens, cpu fp32, 1 threads"));
  EXPECT_THAT(r.out, HasSubstr("ms median of 2 after 0 warm-up"));
  EXPECT_THAT(r.out, HasSubstr("MFU"));
}

TEST(BenchCommand, BadFlagsNameTheFlag) {
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases = {
      {"--mode fly", "nurture bench: --mode must be train, generate or load, got 'fly'"},
      {"--batch 0", "nurture bench: --batch must be at least 1, got 0"},
      {"--set n_layr=2", "unknown model option \"n_layr\""},
      {"--set n_layer", "--set n_layer: expected KEY=VALUE"},
      {"--preset gpt2_tiny --ctx 4096", "--ctx 4096 exceeds the model's block_size 128"},
      {"--precision fp16", "--precision must be fp32 or bf16, got 'fp16'"},
      {"--device tpu", "--device must be cpu or cuda, got 'tpu'"},
  };
  for (const auto& c : cases) {
    auto r = run_nurture("bench --steps 1 --warmup 0 " + c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.message)) << c.args;
  }
}

}  // namespace
}  // namespace nurture
