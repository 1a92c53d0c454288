// The benchmark's arithmetic: the flop counts MFU rests on (known values), the datasheet peaks,
// and the self time of profiled ops.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "pipelines/cli/bench.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using namespace nurture::testing;

TEST(BenchFlops, CountsAsLlmCDoes) {
  // GPT-2 124M at T = 1024: 6 * 124,439,808 + 6 * 12 * 768 * 1024.
  EXPECT_DOUBLE_EQ(train_flops_per_token(preset("gpt2_124m"), 1024), 746638848.0 + 56623104.0);
  // Generation: 2N + 2 L C S.
  const auto tiny = preset("gpt2_tiny");  // 2 layers, width 64
  EXPECT_DOUBLE_EQ(generate_flops_per_token(tiny, 100.0),
                   2.0 * static_cast<double>(count_parameters(tiny)) + 2.0 * 2 * 64 * 100);
}

TEST(BenchFlops, DatasheetPeaksByDeviceName) {
  EXPECT_EQ(datasheet_peak_flops("NVIDIA H100 80GB HBM3", "bf16"), 989e12);
  EXPECT_EQ(datasheet_peak_flops("NVIDIA H100 PCIe", "bf16"), 756e12);
  EXPECT_EQ(datasheet_peak_flops("NVIDIA H200", "fp32"), 494e12);  // fp32 matmuls run as TF32
  EXPECT_EQ(datasheet_peak_flops("NVIDIA A100-SXM4-80GB", "bf16"), 312e12);
  EXPECT_FALSE(datasheet_peak_flops("Some Future GPU", "bf16").has_value());
}

// Self time: an op's duration less the ops it called, per thread.
TEST(BenchProfile, SelfTimeSubtractsNestedOps) {
  const auto events = nlohmann::json::parse(R"([
      {"name": "aten::linear", "ph": "X", "ts": 0, "dur": 100, "tid": 1},
      {"name": "aten::addmm", "ph": "X", "ts": 10, "dur": 70, "tid": 1},
      {"name": "aten::copy_", "ph": "X", "ts": 20, "dur": 5, "tid": 1},
      {"name": "aten::copy_", "ph": "X", "ts": 200, "dur": 15, "tid": 1},
      {"name": "aten::addmm", "ph": "X", "ts": 50, "dur": 30, "tid": 2},
      {"name": "marker", "ph": "i", "ts": 5, "tid": 1}])");
  const auto ops = self_time_by_op(events);
  ASSERT_EQ(ops.size(), 3u);
  EXPECT_EQ(ops[0]["op"], "aten::addmm");  // (70 - 5) + 30 microseconds
  EXPECT_NEAR(ops[0]["self_s"].get<double>(), 95e-6, 1e-12);
  EXPECT_EQ(ops[0]["calls"], 2);
  EXPECT_EQ(ops[1]["op"], "aten::linear");  // 100 - 70
  EXPECT_NEAR(ops[1]["self_s"].get<double>(), 30e-6, 1e-12);
  EXPECT_EQ(ops[2]["op"], "aten::copy_");  // 5 + 15, the second not nested in anything
  EXPECT_NEAR(ops[2]["self_s"].get<double>(), 20e-6, 1e-12);
}

}  // namespace
}  // namespace nurture
