// Hugging Face model directories against the real library: tiny random models that transformers
// wrote with save_pretrained (tests/fixtures/hf/models/, tools/hf/make_fixtures.py) load as
// nurture models and compute transformers' log-probs (1e-4), greedy continuations and rewards;
// both config spellings read alike; what nurture cannot compute exactly is refused with the file
// and the key; saving and loading again gives the same logits, sharded and in bf16.
#include "modules/model/hf_format.h"

#include <gmock/gmock.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "modules/core/safetensors.h"
#include "modules/generation/sampling.h"
#include "modules/model/model_dir.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using namespace nurture::testing;
namespace fs = std::filesystem;
using json = nlohmann::json;

fs::path hf_model_fixture(const std::string& name) { return source_dir() / "tests" / "fixtures" / "hf" / "models" / name; }

json read_json(const fs::path& file) {
  std::ifstream in(file);
  return json::parse(in);
}

torch::Tensor ids_tensor(const json& rows) {
  std::vector<torch::Tensor> out;
  for (const auto& row : rows) out.push_back(torch::tensor(row.get<std::vector<int64_t>>(), torch::kLong));
  return torch::stack(out);
}

// log p(ids[t+1] | ids[..t]) -> [B, T-1]
torch::Tensor next_token_logprobs(Transformer& model, const torch::Tensor& ids) {
  auto logits = model->forward(ids);
  return torch::log_softmax(logits, -1).narrow(1, 0, ids.size(1) - 1).gather(-1, ids.narrow(1, 1, ids.size(1) - 1).unsqueeze(-1)).squeeze(-1);
}

// A copy of a fixture directory whose config.json `edit` changes.
fs::path edited_copy(const std::string& name, const std::string& to, const std::function<void(json&)>& edit) {
  const fs::path dir = scratch_dir(to);
  for (const auto& entry : fs::directory_iterator(hf_model_fixture(name)))
    fs::copy_file(entry.path(), dir / entry.path().filename(), fs::copy_options::overwrite_existing);
  json config = read_json(dir / "config.json");
  edit(config);
  write_file(dir / "config.json", config.dump(2));
  return dir;
}

class HfFormatTest : public Seeded {};

TEST_F(HfFormatTest, EveryArchitectureComputesWhatTransformersComputes) {
  torch::NoGradGuard no_grad;
  for (const std::string name : {"gpt2", "llama", "mistral", "qwen2", "qwen3"}) {
    SCOPED_TRACE(name);
    const json reference = read_json(hf_model_fixture(name) / "reference.json");
    ASSERT_TRUE(is_hf_model_dir(hf_model_fixture(name)));
    const HfModelConfig config = read_hf_config(hf_model_fixture(name));
    EXPECT_EQ(config.model_type, name);
    EXPECT_EQ(config.kind, "lm");
    EXPECT_EQ(config.eos_token_id, 2);
    Transformer model = load_transformer(hf_model_fixture(name), torch::kCPU, torch::kFloat32);
    model->eval();
    EXPECT_EQ(model->wte->weight.scalar_type(), torch::kFloat32);  // bf16 weights are read into fp32
    EXPECT_EQ(load_transformer(hf_model_fixture(name), torch::kCPU)->wte->weight.scalar_type(), config.dtype);

    std::vector<torch::Tensor> rows;
    for (const auto& row : reference["logprobs"]) rows.push_back(torch::tensor(row.get<std::vector<double>>(), torch::kFloat));
    const auto theirs = torch::stack(rows);
    const auto ours = next_token_logprobs(model, ids_tensor(reference["ids"]));
    const double worst = (ours - theirs).abs().max().item<double>();
    std::cout << "[hf] " << name << ": worst log-prob difference to transformers " << worst << "\n";
    EXPECT_LT(worst, 1e-4);
    EXPECT_GT(theirs.std().item<double>(), 0.3);  // far from uniform: a wrong mapping would show

    // Greedy continuations, with the KV cache and without.
    const auto prompt = ids_tensor(reference["greedy_prompt"]);
    std::vector<std::vector<int64_t>> prompts;
    for (int64_t b = 0; b < prompt.size(0); ++b) prompts.push_back(std::vector<int64_t>(prompt[b].data_ptr<int64_t>(), prompt[b].data_ptr<int64_t>() + prompt.size(1)));
    for (bool cache : {true, false}) {
      const Generation g = generate(model, prompts, SamplingOptions().temperature(0).max_new_tokens(8).use_cache(cache));
      EXPECT_TRUE(torch::equal(g.response, ids_tensor(reference["greedy"]))) << "cache " << cache << "\n" << g.response;
    }
  }
}

