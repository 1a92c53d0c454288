// The decoder-only Transformer every nurture model is built on: GPT-2 and Llama shapes from one
// options struct (norm, MLP and position encoding are options, not classes), named presets, a KV
// cache for incremental decoding, and the option plumbing recipes and model directories use.
//
// Letters used in shape comments: B batch, T new tokens in this call, P tokens already in the KV
// cache, S = P + T attended positions, C channels (n_embd), V vocab, H query heads, KVH key/value
// heads, D head dim (head_dim, by default C / H), L layers, F MLP hidden width.
//
// Parameter names (HF GPT-2 layout) and their HF counterparts. GPT-2's Conv1D weights are stored
// [in, out]: transpose them. HF Llama's q/k rows are already in the rotate-half RoPE layout used here.
//   name                       shape             HF GPT-2 (transformer.*)  HF Llama (model.*)
//   wte.weight                 [V, C]            wte                       embed_tokens
//   wpe.weight                 [ctx, C]          wpe                       -  (position "learned" only)
//   h.<i>.ln_1.{weight,bias}   [C]               h.<i>.ln_1                layers.<i>.input_layernorm
//   h.<i>.attn.c_attn.*        [(H+2KVH)D, C]    h.<i>.attn.c_attn (T)     cat(q_proj, k_proj, v_proj)
//        rows [0, HD) = q, [HD, (H+KVH)D) = k, [(H+KVH)D, (H+2KVH)D) = v; bias with `bias` or `qkv_bias`
//   h.<i>.attn.{q,k}_norm.weight [D]             -                         layers.<i>.self_attn.{q,k}_norm (qk_norm)
//   h.<i>.attn.c_proj.*        [C, HD]           h.<i>.attn.c_proj (T)     layers.<i>.self_attn.o_proj
//   h.<i>.ln_2.{weight,bias}   [C]               h.<i>.ln_2                post_attention_layernorm
//   h.<i>.mlp.c_fc.*           [F, C]            h.<i>.mlp.c_fc (T)        layers.<i>.mlp.up_proj
//   h.<i>.mlp.c_gate.*         [F, C]            -  (swiglu only)          layers.<i>.mlp.gate_proj
//   h.<i>.mlp.c_proj.*         [C, F]            h.<i>.mlp.c_proj (T)      layers.<i>.mlp.down_proj
//   ln_f.{weight,bias}         [C]               ln_f                      norm
//   lm_head.weight             [V, C]            -  (tied to wte)          lm_head (untied only)
//   (T) = transpose. Norm biases exist for LayerNorm with `bias` only; RMSNorm has a weight only.
// The model has no buffers: RoPE angles are computed from the position ids on every call.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "modules/core/registry.h"

