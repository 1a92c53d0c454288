// Hugging Face model directories: one converter per model_type (configuration keys and the weight
// table), then loading and saving through the safetensors reader and writer.
#include "modules/model/hf_format.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "modules/core/files.h"
#include "modules/core/json_file.h"
#include "modules/core/safetensors.h"

namespace nurture {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr const char* kWeightsFile = "model.safetensors";

std::string comma_list(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

// Typed reads of config.json keys, with messages naming the file and the key.
class ConfigReader {
 public:
  ConfigReader(const json& config, std::string file) : config_(config), file_(std::move(file)) {}

  bool has(const std::string& key) const { return config_.contains(key) && !config_[key].is_null(); }
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw std::runtime_error(file_ + ": " + key + ": " + what);
  }
  int64_t integer(const std::string& key) const {
    if (!has(key)) fail(key, "missing");
    if (!config_[key].is_number_integer()) fail(key, "expected an integer, got " + config_[key].dump());
    return config_[key].get<int64_t>();
  }
  int64_t integer(const std::string& key, int64_t fallback) const { return has(key) ? integer(key) : fallback; }
  double number(const json& object, const std::string& key, const std::string& path) const {
    if (!object.contains(key) || object[key].is_null()) fail(path + key, "missing");
    if (!object[key].is_number()) fail(path + key, "expected a number, got " + object[key].dump());
    return object[key].get<double>();
  }
  double number(const std::string& key, double fallback) const {
    return has(key) ? number(config_, key, "") : fallback;
  }
  bool boolean(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!config_[key].is_boolean()) fail(key, "expected true or false, got " + config_[key].dump());
    return config_[key].get<bool>();
  }
  std::string string(const std::string& key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    if (!config_[key].is_string()) fail(key, "expected a string, got " + config_[key].dump());
    return config_[key].get<std::string>();
  }
  // The value must be `expected` (or absent) for nurture to compute what transformers does.
  void require_bool(const std::string& key, bool expected, const std::string& why) const {
    if (boolean(key, expected) != expected) fail(key, std::string(expected ? "false" : "true") + " is not supported: " + why);
  }
  const json& raw() const { return config_; }
  const std::string& file() const { return file_; }

 private:
  const json& config_;
  std::string file_;
};

torch::ScalarType dtype_of(const ConfigReader& c) {
  const std::string key = c.has("dtype") ? "dtype" : "torch_dtype";  // 5.x : 4.x
  const std::string name = c.string(key, "float32");
  if (name == "float32") return torch::kFloat32;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float16") return torch::kFloat16;
  if (name == "float64") return torch::kFloat64;
  c.fail(key, "\"" + name + "\" is not supported (supported: float32, bfloat16, float16, float64)");
}

std::string dtype_name(torch::ScalarType dtype) {
  if (dtype == torch::kFloat32) return "float32";
  if (dtype == torch::kBFloat16) return "bfloat16";
  if (dtype == torch::kFloat16) return "float16";
  if (dtype == torch::kFloat64) return "float64";
  throw std::invalid_argument("Hugging Face weights are float32, bfloat16, float16 or float64, not " +
                              std::string(c10::toString(dtype)));
}

// A token id of config.json: an integer, null, or (eos_token_id) a list whose first entry is taken.
int64_t token_id(const ConfigReader& c, const std::string& key) {
  if (!c.has(key)) return -1;
  const json& v = c.raw()[key];
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int64_t>();
  c.fail(key, "expected a token id, got " + v.dump());
}

// ---------------------------------------------------------------------------------------------
// Converters: configuration
// ---------------------------------------------------------------------------------------------

