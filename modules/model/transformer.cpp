// The decoder-only Transformer: options (validation, presets, parameter count, string/JSON
// plumbing), the attention kernels, the KV cache and the modules themselves.
#include "modules/model/transformer.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>

#include "modules/core/compat.h"

namespace nurture {

// ---------------------------------------------------------------------------------------------
// Options: validation and derived sizes
// ---------------------------------------------------------------------------------------------

namespace {

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

void require_one_of(const std::string& key, const std::string& value,
                    const std::vector<std::string>& allowed) {
  for (const auto& a : allowed) {
    if (value == a) return;
  }
  throw std::invalid_argument(key + " (\"" + value + "\") must be one of: " + join(allowed));
}

// The names of one kind's values, in the order of its enum.
template <class Kind>
Kind parse_kind(const std::string& name, const std::string& key, const std::vector<std::string>& names) {
  require_one_of(key, name, names);
  return static_cast<Kind>(std::find(names.begin(), names.end(), name) - names.begin());
}

const std::vector<std::string> kNormNames = {"layernorm", "rmsnorm"};
const std::vector<std::string> kMlpNames = {"gelu", "swiglu"};
const std::vector<std::string> kPositionNames = {"learned", "rope"};
const std::vector<std::string> kRopeScalingNames = {"none", "linear", "llama3"};

}  // namespace

const std::string& name_of(NormKind kind) { return kNormNames.at(static_cast<size_t>(kind)); }
const std::string& name_of(MlpKind kind) { return kMlpNames.at(static_cast<size_t>(kind)); }
const std::string& name_of(PositionKind kind) { return kPositionNames.at(static_cast<size_t>(kind)); }
const std::string& name_of(RopeScaling kind) { return kRopeScalingNames.at(static_cast<size_t>(kind)); }

std::ostream& operator<<(std::ostream& out, NormKind kind) { return out << name_of(kind); }
std::ostream& operator<<(std::ostream& out, MlpKind kind) { return out << name_of(kind); }
std::ostream& operator<<(std::ostream& out, PositionKind kind) { return out << name_of(kind); }
std::ostream& operator<<(std::ostream& out, RopeScaling kind) { return out << name_of(kind); }

NormKind parse_norm(const std::string& name, const std::string& key) {
  return parse_kind<NormKind>(name, key, kNormNames);
}
MlpKind parse_mlp(const std::string& name, const std::string& key) { return parse_kind<MlpKind>(name, key, kMlpNames); }
PositionKind parse_position(const std::string& name, const std::string& key) {
  return parse_kind<PositionKind>(name, key, kPositionNames);
}
RopeScaling parse_rope_scaling(const std::string& name, const std::string& key) {
  return parse_kind<RopeScaling>(name, key, kRopeScalingNames);
}

void validate(const TransformerOptions& o) {
  auto positive = [](const char* key, int64_t v) {
    require(v > 0, std::string(key) + " (" + std::to_string(v) + ") must be positive");
  };
  positive("vocab_size", o.vocab_size());
  positive("block_size", o.block_size());
  positive("n_layer", o.n_layer());
  positive("n_head", o.n_head());
  positive("n_embd", o.n_embd());
  require(o.head_dim() >= 0,
          "head_dim (" + std::to_string(o.head_dim()) + ") must be 0 (= n_embd / n_head) or positive");
  require(o.head_dim() > 0 || o.n_embd() % o.n_head() == 0,
          "n_embd (" + std::to_string(o.n_embd()) + ") must be divisible by n_head (" +
              std::to_string(o.n_head()) + ")");
  require(o.n_kv_head() >= 0 && o.n_kv_head() <= o.n_head(),
          "n_kv_head (" + std::to_string(o.n_kv_head()) + ") must be between 0 (= n_head) and n_head (" +
              std::to_string(o.n_head()) + ")");
  require(o.n_kv_head() == 0 || o.n_head() % o.n_kv_head() == 0, "n_head (" + std::to_string(o.n_head()) +
                                                                     ") must be divisible by n_kv_head (" +
                                                                     std::to_string(o.n_kv_head()) + ")");
  require(o.mlp_hidden() >= 0,
          "mlp_hidden (" + std::to_string(o.mlp_hidden()) + ") must be 0 (default) or positive");
  require(o.norm_eps() > 0, "norm_eps (" + std::to_string(o.norm_eps()) + ") must be positive");
  require(o.rope_theta() > 0, "rope_theta (" + std::to_string(o.rope_theta()) + ") must be positive");
  require(o.dropout() >= 0 && o.dropout() < 1,
          "dropout (" + std::to_string(o.dropout()) + ") must be in [0, 1)");
  require(o.position() != PositionKind::kRope || resolved_head_dim(o) % 2 == 0,
          "the head dimension (" + std::to_string(resolved_head_dim(o)) + ") must be even for position \"rope\"");
  if (o.rope_scaling() != RopeScaling::kNone) {
    require(o.position() == PositionKind::kRope,
            "rope_scaling (\"" + name_of(o.rope_scaling()) + "\") needs position \"rope\"");
    require(o.rope_factor() >= 1, "rope_factor (" + std::to_string(o.rope_factor()) + ") must be at least 1");
  }
  if (o.rope_scaling() == RopeScaling::kLlama3) {
    require(o.rope_low_freq_factor() > 0 && o.rope_high_freq_factor() > o.rope_low_freq_factor(),
            "rope_high_freq_factor (" + std::to_string(o.rope_high_freq_factor()) +
                ") must be above rope_low_freq_factor (" + std::to_string(o.rope_low_freq_factor()) +
                "), which must be positive");
    require(o.rope_original_context() > 0,
            "rope_original_context (" + std::to_string(o.rope_original_context()) + ") must be positive");
  }
}

int64_t resolved_n_kv_head(const TransformerOptions& o) {
  return o.n_kv_head() == 0 ? o.n_head() : o.n_kv_head();
}

int64_t resolved_mlp_hidden(const TransformerOptions& o) {
  if (o.mlp_hidden() > 0) return o.mlp_hidden();
  if (o.mlp() == MlpKind::kSwiGLU) {
    // Llama: hidden = 2/3 * 4C, rounded up to a multiple of 256.
    const int64_t hidden = 2 * (4 * o.n_embd()) / 3;
    constexpr int64_t kMultipleOf = 256;
    return (hidden + kMultipleOf - 1) / kMultipleOf * kMultipleOf;
  }
  return 4 * o.n_embd();
}

// ---------------------------------------------------------------------------------------------
// Presets
// ---------------------------------------------------------------------------------------------

namespace {

TransformerOptions gpt2_shape(int64_t n_layer, int64_t n_head, int64_t n_embd) {
  return TransformerOptions().vocab_size(50257).block_size(1024).n_layer(n_layer).n_head(n_head).n_embd(
      n_embd);
}

TransformerOptions llama_shape() {
  return TransformerOptions()
      .norm(NormKind::kRMSNorm)
      .norm_eps(1e-5)
      .mlp(MlpKind::kSwiGLU)
      .position(PositionKind::kRope)
      .rope_theta(10000.0)
      .bias(false)
      .tie_embeddings(false);
}

const std::vector<std::pair<std::string, std::function<TransformerOptions()>>>& presets() {
  static const std::vector<std::pair<std::string, std::function<TransformerOptions()>>> table = {
      {"gpt2_tiny",
       [] { return TransformerOptions().vocab_size(512).block_size(128).n_layer(2).n_head(4).n_embd(64); }},
      {"gpt2_124m", [] { return gpt2_shape(12, 12, 768); }},
      {"gpt2_350m", [] { return gpt2_shape(24, 16, 1024); }},
      {"llama_micro",
       [] {
         return llama_shape().vocab_size(512).block_size(128).n_layer(2).n_head(4).n_kv_head(2).n_embd(64);
       }},
      {"llama_tiny",
       [] {
         return llama_shape()
             .vocab_size(32000)
             .block_size(256)
             .n_layer(6)
             .n_head(6)
             .n_embd(288)
             .tie_embeddings(true);
       }},
      {"llama_1b",
       [] {
         return llama_shape()
             .vocab_size(32000)
             .block_size(2048)
             .n_layer(22)
             .n_head(32)
             .n_kv_head(4)
             .n_embd(2048)
             .mlp_hidden(5632);
       }},
  };
  return table;
}

}  // namespace

TransformerOptions preset(const std::string& name) {
  for (const auto& [preset_name, make] : presets()) {
    if (preset_name == name) return make();
  }
  throw std::invalid_argument("unknown model preset \"" + name +
                              "\"; known presets: " + join(preset_names()));
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& entry : presets()) names.push_back(entry.first);
  return names;
}