TEST_F(HfFormatTest, TheArchitecturesTakeTheirOwnOptions) {
  const auto llama = read_hf_config(hf_model_fixture("llama")).options;
  EXPECT_EQ(llama.rope_scaling(), RopeScaling::kLlama3);
  EXPECT_EQ(llama.rope_factor(), 8.0);
  EXPECT_EQ(llama.rope_original_context(), 16);
  EXPECT_EQ(llama.rope_theta(), 500000.0);
  EXPECT_EQ(llama.n_kv_head(), 2);
  EXPECT_FALSE(llama.tie_embeddings());
  const auto qwen2 = read_hf_config(hf_model_fixture("qwen2"));
  EXPECT_TRUE(qwen2.options.qkv_bias());
  EXPECT_FALSE(qwen2.options.bias());
  EXPECT_TRUE(qwen2.options.tie_embeddings());
  EXPECT_EQ(qwen2.dtype, torch::kBFloat16);
  const auto qwen3 = read_hf_config(hf_model_fixture("qwen3")).options;
  EXPECT_TRUE(qwen3.qk_norm());
  EXPECT_EQ(resolved_head_dim(qwen3), 16);
  EXPECT_EQ(qwen3.n_embd(), 32);
  const auto gpt2 = read_hf_config(hf_model_fixture("gpt2")).options;
  EXPECT_EQ(gpt2.position(), PositionKind::kLearned);
  EXPECT_EQ(gpt2.block_size(), 64);
  EXPECT_EQ(resolved_mlp_hidden(gpt2), 128);  // n_inner null = 4 * n_embd
  for (const auto& [name, options] : std::vector<std::pair<std::string, TransformerOptions>>{
           {"gpt2", gpt2}, {"llama", llama}, {"qwen2", qwen2.options}, {"qwen3", qwen3}}) {
    EXPECT_EQ(hf_model_type_of(options), name);
  }
  std::string why;
  EXPECT_EQ(hf_model_type_of(preset("gpt2_tiny").position(PositionKind::kRope), &why), "");
  EXPECT_THAT(why, HasSubstr("no Hugging Face architecture"));
}

TEST_F(HfFormatTest, TransformersFourSpellingReadsAlike) {
  const fs::path dir = edited_copy("llama", "hf_llama_4x", [](json& c) {
    json rope = c["rope_parameters"];
    c.erase("rope_parameters");
    c["rope_theta"] = rope["rope_theta"];
    rope.erase("rope_theta");
    rope.erase("rope_type");
    rope["type"] = "llama3";  // the oldest spelling of rope_type
    c["rope_scaling"] = rope;
    c.erase("dtype");
    c["torch_dtype"] = "bfloat16";
  });
  const HfModelConfig four = read_hf_config(dir), five = read_hf_config(hf_model_fixture("llama"));
  EXPECT_EQ(to_json(four.options), to_json(five.options));
  EXPECT_EQ(four.dtype, torch::kBFloat16);
}

TEST_F(HfFormatTest, RewardModelsScoreAsTransformersDoes) {
  torch::NoGradGuard no_grad;
  const json reference = read_json(hf_model_fixture("llama_reward") / "reference.json");
  EXPECT_EQ(read_model_kind(hf_model_fixture("llama_reward")), "reward");
  RewardModel reward = load_reward_model(hf_model_fixture("llama_reward"), torch::kCPU);
  reward->eval();
  const auto rewards = reward->forward(ids_tensor(reference["ids"]), ids_tensor(reference["attention_mask"]));
  const auto theirs = torch::tensor(reference["rewards"].get<std::vector<double>>(), torch::kFloat);
  EXPECT_LT((rewards - theirs).abs().max().item<double>(), 1e-4) << rewards << theirs;
  EXPECT_EQ(reward->score->bias.item<double>(), 0.0);

  // The same checkpoint as a language model's backbone and as a value model's.
  Transformer backbone = load_transformer(hf_model_fixture("llama_reward"), torch::kCPU);
  ValueModel value = load_value_model(hf_model_fixture("llama_reward"), torch::kCPU);
  for (const auto& p : reward->transformer->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), backbone->named_parameters()[p.key()])) << p.key();
    EXPECT_TRUE(torch::equal(p.value(), value->transformer->named_parameters()[p.key()])) << p.key();
  }
  // A language model gives a reward model its backbone.
  RewardModel from_lm = load_reward_model(hf_model_fixture("llama"), torch::kCPU);
  Transformer lm = load_transformer(hf_model_fixture("llama"), torch::kCPU);
  EXPECT_TRUE(torch::equal(from_lm->transformer->wte->weight, lm->wte->weight));
}