TransformerOptions gpt2_options(const ConfigReader& c) {
  const std::string act = c.string("activation_function", "gelu_new");
  if (act != "gelu_new" && act != "gelu_pytorch_tanh") {
    c.fail("activation_function", "\"" + act + "\" is not supported (supported: gelu_new, gelu_pytorch_tanh)");
  }
  c.require_bool("scale_attn_weights", true, "nurture always scales attention by 1/sqrt(head dim)");
  c.require_bool("scale_attn_by_inverse_layer_idx", false, "nurture has no per-layer attention scale");
  c.require_bool("add_cross_attention", false, "nurture models are decoder-only");
  return TransformerOptions()
      .vocab_size(c.integer("vocab_size"))
      .block_size(c.integer("n_positions"))
      .n_layer(c.integer("n_layer"))
      .n_head(c.integer("n_head"))
      .n_embd(c.integer("n_embd"))
      .mlp_hidden(c.integer("n_inner", 0))
      .norm(NormKind::kLayerNorm)
      .norm_eps(c.number("layer_norm_epsilon", 1e-5))
      .mlp(MlpKind::kGelu)
      .position(PositionKind::kLearned)
      .bias(true)
      .tie_embeddings(c.boolean("tie_word_embeddings", true))
      .dropout(0.0);
}

// RoPE: 5.x's rope_parameters {rope_type, rope_theta, factor, ...}, or 4.x's rope_theta and
// rope_scaling {rope_type | type, factor, ...}.
void read_rope(const ConfigReader& c, TransformerOptions& o) {
  const bool v5 = c.has("rope_parameters");
  const std::string path = v5 ? "rope_parameters." : "rope_scaling.";
  const json none = json::object();
  const json& p = v5 ? c.raw()["rope_parameters"] : (c.has("rope_scaling") ? c.raw()["rope_scaling"] : none);
  if (!p.is_object()) c.fail(v5 ? "rope_parameters" : "rope_scaling", "expected an object, got " + p.dump());
  o.rope_theta(v5 ? c.number(p, "rope_theta", path) : c.number("rope_theta", 10000.0));
  std::string type = "default";
  for (const char* key : {"rope_type", "type"}) {
    if (p.contains(key) && p[key].is_string()) {
      type = p[key].get<std::string>();
      break;
    }
  }
  if (type == "default") return;
  if (type == "linear") {
    o.rope_scaling(RopeScaling::kLinear).rope_factor(c.number(p, "factor", path));
  } else if (type == "llama3") {
    o.rope_scaling(RopeScaling::kLlama3)
        .rope_factor(c.number(p, "factor", path))
        .rope_low_freq_factor(c.number(p, "low_freq_factor", path))
        .rope_high_freq_factor(c.number(p, "high_freq_factor", path))
        .rope_original_context(static_cast<int64_t>(c.number(p, "original_max_position_embeddings", path)));
  } else {
    c.fail(path + "rope_type", "\"" + type + "\" is not supported (supported: default, linear, llama3)");
  }
}

// A sliding window shorter than the context attends differently from nurture's full attention.
void refuse_sliding_window(const ConfigReader& c, bool used) {
  if (!used || !c.has("sliding_window")) return;
  const int64_t window = c.integer("sliding_window"), context = c.integer("max_position_embeddings");
  if (window < context) {
    c.fail("sliding_window", std::to_string(window) + " is shorter than max_position_embeddings (" +
                                 std::to_string(context) +
                                 "): nurture attends to the whole context and would compute something else");
  }
}