Registry<PresetFactory>& model_preset_registry() {
  static Registry<PresetFactory> registry = [] {
    Registry<PresetFactory> r("model preset");
    for (const auto& name : preset_names()) r.add(name, [name] { return preset(name); });
    return r;
  }();
  return registry;
}

int64_t count_parameters(const TransformerOptions& o) {
  validate(o);
  const int64_t C = o.n_embd(), V = o.vocab_size(), D = resolved_head_dim(o), H = o.n_head();
  const int64_t KVH = resolved_n_kv_head(o), F = resolved_mlp_hidden(o);
  const int64_t b = o.bias() ? 1 : 0;
  const int64_t norm = C * ((o.norm() == NormKind::kLayerNorm && o.bias()) ? 2 : 1);
  const int64_t qkv_b = (o.bias() || o.qkv_bias()) ? 1 : 0;
  const int64_t attn = C * (H + 2 * KVH) * D + qkv_b * (H + 2 * KVH) * D + H * D * C + b * C +
                       (o.qk_norm() ? 2 * D : 0);
  const int64_t n_in = o.mlp() == MlpKind::kSwiGLU ? 2 : 1;  // c_fc (+ c_gate)
  const int64_t mlp = n_in * (C * F + b * F) + F * C + b * C;
  int64_t total = V * C;                                       // wte
  if (o.position() == PositionKind::kLearned) total += o.block_size() * C;  // wpe
  total += o.n_layer() * (2 * norm + attn + mlp);
  total += norm;                            // ln_f
  if (!o.tie_embeddings()) total += V * C;  // lm_head
  return total;
}

// ---------------------------------------------------------------------------------------------
// Options as strings and JSON
// ---------------------------------------------------------------------------------------------

