// Reward and value heads on a Transformer backbone.
#include "modules/model/heads.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace nurture {

torch::Tensor last_token_index(const torch::Tensor& attention_mask, int64_t batch, int64_t length,
                               const torch::Device& device) {
  auto lopt = torch::TensorOptions().dtype(torch::kLong).device(device);
  if (!attention_mask.defined()) return torch::full({batch}, length - 1, lopt);
  TORCH_CHECK(
      attention_mask.dim() == 2 && attention_mask.size(0) == batch && attention_mask.size(1) == length,
      "attention_mask must be [", batch, ", ", length, "], got ", attention_mask.sizes());
  // The largest position whose mask is set: max over (mask != 0) * position.
  auto real = (attention_mask.to(device) != 0).to(torch::kLong);
  return (real * torch::arange(length, lopt)).amax(1);  // [B]
}

void copy_parameters(torch::nn::Module& target, const torch::nn::Module& source) {
  torch::NoGradGuard no_grad;
  auto source_params = source.named_parameters(/*recurse=*/true);
  for (auto& item : target.named_parameters(/*recurse=*/true)) {
    const auto* found = source_params.find(item.key());
    if (found == nullptr) {
      throw std::runtime_error("copy_parameters: source has no parameter \"" + item.key() + "\"");
    }
    if (found->sizes() != item.value().sizes()) {
      std::ostringstream message;
      message << "copy_parameters: parameter \"" << item.key() << "\" has shape " << item.value().sizes()
              << " but the source's is " << found->sizes();
      throw std::runtime_error(message.str());
    }
    item.value().copy_(*found);
  }
}

namespace {

void init_scalar_head(const torch::nn::Linear& head, int64_t n_embd) {
  torch::NoGradGuard no_grad;
  init_normal_(head->weight, 1.0 / std::sqrt(static_cast<double>(n_embd + 1)));
  head->bias.zero_();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Reward model
// ---------------------------------------------------------------------------------------------

RewardModelImpl::RewardModelImpl(TransformerOptions options_) : options(std::move(options_)) { reset(); }

void RewardModelImpl::reset() {
  transformer = register_module("transformer", Transformer(options));
  score = register_module("score", torch::nn::Linear(options.n_embd(), 1));
  init_scalar_head(score, options.n_embd());
  // Pairwise losses see only reward differences, so the bias gets no true gradient (Adam would
  // turn its rounding noise into steps); frozen at 0 it keeps the head Hugging Face's.
  score->bias.set_requires_grad(false);
}

void RewardModelImpl::reset_parameters() {
  transformer->reset_parameters();
  init_scalar_head(score, options.n_embd());
}

torch::Tensor RewardModelImpl::forward(const torch::Tensor& idx, const torch::Tensor& attention_mask) {
  // idx: [B, T] -> hidden [B, T, C] -> last real token [B, C] -> [B]
  auto hidden = transformer->hidden_states(idx, attention_mask);
  const int64_t B = hidden.size(0), C = hidden.size(2);
  auto last = last_token_index(attention_mask, B, hidden.size(1), hidden.device());
  auto picked = hidden.gather(1, last.view({B, 1, 1}).expand({B, 1, C})).squeeze(1);  // [B, C]
  return score(picked).squeeze(-1);
}

void RewardModelImpl::load_backbone(const Transformer& source) { copy_parameters(*transformer, *source); }

// ---------------------------------------------------------------------------------------------
// Value model
// ---------------------------------------------------------------------------------------------

ValueModelImpl::ValueModelImpl(TransformerOptions options_) : options(std::move(options_)) { reset(); }

void ValueModelImpl::reset() {
  transformer = register_module("transformer", Transformer(options));
  value_head = register_module("value_head", torch::nn::Linear(options.n_embd(), 1));
  init_scalar_head(value_head, options.n_embd());
}

void ValueModelImpl::reset_parameters() {
  transformer->reset_parameters();
  init_scalar_head(value_head, options.n_embd());
}

torch::Tensor ValueModelImpl::forward(const torch::Tensor& idx, const torch::Tensor& attention_mask) {
  // idx: [B, T] -> hidden [B, T, C] -> [B, T]
  return value_head(transformer->hidden_states(idx, attention_mask)).squeeze(-1);
}

void ValueModelImpl::load_backbone(const Transformer& source) { copy_parameters(*transformer, *source); }

}  // namespace nurture