TransformerOptions llama_family_options(const std::string& type, const ConfigReader& c) {
  const std::string act = c.string("hidden_act", "silu");
  if (act != "silu") c.fail("hidden_act", "\"" + act + "\" is not supported (supported: silu)");
  if (c.has("layer_types")) {
    for (const auto& layer : c.raw()["layer_types"]) {
      if (layer != "full_attention")
        c.fail("layer_types", layer.dump() + " is not supported (supported: \"full_attention\")");
    }
  }
  const int64_t heads = c.integer("num_attention_heads");
  TransformerOptions o = TransformerOptions()
                             .vocab_size(c.integer("vocab_size"))
                             .block_size(c.integer("max_position_embeddings"))
                             .n_layer(c.integer("num_hidden_layers"))
                             .n_head(heads)
                             .n_kv_head(c.integer("num_key_value_heads", heads))
                             .n_embd(c.integer("hidden_size"))
                             .mlp_hidden(c.integer("intermediate_size"))
                             .norm(NormKind::kRMSNorm)
                             .norm_eps(c.number("rms_norm_eps", 1e-6))
                             .mlp(MlpKind::kSwiGLU)
                             .position(PositionKind::kRope)
                             .bias(false)
                             .tie_embeddings(c.boolean("tie_word_embeddings", false))
                             .dropout(0.0);
  const int64_t head_dim = c.integer("head_dim", 0);
  if (head_dim > 0 && head_dim * heads != o.n_embd()) o.head_dim(head_dim);
  read_rope(c, o);
  if (type == "llama" || type == "mistral") {
    const bool attention_bias = c.boolean("attention_bias", false), mlp_bias = c.boolean("mlp_bias", false);
    if (attention_bias != mlp_bias) {
      c.fail("attention_bias", "biases on the attention but not the MLP (or the reverse) are not supported");
    }
    o.bias(attention_bias);
  }
  if (type == "mistral") refuse_sliding_window(c, true);
  if (type == "qwen2" || type == "qwen3") refuse_sliding_window(c, c.boolean("use_sliding_window", false));
  if (type == "qwen2") o.qkv_bias(true);
  if (type == "qwen3") {
    c.require_bool("attention_bias", false, "Qwen3 with attention biases is not supported");
    o.qk_norm(true);
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// Converters: weight tables
// ---------------------------------------------------------------------------------------------

std::vector<HfWeightSlot> gpt2_slots(const TransformerOptions& o, const std::string& p /* HF prefix */) {
  std::vector<HfWeightSlot> s = {{"wte.weight", p + "wte.weight"}, {"wpe.weight", p + "wpe.weight"}};
  for (int64_t i = 0; i < o.n_layer(); ++i) {
    const std::string n = "h." + std::to_string(i) + ".", h = p + n;
    for (const char* norm : {"ln_1", "ln_2"}) {
      s.push_back({n + norm + ".weight", h + norm + ".weight"});
      s.push_back({n + norm + ".bias", h + norm + ".bias"});
    }
    for (const char* linear : {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}) {
      s.push_back({n + linear + ".weight", h + linear + ".weight", 0, -1, /*transpose=*/true});
      s.push_back({n + linear + ".bias", h + linear + ".bias"});
    }
  }
  s.push_back({"ln_f.weight", p + "ln_f.weight"});
  s.push_back({"ln_f.bias", p + "ln_f.bias"});
  return s;
}

std::vector<HfWeightSlot> llama_slots(const TransformerOptions& o) {
  const int64_t D = resolved_head_dim(o), q = o.n_head() * D, kv = resolved_n_kv_head(o) * D;
  const bool qkv_bias = o.bias() || o.qkv_bias();
  std::vector<HfWeightSlot> s = {{"wte.weight", "model.embed_tokens.weight"}};
  for (int64_t i = 0; i < o.n_layer(); ++i) {
    const std::string n = "h." + std::to_string(i) + ".", h = "model.layers." + std::to_string(i) + ".";
    s.push_back({n + "ln_1.weight", h + "input_layernorm.weight"});
    const std::vector<std::pair<std::string, std::pair<int64_t, int64_t>>> qkv = {
        {"q_proj", {0, q}}, {"k_proj", {q, kv}}, {"v_proj", {q + kv, kv}}};
    for (const auto& [proj, rows] : qkv) {
      s.push_back({n + "attn.c_attn.weight", h + "self_attn." + proj + ".weight", rows.first, rows.second});
      if (qkv_bias) s.push_back({n + "attn.c_attn.bias", h + "self_attn." + proj + ".bias", rows.first, rows.second});
    }
    if (o.qk_norm()) {
      s.push_back({n + "attn.q_norm.weight", h + "self_attn.q_norm.weight"});
      s.push_back({n + "attn.k_norm.weight", h + "self_attn.k_norm.weight"});
    }
    s.push_back({n + "ln_2.weight", h + "post_attention_layernorm.weight"});
    const std::vector<std::pair<std::string, std::string>> linears = {{"attn.c_proj", "self_attn.o_proj"},
                                                                      {"mlp.c_gate", "mlp.gate_proj"},
                                                                      {"mlp.c_fc", "mlp.up_proj"},
                                                                      {"mlp.c_proj", "mlp.down_proj"}};
    for (const auto& [ours, theirs] : linears) {
      s.push_back({n + ours + ".weight", h + theirs + ".weight"});
      if (o.bias()) s.push_back({n + ours + ".bias", h + theirs + ".bias"});
    }
  }
  s.push_back({"ln_f.weight", "model.norm.weight"});
  return s;
}

// HF names transformers tolerates in a checkpoint without using them: GPT-2's causal-mask buffers
// and older Llama checkpoints' RoPE buffers.
bool ignorable(const std::string& name) {
  auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends_with(".attn.bias") || ends_with(".attn.masked_bias") || ends_with("rotary_emb.inv_freq");
}

// Where each HF tensor name is: the files of the directory, mapped and validated.
struct HfWeightFiles {
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::map<std::string, const SafetensorsFile*> where;
};

HfWeightFiles open_weights(const fs::path& dir) {
  HfWeightFiles out;
  const fs::path index = dir / kIndexFile;
  if (fs::exists(index)) {
    const json j = read_json_file(index);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw std::runtime_error(index.string() + ": weight_map: missing or not an object");
    std::map<std::string, const SafetensorsFile*> by_file;
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) throw std::runtime_error(index.string() + ": weight_map." + name + ": expected a file name");
      const std::string shard = file.get<std::string>();
      if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
        throw std::runtime_error(index.string() + ": weight_map." + name + ": \"" + shard + "\" is not a file in the directory");
      if (by_file.count(shard) == 0) {
        out.files.push_back(std::make_unique<SafetensorsFile>(dir / shard));
        by_file[shard] = out.files.back().get();
      }
      if (!by_file[shard]->contains(name))
        throw std::runtime_error((dir / shard).string() + ": has no tensor \"" + name + "\", which " + index.string() +
                                 " places there");
      out.where[name] = by_file[shard];
    }
    // A shard's tensor the index does not list would be silently ignored: refuse it.
    for (const auto& file : out.files) {
      for (const auto& entry : file->entries()) {
        if (out.where.count(entry.first) == 0)
          throw std::runtime_error(file->path().string() + ": tensor \"" + entry.first + "\" is not in " + index.string());
      }
    }
    return out;
  }
  const fs::path single = dir / kWeightsFile;
  if (!fs::exists(single)) {
    throw std::runtime_error(dir.string() + ": no " + kWeightsFile + " and no " + kIndexFile +
                             " (a Hugging Face model directory holds its weights in safetensors; convert "
                             "pytorch_model.bin with transformers' save_pretrained)");
  }
  out.files.push_back(std::make_unique<SafetensorsFile>(single));
  for (const auto& entry : out.files.back()->entries()) out.where[entry.first] = out.files.back().get();
  return out;
}