namespace {

// One option: its field description, how to read it into JSON and how to set it from JSON.
struct OptionAccess {
  OptionField field;
  std::function<nlohmann::json(const TransformerOptions&)> get;
  std::function<void(TransformerOptions&, const nlohmann::json&)> set;
};

#define NURTURE_INT_OPTION(key, help)                                                         \
  OptionAccess {                                                                              \
    {#key, "int", help}, [](const TransformerOptions& o) { return nlohmann::json(o.key()); }, \
        [](TransformerOptions& o, const nlohmann::json& j) { o.key(j.get<int64_t>()); }       \
  }
#define NURTURE_FLOAT_OPTION(key, help)                                                         \
  OptionAccess {                                                                                \
    {#key, "float", help}, [](const TransformerOptions& o) { return nlohmann::json(o.key()); }, \
        [](TransformerOptions& o, const nlohmann::json& j) { o.key(j.get<double>()); }          \
  }
#define NURTURE_BOOL_OPTION(key, help)                                                         \
  OptionAccess {                                                                               \
    {#key, "bool", help}, [](const TransformerOptions& o) { return nlohmann::json(o.key()); }, \
        [](TransformerOptions& o, const nlohmann::json& j) { o.key(j.get<bool>()); }           \
  }
// A kind, by its name: "rmsnorm" in JSON and recipes, NormKind::kRMSNorm in the options.
#define NURTURE_KIND_OPTION(key, help)                                                                    \
  OptionAccess {                                                                                          \
    {#key, "string", help}, [](const TransformerOptions& o) { return nlohmann::json(name_of(o.key())); }, \
        [](TransformerOptions& o, const nlohmann::json& j) { o.key(parse_##key(j.get<std::string>())); } \
  }

const std::vector<OptionAccess>& option_table() {
  static const std::vector<OptionAccess> table = {
      NURTURE_INT_OPTION(vocab_size, "vocabulary size (rows of wte)"),
      NURTURE_INT_OPTION(block_size, "maximum sequence length (learned position table size)"),
      NURTURE_INT_OPTION(n_layer, "number of Transformer blocks"),
      NURTURE_INT_OPTION(n_head, "number of query heads (n_embd must be divisible by it)"),
      NURTURE_INT_OPTION(n_kv_head, "key/value heads: 0 = n_head, fewer = grouped-query attention"),
      NURTURE_INT_OPTION(n_embd, "model width C"),
      NURTURE_INT_OPTION(head_dim, "width of one attention head: 0 = n_embd / n_head"),
      NURTURE_INT_OPTION(
          mlp_hidden,
          "MLP hidden width: 0 = 4*n_embd (gelu) or Llama's 2/3*4*n_embd rounded up to 256 (swiglu)"),
      NURTURE_KIND_OPTION(norm, "\"layernorm\" or \"rmsnorm\""),
      NURTURE_FLOAT_OPTION(norm_eps, "epsilon of the norms"),
      NURTURE_KIND_OPTION(mlp, "\"gelu\" (tanh approximation, GPT-2) or \"swiglu\" (Llama)"),
      NURTURE_KIND_OPTION(position, "\"learned\" (GPT-2 wpe) or \"rope\" (rotary, Llama)"),
      NURTURE_FLOAT_OPTION(rope_theta, "RoPE base frequency"),
      NURTURE_KIND_OPTION(rope_scaling, "\"none\", \"linear\" or \"llama3\" (Llama 3.1's long-context RoPE)"),
      NURTURE_FLOAT_OPTION(rope_factor, "RoPE scaling: how much the frequencies are stretched (1 = none)"),
      NURTURE_FLOAT_OPTION(rope_low_freq_factor, "llama3 RoPE scaling: wavelengths above context/this are stretched"),
      NURTURE_FLOAT_OPTION(rope_high_freq_factor, "llama3 RoPE scaling: wavelengths below context/this are kept"),
      NURTURE_INT_OPTION(rope_original_context, "llama3 RoPE scaling: the context of pre-training"),
      NURTURE_BOOL_OPTION(bias, "biases in the linear layers and LayerNorms"),
      NURTURE_BOOL_OPTION(qkv_bias, "biases on the query/key/value projection even without `bias` (Qwen2)"),
      NURTURE_BOOL_OPTION(qk_norm, "RMSNorm over each query and key head before RoPE (Qwen3)"),
      NURTURE_BOOL_OPTION(tie_embeddings, "share the output projection with wte"),
      NURTURE_FLOAT_OPTION(dropout, "dropout on embeddings, attention probabilities and residuals"),
  };
  return table;
}

#undef NURTURE_INT_OPTION
#undef NURTURE_FLOAT_OPTION
#undef NURTURE_BOOL_OPTION
#undef NURTURE_KIND_OPTION

const OptionAccess* find_option(const std::string& key) {
  for (const auto& entry : option_table()) {
    if (entry.field.name == key) return &entry;
  }
  return nullptr;
}

std::vector<std::string> option_names() {
  std::vector<std::string> names;
  for (const auto& entry : option_table()) names.push_back(entry.field.name);
  return names;
}

std::string type_phrase(const std::string& type) {
  if (type == "int") return "an integer";
  if (type == "float") return "a number";
  if (type == "bool") return "true or false";
  return "a string";
}

bool json_has_type(const nlohmann::json& j, const std::string& type) {
  if (type == "int") return j.is_number_integer();
  if (type == "float") return j.is_number();
  if (type == "bool") return j.is_boolean();
  return j.is_string();
}

}  // namespace

const std::vector<OptionField>& transformer_option_fields() {
  static const std::vector<OptionField> fields = [] {
    std::vector<OptionField> out;
    for (const auto& entry : option_table()) out.push_back(entry.field);
    return out;
  }();
  return fields;
}

void set_option(TransformerOptions& options, const std::string& key, const std::string& value) {
  const OptionAccess* access = find_option(key);
  if (access == nullptr) {
    throw std::invalid_argument("unknown model option \"" + key +
                                "\"; known options: " + join(option_names()));
  }
  const std::string& type = access->field.type;
  const std::string bad = key + ": expected " + type_phrase(type) + ", got \"" + value + "\"";
  nlohmann::json parsed;
  try {
    size_t used = 0;
    if (type == "int") {
      parsed = static_cast<int64_t>(std::stoll(value, &used));
      if (used != value.size()) throw std::invalid_argument(bad);
    } else if (type == "float") {
      parsed = std::stod(value, &used);
      if (used != value.size()) throw std::invalid_argument(bad);
    } else if (type == "bool") {
      if (value == "true" || value == "1") {
        parsed = true;
      } else if (value == "false" || value == "0") {
        parsed = false;
      } else {
        throw std::invalid_argument(bad);
      }
    } else {
      parsed = value;  // a kind: parsed by the option's setter, which names the choices
    }
  } catch (const std::invalid_argument&) {
    if (type == "string") throw;
    throw std::invalid_argument(bad);
  } catch (const std::out_of_range&) {
    throw std::invalid_argument(bad + " (out of range)");
  }
  access->set(options, parsed);
}

nlohmann::json to_json(const TransformerOptions& options) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& entry : option_table()) out[entry.field.name] = entry.get(options);
  return out;
}

TransformerOptions options_from_json(const nlohmann::json& json, const std::string& source) {
  if (!json.is_object()) {
    throw std::invalid_argument(source + ": expected an object of model options, got " + json.dump());
  }
  TransformerOptions options;
  for (const auto& [key, value] : json.items()) {
    const OptionAccess* access = find_option(key);
    if (access == nullptr) {
      throw std::invalid_argument(source + ": unknown model option \"" + key +
                                  "\"; known options: " + join(option_names()));
    }
    if (!json_has_type(value, access->field.type)) {
      throw std::invalid_argument(source + ": " + key + ": expected " + type_phrase(access->field.type) +
                                  ", got " + value.dump());
    }
    access->set(options, value);
  }
  try {
    validate(options);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(source + ": " + e.what());
  }
  return options;
}

// ---------------------------------------------------------------------------------------------
// Attention kernels
// ---------------------------------------------------------------------------------------------

torch::Tensor explicit_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 const torch::Tensor& mask, double dropout_p, bool is_causal) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
              "attention expects q/k/v of shape [B, H, T, D], got ", q.sizes(), k.sizes(), v.sizes());
  const int64_t T = q.size(2), S = k.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  auto scores = torch::matmul(q, k.transpose(-2, -1)) * scale;  // [B, H, T, S]
  torch::Tensor allowed = mask;
  if (is_causal) {
    auto causal = torch::ones({T, S}, q.options().dtype(torch::kBool)).tril();
    allowed = allowed.defined() ? allowed.logical_and(causal) : causal;
  }
  if (allowed.defined()) {
    TORCH_CHECK(allowed.scalar_type() == torch::kBool, "attention mask must be bool, got ",
                allowed.scalar_type());
    scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<double>::infinity());
  }
  const bool low_precision = q.scalar_type() == torch::kHalf || q.scalar_type() == torch::kBFloat16;
  auto probs = low_precision ? torch::softmax(scores, -1, torch::kFloat).to(q.scalar_type())
                             : torch::softmax(scores, -1);
  if (mask.defined()) {
    // A row with nothing to attend to is all -inf: softmax gives NaN there; make it zeros.
    // (The causal mask alone always leaves the diagonal.)
    probs = probs.masked_fill(allowed.any(-1, /*keepdim=*/true).logical_not(), 0.0);
  }
  if (dropout_p > 0) probs = torch::dropout(probs, dropout_p, /*train=*/true);
  return torch::matmul(probs, v);  // [B, H, T, D]
}

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, double dropout_p, bool is_causal) {
  if constexpr (compat::kHasSdpa) {
    return compat::sdpa(q, k, v, mask, dropout_p, is_causal);
  } else {
    return explicit_attention(q, k, v, mask, dropout_p, is_causal);
  }
}