namespace nurture {

// ---------------------------------------------------------------------------------------------
// Options, validation, presets
// ---------------------------------------------------------------------------------------------

// The architectural choices, parsed from their names once, when options are read (recipes,
// config.json); "layernorm", "rmsnorm", ... are their names there.
enum class NormKind { kLayerNorm, kRMSNorm };
enum class MlpKind { kGelu, kSwiGLU };          // GELU (tanh approximation, GPT-2) | SwiGLU (Llama)
enum class PositionKind { kLearned, kRope };    // a learned table (GPT-2 wpe) | rotary (Llama)
// How RoPE's frequencies are stretched for contexts longer than the model was trained on:
// none | linear (all divided by rope_factor) | llama3 (Llama 3.1: low frequencies divided by
// rope_factor, high ones kept, a smooth blend between; see rope_frequencies).
enum class RopeScaling { kNone, kLinear, kLlama3 };

const std::string& name_of(NormKind kind);
const std::string& name_of(MlpKind kind);
const std::string& name_of(PositionKind kind);
const std::string& name_of(RopeScaling kind);
std::ostream& operator<<(std::ostream& out, NormKind kind);  // by name: "rmsnorm"
std::ostream& operator<<(std::ostream& out, MlpKind kind);
std::ostream& operator<<(std::ostream& out, PositionKind kind);
std::ostream& operator<<(std::ostream& out, RopeScaling kind);
// The kind named `name`; throws std::invalid_argument naming `key` and the choices:
// norm ("batchnorm") must be one of: layernorm, rmsnorm
NormKind parse_norm(const std::string& name, const std::string& key = "norm");
MlpKind parse_mlp(const std::string& name, const std::string& key = "mlp");
PositionKind parse_position(const std::string& name, const std::string& key = "position");
RopeScaling parse_rope_scaling(const std::string& name, const std::string& key = "rope_scaling");

struct TransformerOptions {
  TORCH_ARG(int64_t, vocab_size) = 50257;
  TORCH_ARG(int64_t, block_size) = 1024;  // max positions (learned) / max sequence length (rope)
  TORCH_ARG(int64_t, n_layer) = 12;
  TORCH_ARG(int64_t, n_head) = 12;
  TORCH_ARG(int64_t, n_kv_head) = 0;  // 0 = n_head; fewer = grouped-query attention
  TORCH_ARG(int64_t, n_embd) = 768;
  TORCH_ARG(int64_t, head_dim) = 0;   // 0 = n_embd / n_head; else any width (Qwen3, Gemma: H * D != C)
  // 0 = default: 4*n_embd for "gelu"; for "swiglu" the Llama rule: 2/3 of 4*n_embd, rounded up
  // to a multiple of 256 (n_embd 2048 -> 5632, 288 -> 768, 64 -> 256). See resolved_mlp_hidden.
  TORCH_ARG(int64_t, mlp_hidden) = 0;
  TORCH_ARG(NormKind, norm) = NormKind::kLayerNorm;
  TORCH_ARG(double, norm_eps) = 1e-5;
  TORCH_ARG(MlpKind, mlp) = MlpKind::kGelu;
  TORCH_ARG(PositionKind, position) = PositionKind::kLearned;
  TORCH_ARG(double, rope_theta) = 10000.0;
  TORCH_ARG(RopeScaling, rope_scaling) = RopeScaling::kNone;
  TORCH_ARG(double, rope_factor) = 1.0;               // linear, llama3: the stretch
  TORCH_ARG(double, rope_low_freq_factor) = 1.0;      // llama3 only
  TORCH_ARG(double, rope_high_freq_factor) = 4.0;     // llama3 only
  TORCH_ARG(int64_t, rope_original_context) = 8192;   // llama3: the pre-training context
  TORCH_ARG(bool, bias) = true;            // biases in linears and LayerNorms
  TORCH_ARG(bool, qkv_bias) = false;       // biases on the q/k/v projection even without `bias` (Qwen2)
  TORCH_ARG(bool, qk_norm) = false;        // RMSNorm over each query and key head before RoPE (Qwen3)
  TORCH_ARG(bool, tie_embeddings) = true;  // lm_head shares wte's weight
  TORCH_ARG(double, dropout) = 0.0;        // embeddings, attention probabilities, residual branches
};

// Throws std::invalid_argument naming the key: "n_embd (100) must be divisible by n_head (3)"
// (when head_dim is 0).
void validate(const TransformerOptions& options);

// Derived sizes (after the 0 = default rules).
int64_t resolved_n_kv_head(const TransformerOptions& options);
int64_t resolved_mlp_hidden(const TransformerOptions& options);
inline int64_t resolved_head_dim(const TransformerOptions& o) {
  return o.head_dim() > 0 ? o.head_dim() : o.n_embd() / o.n_head();
}

// Fills `weight` from normal(0, std), in place; bf16/f16 weights are drawn in fp32 and rounded
// (LibTorch's own low-precision normal_ is several times slower on CPU).
void init_normal_(const torch::Tensor& weight, double std);

// RoPE's inverse frequencies [D/2] (theta^(-2i/D), then rope_scaling applied), in float64 or
// float32 (`dtype`), on `device`.
torch::Tensor rope_frequencies(const TransformerOptions& options, torch::ScalarType dtype,
                               const torch::Device& device = torch::kCPU);

// Named presets:
//   gpt2_tiny    GPT-2 style for tests and the quickstart: V 512, ctx 128, L 2, H 4, C 64
//   gpt2_124m    GPT-2 small:  V 50257, ctx 1024, L 12, H 12, C 768
//   gpt2_350m    GPT-2 medium: V 50257, ctx 1024, L 24, H 16, C 1024
//   llama_micro  Llama style for tests: V 512, ctx 128, L 2, H 4, KVH 2, C 64 (F 256)
//   llama_tiny   llama2.c stories15M shape: V 32000, ctx 256, L 6, H 6, C 288 (F 768), tied
//   llama_1b     TinyLlama-1.1B: V 32000, ctx 2048, L 22, H 32, KVH 4, C 2048, F 5632
// Unknown names throw std::invalid_argument listing the known ones.
TransformerOptions preset(const std::string& name);
std::vector<std::string> preset_names();

// The presets a recipe's `model: {preset: ...}` may name: the built-in ones above, registered on
// first use, and those plugins add.
using PresetFactory = std::function<TransformerOptions()>;
Registry<PresetFactory>& model_preset_registry();

// Parameter count computed from the options alone (equals the constructed model's).
int64_t count_parameters(const TransformerOptions& options);

// The option keys with their types ("int", "float", "bool", "string"; the kinds are strings
// there) and a one-line help, for recipe validation and `--help`.
struct OptionField {
  std::string name, type, help;
};
const std::vector<OptionField>& transformer_option_fields();

// Sets one option from its textual value (recipe overrides `model: {preset: x, n_layer: 6}`).
// Throws std::invalid_argument naming the key on an unknown key or a value of the wrong type.
void set_option(TransformerOptions& options, const std::string& key, const std::string& value);

// JSON with every key of transformer_option_fields(). options_from_json is strict: an unknown key
// or a value of the wrong type throws std::invalid_argument naming `source` and the key; missing
// keys keep their defaults. The result is validated.
nlohmann::json to_json(const TransformerOptions& options);
TransformerOptions options_from_json(const nlohmann::json& json, const std::string& source);

// ---------------------------------------------------------------------------------------------
// Attention kernels (exposed for tests and for callers that want the explicit path)
// ---------------------------------------------------------------------------------------------

// softmax(q kᵀ / sqrt(D) masked) v written in plain tensor ops.
// q: [B, H, T, D], k/v: [B, H, S, D] -> [B, H, T, D]. `mask` is boolean, broadcastable to
// [B, H, T, S] (true = attend), or undefined; is_causal adds the top-left causal mask (T == S).
// Masked scores are -inf; a row with nothing to attend to gives zeros, never NaN.
torch::Tensor explicit_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 const torch::Tensor& mask, double dropout_p, bool is_causal);