std::string shape_text(c10::IntArrayRef shape) {
  std::ostringstream out;
  out << shape;
  return out.str();
}

// The part of nurture's tensor a slot fills, as the HF tensor is shaped.
torch::Tensor slot_view(const torch::Tensor& tensor, const HfWeightSlot& slot) {
  torch::Tensor view = slot.rows < 0 ? tensor : tensor.narrow(0, slot.begin, slot.rows);
  return slot.transpose ? view.t() : view;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

const std::vector<std::string>& hf_model_types() {
  static const std::vector<std::string> types = {"gpt2", "llama", "mistral", "qwen2", "qwen3"};
  return types;
}

bool is_hf_model_dir(const fs::path& dir) {
  const fs::path file = dir / "config.json";
  if (!fs::is_regular_file(file)) return false;
  try {
    const json j = read_json_file(file);
    return j.is_object() && j.contains("model_type") && !j.contains("format");
  } catch (const std::runtime_error&) {
    return false;  // the reader of the directory's own kind names what is wrong
  }
}

HfModelConfig read_hf_config(const fs::path& dir) {
  const fs::path file = dir / "config.json";
  const json j = read_json_file(file);
  if (!j.is_object()) throw std::runtime_error(file.string() + ": expected a JSON object");
  const ConfigReader c(j, file.string());
  HfModelConfig config;
  config.model_type = c.string("model_type", "");
  const auto& types = hf_model_types();
  if (std::find(types.begin(), types.end(), config.model_type) == types.end()) {
    c.fail("model_type", "\"" + config.model_type + "\" is not supported (supported: " + comma_list(types) + ")");
  }
  // The head: architectures[0] ends in ForCausalLM (or LMHeadModel) or ForSequenceClassification.
  config.kind = "lm";
  if (c.has("architectures")) {
    const json& a = j["architectures"];
    if (!a.is_array() || a.empty() || !a[0].is_string()) c.fail("architectures", "expected a list of class names");
    const std::string arch = a[0].get<std::string>();
    auto ends_with = [&](const std::string& s) {
      return arch.size() >= s.size() && arch.compare(arch.size() - s.size(), s.size(), s) == 0;
    };
    if (ends_with("ForSequenceClassification")) {
      config.kind = "reward";
      const size_t labels = c.has("id2label") && j["id2label"].is_object() ? j["id2label"].size() : 1;
      if (c.integer("num_labels", static_cast<int64_t>(labels)) != 1) {
        c.fail("id2label", std::to_string(labels) + " labels: a reward model has one");
      }
    } else if (!ends_with("ForCausalLM") && !ends_with("LMHeadModel")) {
      c.fail("architectures", "\"" + arch + "\" is not supported (a *ForCausalLM or *ForSequenceClassification)");
    }
  }
  try {
    config.options = config.model_type == "gpt2" ? gpt2_options(c) : llama_family_options(config.model_type, c);
    // A sequence classifier has no language-model head: its backbone's output is wte's.
    if (config.kind == "reward") config.options.tie_embeddings(true);
    validate(config.options);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(file.string() + ": " + e.what());
  }
  config.dtype = dtype_of(c);
  config.bos_token_id = token_id(c, "bos_token_id");
  config.eos_token_id = token_id(c, "eos_token_id");
  config.pad_token_id = token_id(c, "pad_token_id");
  return config;
}

std::string hf_model_type_of(const TransformerOptions& o, std::string* why) {
  auto none = [&](const std::string& reason) {
    if (why != nullptr) *why = reason;
    return std::string();
  };
  if (o.position() == PositionKind::kLearned) {
    if (o.norm() != NormKind::kLayerNorm || o.mlp() != MlpKind::kGelu || !o.bias())
      return none("learned positions go with GPT-2's LayerNorm, GELU and biases in Hugging Face's gpt2");
    if (resolved_n_kv_head(o) != o.n_head() || o.head_dim() > 0 || o.qk_norm())
      return none("gpt2 has neither grouped-query attention, another head_dim nor q/k norms");
    return "gpt2";
  }
  if (o.norm() != NormKind::kRMSNorm || o.mlp() != MlpKind::kSwiGLU)
    return none("rotary positions go with RMSNorm and SwiGLU in Hugging Face's llama, qwen2 and qwen3 (GPT-2's layout with rotary positions is no Hugging Face architecture)");
  if (o.qk_norm()) {
    if (o.bias() || o.qkv_bias()) return none("qwen3 (q/k norms) has no biases");
    return "qwen3";
  }
  if (o.qkv_bias() && !o.bias()) {
    if (o.rope_scaling() != RopeScaling::kNone) return none("qwen2 (q/k/v biases) takes no RoPE scaling here");
    return "qwen2";
  }
  return "llama";
}

// ---------------------------------------------------------------------------------------------
// Weights
// ---------------------------------------------------------------------------------------------

std::vector<HfWeightSlot> hf_weight_slots(const std::string& model_type, const TransformerOptions& o,
                                          const std::string& kind) {
  const bool gpt2 = model_type == "gpt2";
  std::vector<HfWeightSlot> slots = gpt2 ? gpt2_slots(o, "transformer.") : llama_slots(o);
  if (!o.tie_embeddings() && kind == "lm") slots.push_back({"lm_head.weight", "lm_head.weight"});
  if (gpt2 && o.position() != PositionKind::kLearned) throw std::invalid_argument("gpt2 needs learned positions");
  if (kind == "reward") {
    for (auto& slot : slots) slot.nurture = "transformer." + slot.nurture;
    slots.push_back({"score.weight", "score.weight"});
  } else if (kind != "lm") {
    throw std::invalid_argument("Hugging Face models are of kind \"lm\" or \"reward\", not \"" + kind + "\"");
  }
  return slots;
}

void load_hf_weights(torch::nn::Module& module, const fs::path& dir, const HfModelConfig& config,
                     const std::string& target_kind, bool backbone_only) {
  HfWeightFiles weights = open_weights(dir);
  // GPT-2 as OpenAI published it has no "transformer." prefix.
  std::string model_type = config.model_type;
  std::vector<HfWeightSlot> slots = hf_weight_slots(model_type, config.options, config.kind);
  if (model_type == "gpt2" && weights.where.count("transformer.wte.weight") == 0 && weights.where.count("wte.weight")) {
    for (auto& slot : slots) {
      if (slot.hf.compare(0, 12, "transformer.") == 0) slot.hf = slot.hf.substr(12);
    }
  }
  // The slots the module takes: all of them, or the backbone's with the reward model's prefix
  // moved to where this module has its backbone.
  std::set<std::string> unused;  // HF names present but not for this module
  std::vector<HfWeightSlot> wanted;
  const std::string backbone = "transformer.";
  for (HfWeightSlot slot : slots) {
    const bool in_backbone = config.kind == "lm" || slot.nurture.compare(0, backbone.size(), backbone) == 0;
    if (config.kind == "reward" && target_kind == "lm") {
      if (!in_backbone) {
        unused.insert(slot.hf);
        continue;
      }
      slot.nurture = slot.nurture.substr(backbone.size());
    } else if (config.kind == "lm" && target_kind == "reward") {
      if (!backbone_only) throw std::invalid_argument("load_hf_weights: an lm checkpoint gives a reward model its backbone only");
      slot.nurture = backbone + slot.nurture;
    }
    wanted.push_back(slot);
  }
  const std::string where = dir.string() + ": ";

  std::map<std::string, torch::Tensor> params;
  for (auto& item : module.named_parameters(/*recurse=*/true)) params[item.key()] = item.value();
  for (auto& item : module.named_buffers(/*recurse=*/true)) params[item.key()] = item.value();

  // Check everything before copying anything.
  std::set<std::string> filled, used;
  for (const auto& slot : wanted) {
    auto found = weights.where.find(slot.hf);
    if (found == weights.where.end())
      throw std::runtime_error(where + "missing tensor \"" + slot.hf + "\" (nurture's \"" + slot.nurture + "\")");
    auto target = params.find(slot.nurture);
    if (target == params.end())
      throw std::runtime_error(where + "tensor \"" + slot.hf + "\" has no place in the model (\"" + slot.nurture +
                               "\"; does config.json match the weights?)");
    const auto& entry = found->second->entries().at(slot.hf);
    const torch::Tensor view = slot_view(target->second, slot);
    if (c10::IntArrayRef(entry.shape) != view.sizes()) {
      throw std::runtime_error(found->second->path().string() + ": tensor \"" + slot.hf + "\" has shape " +
                               shape_text(entry.shape) + " but config.json makes it " + shape_text(view.sizes()));
    }
    if (!c10::isFloatingType(entry.dtype))
      throw std::runtime_error(found->second->path().string() + ": tensor \"" + slot.hf + "\" is not floating point");
    filled.insert(slot.nurture);
    used.insert(slot.hf);
  }
  for (const auto& [name, file] : weights.where) {
    if (used.count(name) || unused.count(name) || ignorable(name)) continue;
    if (name == "lm_head.weight" && config.options.tie_embeddings()) continue;  // a tied copy
    throw std::runtime_error(file->path().string() + ": unexpected tensor \"" + name + "\" (no " + config.model_type +
                             " model of this config.json has it)");
  }
  for (const auto& [name, tensor] : params) {
    if (filled.count(name)) continue;
    const bool head = name == "score.bias" || (backbone_only && name.compare(0, backbone.size(), backbone) != 0);
    if (!head) throw std::runtime_error(where + "nothing in the checkpoint for nurture's \"" + name + "\"");
  }

  torch::NoGradGuard no_grad;
  for (const auto& slot : wanted) {
    const SafetensorsFile* file = weights.where.at(slot.hf);
    slot_view(params.at(slot.nurture), slot).copy_(file->tensor(slot.hf));
    file->release(slot.hf);
  }
  if (!backbone_only && params.count("score.bias")) params.at("score.bias").zero_();
}

namespace {

using Shard = std::vector<std::pair<std::string, torch::Tensor>>;

// The slots' tensors in shards of at most `shard_bytes` (a tensor larger than that is a shard
// alone); `total` gets the bytes of all of them.
std::vector<Shard> plan_shards(const std::vector<HfWeightSlot>& slots, const std::map<std::string, torch::Tensor>& params,
                               torch::ScalarType dtype, int64_t shard_bytes, int64_t* total) {
  std::vector<Shard> shards(1);
  int64_t shard_size = 0;
  *total = 0;
  const int64_t element = static_cast<int64_t>(c10::elementSize(dtype));
  for (const auto& slot : slots) {
    auto found = params.find(slot.nurture);
    if (found == params.end()) throw std::invalid_argument("save_hf_model: the module has no \"" + slot.nurture + "\"");
    torch::Tensor view = slot_view(found->second, slot);
    const int64_t bytes = view.numel() * element;
    if (shard_size > 0 && shard_size + bytes > shard_bytes) {
      shards.emplace_back();
      shard_size = 0;
    }
    shards.back().emplace_back(slot.hf, view);
    shard_size += bytes;
    *total += bytes;
  }
  return shards;
}

// Writes model.safetensors, or numbered shards and their index; removes the weight files of an
// earlier save (another sharding, nurture's own model.pt), which would confuse a reader.
void write_hf_weights(const fs::path& dir, const std::vector<Shard>& shards, int64_t total, torch::ScalarType dtype) {
  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  std::set<std::string> written;
  if (shards.size() == 1) {
    save_safetensors(dir / kWeightsFile, shards[0], metadata, dtype);
    written.insert(kWeightsFile);
  } else {
    json index = {{"metadata", {{"total_size", total}}}, {"weight_map", json::object()}};
    const size_t n = shards.size();
    for (size_t i = 0; i < n; ++i) {
      char name[64];
      std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, n);
      save_safetensors(dir / name, shards[i], metadata, dtype);
      for (const auto& tensor : shards[i]) index["weight_map"][tensor.first] = name;
      written.insert(name);
    }
    write_file_atomic(dir / kIndexFile, index.dump(2) + "\n");
    written.insert(kIndexFile);
  }
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    const bool weights = name == kIndexFile || name == "model.pt" ||
                         (name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0);
    if (weights && written.count(name) == 0) fs::remove(entry.path(), error);
  }
}