// ---------------------------------------------------------------------------------------------
// KV cache
// ---------------------------------------------------------------------------------------------

KVCache::KVCache(int64_t n_layer, int64_t batch, int64_t n_kv_head, int64_t max_length, int64_t head_dim,
                 const torch::TensorOptions& tensor_options)
    : max_length_(max_length) {
  TORCH_CHECK(n_layer > 0 && batch > 0 && n_kv_head > 0 && max_length > 0 && head_dim > 0,
              "KVCache sizes must be positive, got layers ", n_layer, " batch ", batch, " heads ", n_kv_head,
              " length ", max_length, " head dim ", head_dim);
  for (int64_t i = 0; i < n_layer; ++i) {
    keys_.push_back(torch::zeros({batch, n_kv_head, max_length, head_dim}, tensor_options));
    values_.push_back(torch::zeros({batch, n_kv_head, max_length, head_dim}, tensor_options));
  }
}

int64_t KVCache::batch_size() const { return keys_.empty() ? 0 : keys_.front().size(0); }

void KVCache::select_rows(const torch::Tensor& rows) {
  auto index = rows.to(keys_.empty() ? torch::kCPU : keys_.front().device(), torch::kLong);
  for (auto& k : keys_) k = k.index_select(0, index);
  for (auto& v : values_) v = v.index_select(0, index);
}