// compat::sdpa where LibTorch has it (flash / memory-efficient kernels on CUDA), otherwise
// explicit_attention. Same shapes and mask convention.
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, double dropout_p, bool is_causal);

// ---------------------------------------------------------------------------------------------
// KV cache
// ---------------------------------------------------------------------------------------------

// Keys and values of every layer for incremental decoding, preallocated [B, KVH, max_length, D].
// All rows share one length(): prompts are LEFT-padded and the attention mask passed with each
// call ([B, length() + T]) marks the padding. Made by TransformerImpl::make_cache.
class KVCache {
 public:
  KVCache() = default;
  KVCache(int64_t n_layer, int64_t batch, int64_t n_kv_head, int64_t max_length, int64_t head_dim,
          const torch::TensorOptions& tensor_options);

  int64_t length() const { return length_; }  // positions filled
  int64_t max_length() const { return max_length_; }
  int64_t batch_size() const;
  int64_t n_layer() const { return static_cast<int64_t>(keys_.size()); }
  void reset() { length_ = 0; }  // forget the contents (buffers are kept)

  // Keeps only the batch rows `rows` (int64 [B'], may repeat: beam search, dropping finished rows).
  void select_rows(const torch::Tensor& rows);

  // Used by the attention layers: writes k/v [B, KVH, T, D] at positions [length(), length()+T)
  // of `layer` and returns the filled prefixes [B, KVH, length()+T, D]. length() itself moves on
  // only with advance(T), once every layer has appended.
  std::pair<torch::Tensor, torch::Tensor> append(int64_t layer, const torch::Tensor& k,
                                                 const torch::Tensor& v);
  void advance(int64_t t);