// config.json's rope_parameters (5.x); the 4.x spelling is the same less rope_theta.
json hf_rope_json(const TransformerOptions& options) {
  json rope = {{"rope_type", "default"}, {"rope_theta", options.rope_theta()}};
  if (options.rope_scaling() == RopeScaling::kLinear) {
    rope.update({{"rope_type", "linear"}, {"factor", options.rope_factor()}});
  } else if (options.rope_scaling() == RopeScaling::kLlama3) {
    rope.update({{"rope_type", "llama3"},
                 {"factor", options.rope_factor()},
                 {"low_freq_factor", options.rope_low_freq_factor()},
                 {"high_freq_factor", options.rope_high_freq_factor()},
                 {"original_max_position_embeddings", options.rope_original_context()}});
  }
  return rope;
}

// The architecture's own keys of config.json.
json hf_shape_json(const std::string& model_type, const TransformerOptions& options) {
  if (model_type == "gpt2") {
    return {{"n_positions", options.block_size()},
            {"n_ctx", options.block_size()},
            {"n_embd", options.n_embd()},
            {"n_layer", options.n_layer()},
            {"n_head", options.n_head()},
            {"n_inner", options.mlp_hidden() > 0 ? json(options.mlp_hidden()) : json(nullptr)},
            {"activation_function", "gelu_new"},
            {"layer_norm_epsilon", options.norm_eps()},
            {"resid_pdrop", 0.0},
            {"embd_pdrop", 0.0},
            {"attn_pdrop", 0.0}};
  }
  const json rope = hf_rope_json(options);
  json legacy_scaling = nullptr;  // transformers 4.x's spelling
  if (options.rope_scaling() != RopeScaling::kNone) {
    legacy_scaling = rope;
    legacy_scaling.erase("rope_theta");
  }
  json shape = {{"hidden_size", options.n_embd()},
                {"intermediate_size", resolved_mlp_hidden(options)},
                {"num_hidden_layers", options.n_layer()},
                {"num_attention_heads", options.n_head()},
                {"num_key_value_heads", resolved_n_kv_head(options)},
                {"head_dim", resolved_head_dim(options)},
                {"max_position_embeddings", options.block_size()},
                {"rms_norm_eps", options.norm_eps()},
                {"hidden_act", "silu"},
                {"attention_dropout", 0.0},
                {"rope_parameters", rope},
                {"rope_theta", options.rope_theta()},
                {"rope_scaling", legacy_scaling}};
  if (model_type == "llama") shape.update({{"attention_bias", options.bias()}, {"mlp_bias", options.bias()}});
  if (model_type == "qwen2" || model_type == "qwen3") shape.update({{"use_sliding_window", false}, {"sliding_window", nullptr}});
  return shape;
}

