// `nurture bench --mode load`: the figures of a small checkpoint agree with its shape, both
// formats are measured, and the readable lines say what was loaded.
#include <gmock/gmock.h>

#include <nlohmann/json.hpp>

#include "pipelines/cli/bench.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;

TEST(BenchLoad, FiguresAgreeWithTheShape) {
  auto r = run_nurture("bench --mode load --preset llama_micro --set n_layer=2 --set vocab_size=300 --threads 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto shape = preset("llama_micro").n_layer(2).vocab_size(300);
  EXPECT_EQ(j["parameters"].get<int64_t>(), count_parameters(shape));
  EXPECT_EQ(j["model_bytes"].get<int64_t>(), 4 * count_parameters(shape));  // fp32
  // The largest tensor is an embedding-sized matrix (the vocabulary or the MLP's hidden rows).
  const int64_t width = shape.n_embd();
  EXPECT_EQ(j["largest_tensor_bytes"].get<int64_t>(), 4 * width * std::max<int64_t>(300, resolved_mlp_hidden(shape)));
  for (const char* format : {"hf", "nurture"}) {
    const auto& m = j[format];
    // The weights plus headers and config files: never less than the model, never much more.
    EXPECT_GE(m["bytes_on_disk"].get<int64_t>(), j["model_bytes"].get<int64_t>()) << format;
    EXPECT_LT(m["bytes_on_disk"].get<int64_t>(), j["model_bytes"].get<int64_t>() + (1 << 20)) << format;
    EXPECT_GT(m["load_s"].get<double>(), 0.0) << format;
    EXPECT_TRUE(m["peak_rss_extra_bytes"].is_number_integer()) << format;  // its size is the benchmark's to show
  }
  EXPECT_NE(j["hf"]["dir"], j["nurture"]["dir"]);
  EXPECT_FALSE(std::filesystem::exists(j["hf"]["dir"].get<std::string>()));  // the temporary files are gone
}

TEST(BenchLoad, ReadableLinesNameBothFormats) {
  auto r = run_nurture("bench --mode load --preset llama_micro --set n_layer=1 --precision bf16 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("parameters in bf16 = "));
  EXPECT_THAT(r.out, HasSubstr("[bench] hf safetensors "));
  EXPECT_THAT(r.out, HasSubstr("[bench] nurture model.pt "));
  EXPECT_THAT(r.out, HasSubstr("x its largest tensor"));
}

}  // namespace
}  // namespace nurture