std::pair<torch::Tensor, torch::Tensor> KVCache::append(int64_t layer, const torch::Tensor& k,
                                                        const torch::Tensor& v) {
  TORCH_CHECK(layer >= 0 && layer < n_layer(), "KVCache has ", n_layer(), " layers, got layer ", layer);
  auto& keys = keys_[static_cast<size_t>(layer)];
  auto& values = values_[static_cast<size_t>(layer)];
  const int64_t T = k.size(2);
  TORCH_CHECK(length_ + T <= max_length_, "KVCache overflow: ", length_, " cached + ", T,
              " new positions > max_length ", max_length_);
  TORCH_CHECK(k.size(0) == keys.size(0) && k.size(1) == keys.size(1) && k.size(3) == keys.size(3),
              "KVCache expects k/v [", keys.size(0), ", ", keys.size(1), ", T, ", keys.size(3), "], got ",
              k.sizes());
  keys.narrow(2, length_, T).copy_(k);
  values.narrow(2, length_, T).copy_(v);
  return {keys.narrow(2, 0, length_ + T), values.narrow(2, 0, length_ + T)};
}

void KVCache::advance(int64_t t) {
  TORCH_CHECK(t >= 0 && length_ + t <= max_length_, "KVCache cannot advance by ", t, " from ", length_,
              " (max_length ", max_length_, ")");
  length_ += t;
}

// ---------------------------------------------------------------------------------------------
// Norms
// ---------------------------------------------------------------------------------------------

RMSNormImpl::RMSNormImpl(NormOptions options_) : options(std::move(options_)) { reset(); }

void RMSNormImpl::reset() { weight = register_parameter("weight", torch::ones({options.dim()})); }

void RMSNormImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  weight.fill_(1.0);
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  // x: [..., C] -> [..., C]; the statistic in float32 at least, as Llama.
  const auto dtype = x.scalar_type();
  auto xf = (dtype == torch::kHalf || dtype == torch::kBFloat16) ? x.to(torch::kFloat) : x;
  auto normed = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + options.eps());
  return normed.to(dtype) * weight;
}

LayerNormImpl::LayerNormImpl(NormOptions options_) : options(std::move(options_)) { reset(); }

void LayerNormImpl::reset() {
  weight = register_parameter("weight", torch::ones({options.dim()}));
  if (options.bias()) bias = register_parameter("bias", torch::zeros({options.dim()}));
}

void LayerNormImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  weight.fill_(1.0);
  if (bias.defined()) bias.zero_();
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  // x: [..., C] -> [..., C]
  return torch::layer_norm(x, {options.dim()}, weight, bias, options.eps());
}