json hf_token_id(int64_t id) { return id >= 0 ? json(id) : json(nullptr); }

json hf_config_json(const std::string& model_type, const TransformerOptions& options, const std::string& kind,
                    torch::ScalarType dtype, const HfSaveOptions& save) {
  const std::map<std::string, std::string> classes = {
      {"gpt2", "GPT2"}, {"llama", "Llama"}, {"qwen2", "Qwen2"}, {"qwen3", "Qwen3"}};
  const std::string head =
      kind == "reward" ? "ForSequenceClassification" : (model_type == "gpt2" ? "LMHeadModel" : "ForCausalLM");
  json config = {{"architectures", {classes.at(model_type) + head}},
                 {"model_type", model_type},
                 {"vocab_size", options.vocab_size()},
                 {"tie_word_embeddings", options.tie_embeddings()},
                 {"dtype", dtype_name(dtype)},
                 {"torch_dtype", dtype_name(dtype)},  // transformers 4.x
                 {"bos_token_id", hf_token_id(save.bos_token_id)},
                 {"eos_token_id", hf_token_id(save.eos_token_id)},
                 {"pad_token_id", hf_token_id(save.pad_token_id)}};
  if (kind == "reward") {
    config["num_labels"] = 1;
    config["id2label"] = {{"0", "LABEL_0"}};
    config["label2id"] = {{"LABEL_0", 0}};
  }
  config.update(hf_shape_json(model_type, options));
  return config;
}

}  // namespace