 private:
  std::vector<torch::Tensor> keys_, values_;
  int64_t length_ = 0;
  int64_t max_length_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------------

struct NormOptions {
  NormOptions(int64_t dim) : dim_(dim) {}  // NOLINT(google-explicit-constructor): torch idiom
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(double, eps) = 1e-5;
  TORCH_ARG(bool, bias) = true;  // LayerNorm only
};

// x * rsqrt(mean(x²) + eps) * weight; weight only.
class RMSNormImpl : public torch::nn::Cloneable<RMSNormImpl> {
 public:
  explicit RMSNormImpl(NormOptions options);
  void reset() override;
  void reset_parameters();
  torch::Tensor forward(const torch::Tensor& x);  // x: [..., C] -> [..., C]
  NormOptions options;
  torch::Tensor weight;
};
TORCH_MODULE(RMSNorm);

// LayerNorm whose bias is optional (torch::nn::LayerNorm always has one in LibTorch 1.13).
class LayerNormImpl : public torch::nn::Cloneable<LayerNormImpl> {
 public:
  explicit LayerNormImpl(NormOptions options);
  void reset() override;
  void reset_parameters();
  torch::Tensor forward(const torch::Tensor& x);  // x: [..., C] -> [..., C]
  NormOptions options;
  torch::Tensor weight, bias;
};
TORCH_MODULE(LayerNorm);

// Causal self-attention with fused q/k/v projection, optional RoPE and grouped-query heads.
class AttentionImpl : public torch::nn::Cloneable<AttentionImpl> {
 public:
  AttentionImpl(TransformerOptions options, int64_t layer_index);
  void reset() override;
  void reset_parameters();
  // x: [B, T, C], rope cos/sin: [B, T, D] or undefined, mask: bool [B, 1, T, S] or undefined
  // -> q/k/v [B, H|KVH, T, D] -> [B, T, H D] -> c_proj -> [B, T, C]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask, bool is_causal, KVCache* cache);
  TransformerOptions options;
  int64_t layer_index;
  torch::nn::Linear c_attn{nullptr}, c_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};  // over D, qk_norm only
};
TORCH_MODULE(Attention);

// GELU (tanh) MLP: c_proj(gelu(c_fc(x))), or SwiGLU: c_proj(silu(c_gate(x)) * c_fc(x)).
class MLPImpl : public torch::nn::Cloneable<MLPImpl> {
 public:
  explicit MLPImpl(TransformerOptions options);
  void reset() override;
  void reset_parameters();
  torch::Tensor forward(const torch::Tensor& x);  // x: [B, T, C] -> [B, T, C]
  TransformerOptions options;
  torch::nn::Linear c_fc{nullptr}, c_gate{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(MLP);

// Pre-norm residual block: x + attn(ln_1(x)), then + mlp(ln_2(x)).
class BlockImpl : public torch::nn::Cloneable<BlockImpl> {
 public:
  BlockImpl(TransformerOptions options, int64_t layer_index);
  void reset() override;
  void reset_parameters();
  // x: [B, T, C] -> [B, T, C]  (other arguments as AttentionImpl::forward)
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask, bool is_causal, KVCache* cache);
  TransformerOptions options;
  int64_t layer_index;
  torch::nn::AnyModule ln_1, ln_2;  // LayerNorm or RMSNorm, per options.norm
  Attention attn{nullptr};
  MLP mlp{nullptr};
};
TORCH_MODULE(Block);

// ---------------------------------------------------------------------------------------------
// Transformer
// ---------------------------------------------------------------------------------------------

class TransformerImpl : public torch::nn::Cloneable<TransformerImpl> {
 public:
  explicit TransformerImpl(TransformerOptions options);  // validates
  void reset() override;
  void reset_parameters();  // GPT-2 init (see transformer.cpp)

  // idx: [B, T] int64; attention_mask: [B, S] with S = cache length + T (1 = real token,
  // 0 = padding; any integer dtype), or undefined (= all real). Position ids come from the mask
  // (counting real tokens), so left padding is handled. Packed rows give each document its own
  // id (1, 2, 3, ...): documents then neither attend to each other nor share positions. With a cache, appends this call's K/V and attends to
  // every cached position, then advances the cache by T.
  // -> hidden states after the final norm [B, T, C]
  torch::Tensor hidden_states(const torch::Tensor& idx, const torch::Tensor& attention_mask = {},
                              KVCache* cache = nullptr);
  torch::Tensor lm_head(const torch::Tensor& hidden);  // hidden: [B, T, C] -> [B, T, V]
  // idx: [B, T] -> logits [B, T, V]  (arguments as hidden_states)
  torch::Tensor forward(const torch::Tensor& idx, const torch::Tensor& attention_mask = {},
                        KVCache* cache = nullptr);

  // An empty cache for `batch` rows of up to max_length (<= block_size) positions, on the
  // module's device and dtype.
  KVCache make_cache(int64_t batch, int64_t max_length) const;

  TransformerOptions options;  // a public member, as in LibTorch's own modules (`model->options`)
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList h{nullptr};  // of Block
  torch::nn::AnyModule ln_f;
  torch::nn::Linear head{nullptr};  // registered as "lm_head"; untied only (else wte.weight)
};
TORCH_MODULE(Transformer);

// Generic builders (torchtune style): from options, or from a preset name.
Transformer build_transformer(const TransformerOptions& options);
Transformer build_transformer(const std::string& preset_name);

}  // namespace nurture