namespace {

torch::nn::AnyModule make_norm(const TransformerOptions& o) {
  auto norm_options = NormOptions(o.n_embd()).eps(o.norm_eps()).bias(o.bias());
  if (o.norm() == NormKind::kRMSNorm) return torch::nn::AnyModule(RMSNorm(norm_options));
  return torch::nn::AnyModule(LayerNorm(norm_options));
}

void reset_norm(const torch::nn::AnyModule& norm) {
  if (auto* rms = norm.ptr()->as<RMSNormImpl>()) rms->reset_parameters();
  if (auto* ln = norm.ptr()->as<LayerNormImpl>()) ln->reset_parameters();
}

// GPT-2 init: weights normal(0, std), biases zero.
void init_linear(const torch::nn::Linear& linear, double std) {
  if (linear.is_empty()) return;
  torch::NoGradGuard no_grad;
  init_normal_(linear->weight, std);
  if (linear->bias.defined()) linear->bias.zero_();
}

constexpr double kInitStd = 0.02;

double residual_std(const TransformerOptions& o) {
  return kInitStd / std::sqrt(2.0 * static_cast<double>(o.n_layer()));
}

// Rotate-half RoPE (HF Llama): x * cos + rotate_half(x) * sin, rotate_half(a, b) = (-b, a).
// x: [B, H, T, D], cos/sin: [B, T, D] -> [B, H, T, D]
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  auto rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Attention, MLP, Block
// ---------------------------------------------------------------------------------------------

AttentionImpl::AttentionImpl(TransformerOptions options_, int64_t layer_index_)
    : options(std::move(options_)), layer_index(layer_index_) {
  reset();
}

void AttentionImpl::reset() {
  const int64_t C = options.n_embd(), D = resolved_head_dim(options), H = options.n_head();
  const int64_t qkv = (H + 2 * resolved_n_kv_head(options)) * D;
  c_attn = register_module(
      "c_attn", torch::nn::Linear(torch::nn::LinearOptions(C, qkv).bias(options.bias() || options.qkv_bias())));
  c_proj =
      register_module("c_proj", torch::nn::Linear(torch::nn::LinearOptions(H * D, C).bias(options.bias())));
  if (options.qk_norm()) {
    q_norm = register_module("q_norm", RMSNorm(NormOptions(D).eps(options.norm_eps())));
    k_norm = register_module("k_norm", RMSNorm(NormOptions(D).eps(options.norm_eps())));
  }
  reset_parameters();
}

void AttentionImpl::reset_parameters() {
  init_linear(c_attn, kInitStd);
  init_linear(c_proj, residual_std(options));
  if (!q_norm.is_empty()) q_norm->reset_parameters();
  if (!k_norm.is_empty()) k_norm->reset_parameters();
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                     const torch::Tensor& sin, const torch::Tensor& mask, bool is_causal,
                                     KVCache* cache) {
  // x: [B, T, C] -> [B, T, C]
  const int64_t B = x.size(0), T = x.size(1);
  const int64_t H = options.n_head(), KVH = resolved_n_kv_head(options), D = resolved_head_dim(options);
  auto qkv = c_attn(x);                                                            // [B, T, (H + 2 KVH) D]
  auto q = qkv.narrow(2, 0, H * D).reshape({B, T, H, D}).transpose(1, 2);          // [B, H, T, D]
  auto k = qkv.narrow(2, H * D, KVH * D).reshape({B, T, KVH, D}).transpose(1, 2);  // [B, KVH, T, D]
  auto v = qkv.narrow(2, (H + KVH) * D, KVH * D).reshape({B, T, KVH, D}).transpose(1, 2);
  if (!q_norm.is_empty()) {
    q = q_norm(q);
    k = k_norm(k);
  }
  if (cos.defined()) {
    q = apply_rope(q, cos, sin);
    k = apply_rope(k, cos, sin);
  }
  if (cache != nullptr) std::tie(k, v) = cache->append(layer_index, k, v);  // [B, KVH, S, D]
  if (KVH < H) {
    k = k.repeat_interleave(H / KVH, 1);  // [B, H, S, D]; query head h uses kv head h / (H/KVH)
    v = v.repeat_interleave(H / KVH, 1);
  }
  const double p = is_training() ? options.dropout() : 0.0;
  auto y = attention(q, k, v, mask, p, is_causal);  // [B, H, T, D]
  y = y.transpose(1, 2).reshape({B, T, H * D});
  return torch::dropout(c_proj(y), p, is_training());
}

MLPImpl::MLPImpl(TransformerOptions options_) : options(std::move(options_)) { reset(); }

void MLPImpl::reset() {
  const int64_t C = options.n_embd(), F = resolved_mlp_hidden(options);
  c_fc = register_module("c_fc", torch::nn::Linear(torch::nn::LinearOptions(C, F).bias(options.bias())));
  if (options.mlp() == MlpKind::kSwiGLU) {
    c_gate =
        register_module("c_gate", torch::nn::Linear(torch::nn::LinearOptions(C, F).bias(options.bias())));
  }
  c_proj = register_module("c_proj", torch::nn::Linear(torch::nn::LinearOptions(F, C).bias(options.bias())));
  reset_parameters();
}

void MLPImpl::reset_parameters() {
  init_linear(c_fc, kInitStd);
  init_linear(c_gate, kInitStd);
  init_linear(c_proj, residual_std(options));
}

torch::Tensor MLPImpl::forward(const torch::Tensor& x) {
  // x: [B, T, C] -> [B, T, F] -> [B, T, C]
  torch::Tensor hidden;
  if (options.mlp() == MlpKind::kSwiGLU) {
    hidden = torch::silu(c_gate(x)) * c_fc(x);
  } else {
    hidden = torch::gelu(c_fc(x), "tanh");
  }
  return torch::dropout(c_proj(hidden), is_training() ? options.dropout() : 0.0, is_training());
}

BlockImpl::BlockImpl(TransformerOptions options_, int64_t layer_index_)
    : options(std::move(options_)), layer_index(layer_index_) {
  reset();
}

void BlockImpl::reset() {
  ln_1 = make_norm(options);
  register_module("ln_1", ln_1.ptr());
  attn = register_module("attn", Attention(options, layer_index));
  ln_2 = make_norm(options);
  register_module("ln_2", ln_2.ptr());
  mlp = register_module("mlp", MLP(options));
}

void BlockImpl::reset_parameters() {
  reset_norm(ln_1);
  attn->reset_parameters();
  reset_norm(ln_2);
  mlp->reset_parameters();
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                 const torch::Tensor& mask, bool is_causal, KVCache* cache) {
  // x: [B, T, C] -> [B, T, C]
  auto y = x + attn->forward(ln_1.forward(x), cos, sin, mask, is_causal, cache);
  return y + mlp->forward(ln_2.forward(y));
}

// ---------------------------------------------------------------------------------------------
// Transformer
// ---------------------------------------------------------------------------------------------

TransformerImpl::TransformerImpl(TransformerOptions options_) : options(std::move(options_)) {
  validate(options);
  reset();
}

void TransformerImpl::reset() {
  const int64_t C = options.n_embd();
  wte = register_module("wte", torch::nn::Embedding(options.vocab_size(), C));
  if (options.position() == PositionKind::kLearned) {
    wpe = register_module("wpe", torch::nn::Embedding(options.block_size(), C));
  }
  h = register_module("h", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.n_layer(); ++i) h->push_back(Block(options, i));
  ln_f = make_norm(options);
  register_module("ln_f", ln_f.ptr());
  if (!options.tie_embeddings()) {
    head = register_module("lm_head",
                           torch::nn::Linear(torch::nn::LinearOptions(C, options.vocab_size()).bias(false)));
  }
  // The blocks initialised themselves; initialise what belongs to this module.
  torch::NoGradGuard no_grad;
  init_normal_(wte->weight, kInitStd);
  if (!wpe.is_empty()) init_normal_(wpe->weight, kInitStd);
  init_linear(head, kInitStd);
}

// GPT-2 init: linears and embeddings normal(0, 0.02), biases zero, norms one/zero, and the
// residual projections (attn.c_proj, mlp.c_proj) normal(0, 0.02 / sqrt(2 L)).
void TransformerImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  wte->weight.normal_(0.0, kInitStd);
  if (!wpe.is_empty()) wpe->weight.normal_(0.0, kInitStd);
  for (size_t i = 0; i < h->size(); ++i) h->ptr<BlockImpl>(i)->reset_parameters();
  reset_norm(ln_f);
  init_linear(head, kInitStd);
}