void save_hf_model(const fs::path& dir, torch::nn::Module& module, const TransformerOptions& options,
                   const std::string& kind, const HfSaveOptions& save) {
  std::string why;
  const std::string model_type = hf_model_type_of(options, &why);
  if (model_type.empty()) throw std::invalid_argument("no Hugging Face architecture has this shape: " + why);
  const std::vector<HfWeightSlot> slots = hf_weight_slots(model_type, options, kind);

  std::map<std::string, torch::Tensor> params;
  for (auto& item : module.named_parameters(/*recurse=*/true)) params[item.key()] = item.value().detach();
  if (params.empty()) throw std::invalid_argument("save_hf_model: the module has no parameters");
  const torch::ScalarType dtype = save.dtype.value_or(params.begin()->second.scalar_type());
  if (params.count("score.bias") && params.at("score.bias").abs().max().item<double>() != 0.0) {
    throw std::invalid_argument("the reward model's score.bias is " +
                                std::to_string(params.at("score.bias").item<double>()) +
                                ", which Hugging Face's *ForSequenceClassification (no bias) cannot hold; keep nurture's format");
  }
  int64_t total = 0;
  const std::vector<Shard> shards = plan_shards(slots, params, dtype, save.shard_bytes, &total);

  std::error_code error;
  fs::create_directories(dir, error);
  if (error) throw std::runtime_error(dir.string() + ": cannot create the model directory: " + error.message());
  write_hf_weights(dir, shards, total, dtype);
  json generation = {{"bos_token_id", hf_token_id(save.bos_token_id)},
                     {"eos_token_id", hf_token_id(save.eos_token_id)},
                     {"pad_token_id", hf_token_id(save.pad_token_id)}};
  write_file_atomic(dir / "generation_config.json", generation.dump(2) + "\n");
  write_file_atomic(dir / "config.json", hf_config_json(model_type, options, kind, dtype, save).dump(2) + "\n");
}

}  // namespace nurture
