// Tests of model directories: save/load round trips for every kind, and clear errors naming the
// path for a missing directory or file, a garbled config, truncated weights and shape mismatches.
#include "modules/model/model_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "tests/test_util.h"

namespace nurture {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class ModelDirTest : public testing::Seeded {};

TransformerOptions small_gpt2() {
  return preset("gpt2_tiny").vocab_size(53).block_size(16).n_layer(2).n_head(2).n_embd(16);
}

using testing::error_of;
using testing::read_file;
using testing::write_file;

TEST_F(ModelDirTest, LanguageModelRoundTripGivesIdenticalLogits) {
  torch::NoGradGuard no_grad;
  const auto dir = testing::scratch_dir("model_dir_lm");
  for (const auto& options :
       {small_gpt2(), preset("llama_micro").vocab_size(53).n_embd(16).n_head(2).n_kv_head(1)}) {
    Transformer model(options);
    save_model(dir, *model, options, "lm");
    EXPECT_TRUE(fs::exists(dir / "config.json"));
    EXPECT_TRUE(fs::exists(dir / "model.pt"));
    EXPECT_EQ(read_model_kind(dir), "lm");
    EXPECT_EQ(to_json(read_model_config(dir)), to_json(options));
    auto loaded = load_transformer(dir, torch::kCPU);
    auto idx = torch::randint(0, 53, {2, 7});
    EXPECT_TRUE(torch::equal(model->forward(idx), loaded->forward(idx)));
  }
  // No temporary files are left behind.
  for (const auto& entry : fs::directory_iterator(dir)) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
  }
}

TEST_F(ModelDirTest, HeadsRoundTripAndLoadFromALanguageModel) {
  torch::NoGradGuard no_grad;
  const auto lm_dir = testing::scratch_dir("model_dir_lm_for_heads");
  const auto rm_dir = testing::scratch_dir("model_dir_reward");
  Transformer lm(small_gpt2());
  save_model(lm_dir, *lm, small_gpt2(), "lm");
  RewardModel reward(small_gpt2());
  save_model(rm_dir, *reward, small_gpt2(), "reward");
  auto idx = torch::randint(0, 53, {2, 6});

  auto reward_back = load_reward_model(rm_dir, torch::kCPU);
  EXPECT_TRUE(torch::equal(reward_back->forward(idx), reward->forward(idx)));
  // A reward model started from a language model: the backbone is the lm's.
  auto from_lm = load_reward_model(lm_dir, torch::kCPU);
  EXPECT_TRUE(torch::equal(from_lm->transformer->hidden_states(idx), lm->hidden_states(idx)));
  // A value model started from the reward model; a Transformer from the reward model's backbone.
  auto value = load_value_model(rm_dir, torch::kCPU);
  EXPECT_TRUE(torch::equal(value->transformer->hidden_states(idx), reward->transformer->hidden_states(idx)));
  auto backbone = load_transformer(rm_dir, torch::kCPU);
  EXPECT_TRUE(torch::equal(backbone->hidden_states(idx), reward->transformer->hidden_states(idx)));
  // The file is what torch::save(module) writes: torch::load reads it back.
  RewardModel plain(small_gpt2());
  torch::load(plain, (rm_dir / "model.pt").string());
  EXPECT_TRUE(torch::equal(plain->forward(idx), reward->forward(idx)));
}

TEST_F(ModelDirTest, MissingDirectoryAndFiles) {
  const auto dir = testing::scratch_dir("model_dir_missing");
  EXPECT_THAT(error_of<std::runtime_error>([&] { load_transformer(dir / "nope", torch::kCPU); }),
              HasSubstr((dir / "nope").string()));
  EXPECT_THAT(error_of<std::runtime_error>([&] { read_model_config(dir); }), HasSubstr((dir / "config.json").string()));
  Transformer model(small_gpt2());
  save_model(dir, *model, small_gpt2(), "lm");
  fs::remove(dir / "model.pt");
  EXPECT_THAT(error_of<std::runtime_error>([&] { load_transformer(dir, torch::kCPU); }),
              HasSubstr((dir / "model.pt").string()));
}

TEST_F(ModelDirTest, GarbledConfigNamesFileAndKey) {
  const auto dir = testing::scratch_dir("model_dir_garbled");
  Transformer model(small_gpt2());
  save_model(dir, *model, small_gpt2(), "lm");
  const auto config = dir / "config.json";
  const std::string good = read_file(config);

  write_file(config, "{\"format\": \"nurture-model\", \"version\": 1, ");
  auto message = error_of<std::runtime_error>([&] { load_transformer(dir, torch::kCPU); });
  EXPECT_THAT(message, HasSubstr(config.string()));
  EXPECT_THAT(message, HasSubstr("not valid JSON"));

  auto json = nlohmann::json::parse(good);
  json["transformer"]["n_layer"] = "two";
  write_file(config, json.dump());
  message = error_of<std::runtime_error>([&] { load_transformer(dir, torch::kCPU); });
  EXPECT_THAT(message, HasSubstr(config.string()));
  EXPECT_THAT(message, HasSubstr("n_layer"));

  json = nlohmann::json::parse(good);
  json["kind"] = "classifier";
  write_file(config, json.dump());
  EXPECT_THAT(error_of<std::runtime_error>([&] { read_model_kind(dir); }), HasSubstr("kind"));

  json = nlohmann::json::parse(good);
  json.erase("format");
  write_file(config, json.dump());
  EXPECT_THAT(error_of<std::runtime_error>([&] { read_model_config(dir); }), HasSubstr("format"));
}

TEST_F(ModelDirTest, TruncatedWeightsGiveAnErrorWithThePath) {
  const auto dir = testing::scratch_dir("model_dir_truncated");
  Transformer model(small_gpt2());
  save_model(dir, *model, small_gpt2(), "lm");
  const auto weights = dir / "model.pt";
  const std::string bytes = read_file(weights);
  for (const size_t keep : {bytes.size() / 2, size_t{100}, size_t{0}}) {
    write_file(weights, bytes.substr(0, keep));
    EXPECT_THAT(error_of<std::runtime_error>([&] { load_transformer(dir, torch::kCPU); }), HasSubstr(weights.string()))
        << "kept " << keep << " bytes";
  }
}

TEST_F(ModelDirTest, ShapeMismatchAndWrongNamesNameTheParameter) {
  const auto dir = testing::scratch_dir("model_dir_mismatch");
  Transformer model(small_gpt2());
  save_model(dir, *model, small_gpt2(), "lm");
  const auto weights = (dir / "model.pt").string();

  Transformer wider(small_gpt2().n_embd(32));
  auto message = error_of<std::runtime_error>([&] { load_weights(*wider, weights, torch::kCPU); });
  EXPECT_THAT(message, HasSubstr(weights));
  EXPECT_THAT(message, HasSubstr("wte.weight"));
  EXPECT_THAT(message, HasSubstr("shape"));

  Transformer deeper(small_gpt2().n_layer(3));
  message = error_of<std::runtime_error>([&] { load_weights(*deeper, weights, torch::kCPU); });
  EXPECT_THAT(message, HasSubstr("missing parameter \"h.2."));

  Transformer shallower(small_gpt2().n_layer(1));
  message = error_of<std::runtime_error>([&] { load_weights(*shallower, weights, torch::kCPU); });
  EXPECT_THAT(message, HasSubstr("unexpected parameter \"h.1."));

  // A failed load leaves the module unchanged.
  auto before = wider->named_parameters()["ln_f.weight"].clone();
  EXPECT_TRUE(torch::equal(before, wider->named_parameters()["ln_f.weight"]));
}

}  // namespace
}  // namespace nurture