namespace {

// Key padding mask, segments and position ids of one call. The mask's values are segment ids: 0
// is padding; a token attends only to tokens of its own segment, and positions count from the
// segment's first real token. A 0/1 mask is one segment per row (padding anywhere); packed rows
// number their documents 1, 2, 3, ... so that they do not see each other.
struct Segments {
  torch::Tensor key_mask;      // bool [B, S], undefined without an attention mask
  torch::Tensor same_segment;  // bool [B, T, S]: query t and key s share a segment
  torch::Tensor positions;     // [B, T] int64
};

Segments segments_of(const torch::Tensor& attention_mask, int64_t B, int64_t T, int64_t past,
                     const torch::Device& device) {
  const int64_t S = past + T;
  Segments out;
  if (!attention_mask.defined()) {
    out.positions = torch::arange(past, S, torch::TensorOptions().dtype(torch::kLong).device(device))
                        .unsqueeze(0)
                        .expand({B, T});
    return out;
  }
  TORCH_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == B && attention_mask.size(1) == S,
              "attention_mask must be [B, cache length + T] = [", B, ", ", S, "], got ", attention_mask.sizes());
  const auto segments = attention_mask.to(device, torch::kLong);  // [B, S]
  out.key_mask = segments != 0;
  const auto query_segments = segments.narrow(1, past, T).unsqueeze(2);  // [B, T, 1]
  out.same_segment = segments.unsqueeze(1) == query_segments;            // [B, T, S]
  // real tokens before each query, less those of earlier segments
  const auto earlier = (segments.unsqueeze(1) < query_segments).logical_and(out.key_mask.unsqueeze(1));
  out.positions = (out.key_mask.to(torch::kLong).cumsum(1).narrow(1, past, T) - 1 - earlier.sum(-1)).clamp_min(0);
  return out;
}

}  // namespace

void init_normal_(const torch::Tensor& weight, double std) {
  torch::NoGradGuard no_grad;
  if ((weight.scalar_type() == torch::kBFloat16 || weight.scalar_type() == torch::kHalf) && weight.is_contiguous()) {
    // In slices of 16M values. The fp32 buffer is always 64 MiB (pages untouched beyond a small
    // tensor's draws cost nothing): above glibc's largest mmap threshold, it goes back to the
    // system when freed instead of leaving the heap fragmented around the model's weights.
    const auto flat = weight.view({-1});
    const int64_t slice = int64_t{1} << 24;
    auto draws = torch::empty({slice}, weight.options().dtype(torch::kFloat));
    for (int64_t start = 0; start < flat.numel(); start += slice) {
      const int64_t n = std::min(slice, flat.numel() - start);
      flat.narrow(0, start, n).copy_(draws.narrow(0, 0, n).normal_(0.0, std));
    }
  } else {
    weight.normal_(0.0, std);
  }
}

torch::Tensor rope_frequencies(const TransformerOptions& options, torch::ScalarType dtype, const torch::Device& device) {
  const auto topt = torch::TensorOptions().dtype(dtype).device(device);
  const int64_t D = resolved_head_dim(options);
  auto inv_freq = torch::pow(options.rope_theta(), -torch::arange(0, D, 2, topt) / static_cast<double>(D));
  const double factor = options.rope_factor();
  switch (options.rope_scaling()) {
    case RopeScaling::kNone:
      return inv_freq;
    case RopeScaling::kLinear:
      return inv_freq / factor;
    case RopeScaling::kLlama3: {
      // Wavelengths longer than context / low_freq_factor are stretched by the factor, shorter
      // than context / high_freq_factor kept, and those between blended linearly in context / λ.
      const double context = static_cast<double>(options.rope_original_context());
      const double low = options.rope_low_freq_factor(), high = options.rope_high_freq_factor();
      const auto wavelength = 2 * M_PI / inv_freq;
      const auto smooth = ((context / wavelength - low) / (high - low)).clamp(0.0, 1.0);
      const auto blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq;
      return torch::where(wavelength > context / low, inv_freq / factor,
                          torch::where(wavelength < context / high, inv_freq, blended));
    }
  }
  return inv_freq;
}