TEST_F(HfFormatTest, WhatNurtureCannotComputeIsRefusedNamingTheKey) {
  const fs::path sliding = hf_model_fixture("mistral_sliding_window");
  EXPECT_THAT(error_of<std::runtime_error>([&] { read_hf_config(sliding); }),
              AllOf(HasSubstr((sliding / "config.json").string()), HasSubstr("sliding_window: 16 is shorter than max_position_embeddings (64)")));
  const std::vector<std::pair<std::function<void(json&)>, std::string>> cases = {
      {[](json& c) { c["model_type"] = "bert"; }, "model_type: \"bert\" is not supported (supported: gpt2, llama, mistral, qwen2, qwen3)"},
      {[](json& c) { c["rope_parameters"]["rope_type"] = "yarn"; }, "rope_parameters.rope_type: \"yarn\" is not supported"},
      {[](json& c) { c["hidden_act"] = "gelu"; }, "hidden_act: \"gelu\" is not supported (supported: silu)"},
      {[](json& c) { c["architectures"] = {"LlamaForSequenceClassification"}; c["id2label"] = {{"0", "a"}, {"1", "b"}}; }, "id2label: 2 labels: a reward model has one"},
      {[](json& c) { c["hidden_size"] = "wide"; }, "hidden_size: expected an integer, got \"wide\""},
      {[](json& c) { c.erase("num_hidden_layers"); }, "num_hidden_layers: missing"},
      {[](json& c) { c["dtype"] = "float8_e4m3fn"; }, "dtype: \"float8_e4m3fn\" is not supported"},
      {[](json& c) { c["attention_bias"] = true; }, "attention_bias: biases on the attention but not the MLP"},
      {[](json& c) { c["num_key_value_heads"] = 3; }, "must be divisible by n_kv_head (3)"},
  };
  for (const auto& [edit, message] : cases) {
    const fs::path dir = edited_copy("llama", "hf_refused", edit);
    EXPECT_THAT(error_of<std::runtime_error>([&] { read_hf_config(dir); }),
                AllOf(HasSubstr((dir / "config.json").string()), HasSubstr(message)));
  }
}

TEST_F(HfFormatTest, BadWeightsAreRefusedBeforeAnyIsCopied) {
  const fs::path good = hf_model_fixture("llama");
  SafetensorsFile file(good / "model.safetensors");
  auto write_variant = [&](const std::string& to, const std::function<void(std::vector<std::pair<std::string, torch::Tensor>>&)>& edit) {
    const fs::path dir = edited_copy("llama", to, [](json&) {});
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (const auto& entry : file.entries()) tensors.emplace_back(entry.first, file.tensor(entry.first).clone());
    edit(tensors);
    save_safetensors(dir / "model.safetensors", tensors);
    return dir;
  };
  const fs::path missing = write_variant("hf_missing", [](auto& t) {
    t.erase(std::remove_if(t.begin(), t.end(), [](const auto& e) { return e.first == "model.layers.1.self_attn.k_proj.weight"; }), t.end());
  });
  const fs::path shaped = write_variant("hf_shaped", [](auto& t) {
    for (auto& e : t) if (e.first == "model.norm.weight") e.second = torch::ones({31});
  });
  const fs::path extra = write_variant("hf_extra", [](auto& t) { t.emplace_back("model.layers.2.mlp.up_proj.weight", torch::ones({2})); });
  const std::vector<std::pair<fs::path, std::string>> cases = {
      {missing, "missing tensor \"model.layers.1.self_attn.k_proj.weight\""},
      {shaped, "tensor \"model.norm.weight\" has shape [31] but config.json makes it [32]"},
      {extra, "unexpected tensor \"model.layers.2.mlp.up_proj.weight\""},
  };
  Transformer model(read_hf_config(good).options);
  const auto before = model->wte->weight.clone();
  for (const auto& [dir, message] : cases) {
    EXPECT_THAT(error_of<std::runtime_error>([&] { load_hf_weights(*model, dir, read_hf_config(dir), "lm"); }),
                AllOf(HasSubstr(dir.string()), HasSubstr(message)));
    EXPECT_TRUE(torch::equal(model->wte->weight, before));  // unchanged
  }
  const fs::path none = scratch_dir("hf_no_weights");
  fs::copy_file(good / "config.json", none / "config.json", fs::copy_options::overwrite_existing);
  EXPECT_THAT(error_of<std::runtime_error>([&] { load_transformer(none, torch::kCPU); }),
              HasSubstr("no model.safetensors and no model.safetensors.index.json"));
}

