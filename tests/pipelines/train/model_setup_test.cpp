// Where a stage's model comes from: a recipe's `model:` section over a preset, with errors naming
// the key; the one-line parameter summary the logs show; the frozen copy RL takes as its reference.
#include "pipelines/train/model_setup.h"

#include <gmock/gmock.h>

#include "pipelines/recipe/config.h"
#include "pipelines/runtime/log.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;

// The section's settings as a stage reads them: validated, defaults filled in.
Settings model_section(const std::string& yaml) {
  const ConfigNode node = parse_yaml(yaml, "r.yaml");
  ValidationContext ctx;
  model_schema()->validate(node, "stages.pre.model", ctx);
  if (!ctx.errors.empty()) throw ConfigError(ctx.errors);
  return Settings(model_schema()->resolve(node), "stages.pre.model");
}

TEST(ModelSetup, TheSectionOverridesItsPresetAndTheVocabularyIsTheTokenizers) {
  const TransformerOptions o = model_options(model_section("preset: llama_micro\nn_layer: 3\nnorm: layernorm\n"), 300);
  EXPECT_EQ(o.n_layer(), 3);
  EXPECT_EQ(o.n_embd(), 64);  // the preset's
  EXPECT_EQ(o.norm(), NormKind::kLayerNorm);
  EXPECT_EQ(o.vocab_size(), 300);
  EXPECT_EQ(model_options(model_section("vocab_size: 320\n"), 300).vocab_size(), 320);  // padded up is fine
}

TEST(ModelSetup, ImpossibleModelsNameTheKey) {
  EXPECT_EQ(error_of<std::runtime_error>([] { model_options(model_section("vocab_size: 200\n"), 300); }),
            "r.yaml:1:13: stages.pre.model.vocab_size: 200 is smaller than the tokenizer's vocabulary (300)");
  EXPECT_THAT(error_of<std::runtime_error>([] { model_options(model_section("norm: batchnorm\n"), 300); }),
              HasSubstr("r.yaml:1:7: stages.pre.model.norm: "));
  EXPECT_THAT(error_of<std::runtime_error>([] { model_options(model_section("n_head: 3\n"), 300); }),
              HasSubstr("stages.pre.model: "));  // 64 channels do not split into 3 heads
}

TEST(ModelSetup, ParameterSummaryAndFrozenCopy) {
  const TransformerOptions o = preset("llama_micro").vocab_size(300);
  EXPECT_EQ(parameter_summary(o), human_count(static_cast<double>(count_parameters(o))) +
                                      " parameters: 2 layers, 4 heads, width 64, context 128, vocab 300");
  torch::manual_seed(3);
  Transformer model(o);
  const Transformer frozen = frozen_copy(model);
  const auto a = model->named_parameters(), b = frozen->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& p : a) {
    EXPECT_TRUE(p.value().equal(b[p.key()])) << p.key();
    EXPECT_FALSE(b[p.key()].requires_grad()) << p.key();
    EXPECT_NE(p.value().data_ptr(), b[p.key()].data_ptr()) << p.key();  // its own storage
  }
  EXPECT_FALSE(frozen->is_training());
}

}  // namespace
}  // namespace nurture