namespace {

// RoPE's cos and sin [B, T, D] for these positions, computed in float64 for a float64 model, else
// float32, and returned in `dtype`.
std::pair<torch::Tensor, torch::Tensor> rope_angles(const TransformerOptions& options, const torch::Tensor& positions,
                                                    torch::ScalarType dtype) {
  const auto angle_dtype = dtype == torch::kDouble ? torch::kDouble : torch::kFloat;
  auto inv_freq = rope_frequencies(options, angle_dtype, positions.device());
  auto angles = positions.to(angle_dtype).unsqueeze(-1) * inv_freq;  // [B, T, D/2]
  auto emb = torch::cat({angles, angles}, -1);                       // [B, T, D]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

// The attention mask: causal AND real key AND same segment, OR the diagonal (so padding queries
// attend to themselves and no row is empty) -> bool [B or 1, 1, T, S]. Without padding: none and
// is_causal (flash kernels) for a fresh sequence, none for one new token after a cache.
torch::Tensor attention_mask_of(const Segments& seg, int64_t T, int64_t past, const torch::Device& device,
                                bool* is_causal) {
  *is_causal = false;
  if (!seg.key_mask.defined() && past == 0) {
    *is_causal = true;
    return {};
  }
  if (!seg.key_mask.defined() && T == 1) return {};
  const int64_t S = past + T;
  auto lopt = torch::TensorOptions().dtype(torch::kLong).device(device);
  auto query_pos = torch::arange(past, S, lopt).unsqueeze(1);  // [T, 1]
  auto key_pos = torch::arange(0, S, lopt).unsqueeze(0);       // [1, S]
  auto allowed = (key_pos <= query_pos).unsqueeze(0);          // [1, T, S]
  if (seg.key_mask.defined()) {
    allowed = allowed.logical_and(seg.key_mask.unsqueeze(1))
                  .logical_and(seg.same_segment)
                  .logical_or((key_pos == query_pos).unsqueeze(0));
  }
  return allowed.unsqueeze(1);
}

}  // namespace

torch::Tensor TransformerImpl::hidden_states(const torch::Tensor& idx, const torch::Tensor& attention_mask,
                                             KVCache* cache) {
  // idx: [B, T] -> [B, T, C]
  TORCH_CHECK(idx.dim() == 2, "Transformer expects idx of shape [B, T], got ", idx.sizes());
  TORCH_CHECK(idx.scalar_type() == torch::kLong, "Transformer expects int64 token ids, got ",
              idx.scalar_type());
  const int64_t B = idx.size(0), T = idx.size(1);
  const int64_t past = cache != nullptr ? cache->length() : 0;
  const int64_t S = past + T;
  TORCH_CHECK(T > 0, "Transformer expects at least one token");
  TORCH_CHECK(S <= options.block_size(), "sequence length ", S, " exceeds block_size ", options.block_size());
  if (cache != nullptr) {
    TORCH_CHECK(cache->batch_size() == B && cache->n_layer() == options.n_layer(), "KVCache made for batch ",
                cache->batch_size(), " and ", cache->n_layer(), " layers, got batch ", B,
                " for a model with ", options.n_layer(), " layers");
  }
  const auto device = idx.device();
  const Segments seg = segments_of(attention_mask, B, T, past, device);

  const bool train = is_training();
  auto x = wte(idx);  // [B, T, C]
  if (!wpe.is_empty()) x = x + wpe(seg.positions);
  x = torch::dropout(x, train ? options.dropout() : 0.0, train);

  torch::Tensor cos, sin;  // [B, T, D]
  if (options.position() == PositionKind::kRope) std::tie(cos, sin) = rope_angles(options, seg.positions, x.scalar_type());
  bool is_causal = false;
  const torch::Tensor mask = attention_mask_of(seg, T, past, device, &is_causal);

  for (size_t i = 0; i < h->size(); ++i) {
    x = h->ptr<BlockImpl>(i)->forward(x, cos, sin, mask, is_causal, cache);
  }
  if (cache != nullptr) cache->advance(T);
  return ln_f.forward(x);
}

torch::Tensor TransformerImpl::lm_head(const torch::Tensor& hidden) {
  // hidden: [B, T, C] -> [B, T, V]
  return head.is_empty() ? torch::linear(hidden, wte->weight) : head(hidden);
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& idx, const torch::Tensor& attention_mask,
                                       KVCache* cache) {
  // idx: [B, T] -> [B, T, V]
  return lm_head(hidden_states(idx, attention_mask, cache));
}

KVCache TransformerImpl::make_cache(int64_t batch, int64_t max_length) const {
  TORCH_CHECK(max_length <= options.block_size(), "KVCache max_length ", max_length, " exceeds block_size ",
              options.block_size());
  return KVCache(options.n_layer(), batch, resolved_n_kv_head(options), max_length, resolved_head_dim(options),
                 wte->weight.options().requires_grad(false));
}

Transformer build_transformer(const TransformerOptions& options) { return Transformer(options); }

Transformer build_transformer(const std::string& preset_name) { return Transformer(preset(preset_name)); }

}  // namespace nurture