TEST_F(HfFormatTest, SavedDirectoriesLoadBackToTheSameLogits) {
  torch::NoGradGuard no_grad;
  const auto idx = torch::randint(3, 96, {2, 9});
  for (const std::string name : {"gpt2", "llama", "qwen2", "qwen3"}) {
    SCOPED_TRACE(name);
    Transformer model = load_transformer(hf_model_fixture(name), torch::kCPU, torch::kFloat32);
    const auto logits = model->forward(idx);
    const fs::path dir = scratch_dir("hf_saved_" + name);
    save_model(dir, *model, model->options, "lm", ModelFormat::kAuto);
    EXPECT_EQ(model_format_of(dir), ModelFormat::kHuggingFace);
    EXPECT_TRUE(fs::exists(dir / "model.safetensors"));
    EXPECT_TRUE(torch::equal(load_transformer(dir, torch::kCPU)->forward(idx), logits));
    EXPECT_EQ(to_json(read_hf_config(dir).options), to_json(model->options));

    // Sharded (every tensor over the limit is a shard of its own), then in bf16.
    save_hf_model(dir, *model, model->options, "lm", HfSaveOptions{c10::nullopt, 4096});
    EXPECT_FALSE(fs::exists(dir / "model.safetensors"));  // the single file of the first save is gone
    EXPECT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
    EXPECT_TRUE(torch::equal(load_transformer(dir, torch::kCPU)->forward(idx), logits));
    EXPECT_EQ(read_hf_config(dir).dtype, torch::kFloat32);  // the module's own dtype
    save_hf_model(dir, *model, model->options, "lm", HfSaveOptions{torch::kBFloat16});
    EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));
    EXPECT_EQ(SafetensorsFile(dir / "model.safetensors").entries().begin()->second.dtype, torch::kBFloat16);
    EXPECT_EQ(read_hf_config(dir).dtype, torch::kBFloat16);
    const auto bf16 = load_transformer(dir, torch::kCPU, torch::kFloat32)->forward(idx);
    if (name == "qwen2") {  // stored in bf16 by transformers: bf16 again loses nothing
      EXPECT_TRUE(torch::equal(bf16, logits));
    } else {
      EXPECT_LT((bf16 - logits).abs().max().item<double>(), 0.25);
      EXPECT_GT((bf16 - logits).abs().max().item<double>(), 0.0);
    }
  }
  // A reward model as *ForSequenceClassification; its score bias, which that head lacks, must be 0.
  RewardModel reward = load_reward_model(hf_model_fixture("llama_reward"), torch::kCPU);
  const fs::path dir = scratch_dir("hf_saved_reward");
  save_model(dir, *reward, reward->options, "reward", ModelFormat::kAuto);
  EXPECT_EQ(read_json(dir / "config.json")["architectures"][0], "LlamaForSequenceClassification");
  EXPECT_TRUE(torch::equal(load_reward_model(dir, torch::kCPU)->forward(idx), reward->forward(idx)));
  reward->score->bias.fill_(0.5);
  EXPECT_THAT(error_of<std::invalid_argument>([&] { save_hf_model(dir, *reward, reward->options, "reward"); }),
              HasSubstr("score.bias is 0.5"));
  // A shape no Hugging Face architecture has stays in nurture's format.
  const auto rope_gpt2 = preset("gpt2_tiny").position(PositionKind::kRope).vocab_size(96);
  Transformer odd(rope_gpt2);
  const fs::path own = scratch_dir("hf_saved_own");
  save_model(own, *odd, rope_gpt2, "lm", ModelFormat::kAuto);
  EXPECT_EQ(model_format_of(own), ModelFormat::kNurture);
  EXPECT_TRUE(fs::exists(own / "model.pt"));
}

}  // namespace
}  // namespace nurture
