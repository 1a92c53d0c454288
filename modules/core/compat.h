// Every difference between the LibTorch versions nurture builds against (Debian's 1.13.1 and
// 2.x from pip or the official archive) lives here, and nowhere else.
#pragma once
#include <torch/torch.h>
#include <torch/version.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>

#include <cstdint>
#include <mutex>
#include <type_traits>
#include <utility>

#define NURTURE_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

// scaled_dot_product_attention (flash / memory-efficient kernels on CUDA) exists from 2.0.
#define NURTURE_HAS_SDPA NURTURE_TORCH_AT_LEAST(2, 0)

namespace nurture::compat {

inline constexpr bool kHasSdpa = NURTURE_HAS_SDPA;

// softmax(q kᵀ / sqrt(D) + mask) v.  q: [B, H, T, D], k/v: [B, H, S, D] -> [B, H, T, D].
// `mask` is boolean [B or 1, 1, T, S] (true = attend) or undefined together with is_causal.
// Only called where kHasSdpa; the explicit path lives with the attention module.
inline torch::Tensor sdpa(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                          const torch::Tensor& mask, double dropout_p, bool is_causal) {
#if NURTURE_HAS_SDPA
  return at::scaled_dot_product_attention(q, k, v, mask.defined() ? c10::optional<at::Tensor>(mask)
                                                                   : c10::nullopt,
                                          dropout_p, is_causal);
#else
  (void)q, (void)k, (void)v, (void)mask, (void)dropout_p, (void)is_causal;
  TORCH_CHECK(false, "scaled_dot_product_attention needs LibTorch >= 2.0");
#endif
}

// A fresh random generator for `device` seeded with `seed`, independent of the global one (so
// sampling is reproducible whatever else draws numbers). CPU: a new CPU generator; CUDA: a clone of
// the device's default generator, reseeded (needs no CUDA headers here).
inline at::Generator make_generator(uint64_t seed, const torch::Device& device) {
  at::Generator generator = device.is_cpu()
                                ? at::detail::createCPUGenerator(seed)
                                : at::globalContext().defaultGenerator(device).clone();
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_current_seed(seed);
  return generator;
}

// Mixed precision: while alive, the ops autocast knows (matrix products, attention) on `device`'s
// type compute in `dtype` (kBFloat16 or kHalf) while parameters stay fp32; the previous state is
// restored on destruction. kFloat (or kDouble) leaves everything as it is.
class AutocastGuard {
 public:
  AutocastGuard(const torch::Device& device, at::ScalarType dtype)
      : type_(device.type()), active_(dtype == at::kBFloat16 || dtype == at::kHalf) {
    if (!active_) return;
    was_enabled_ = enabled(type_);
    was_dtype_ = get_dtype(type_);
    set(type_, true, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!active_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    set(type_, was_enabled_, was_dtype_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
#if NURTURE_TORCH_AT_LEAST(2, 4)
  static bool enabled(c10::DeviceType t) { return at::autocast::is_autocast_enabled(t); }
  static at::ScalarType get_dtype(c10::DeviceType t) { return at::autocast::get_autocast_dtype(t); }
  static void set(c10::DeviceType t, bool on, at::ScalarType dtype) {
    at::autocast::set_autocast_enabled(t, on);
    at::autocast::set_autocast_dtype(t, dtype);
  }
#else
  static bool enabled(c10::DeviceType t) {
    return t == c10::DeviceType::CPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
  }
  static at::ScalarType get_dtype(c10::DeviceType t) {
    return t == c10::DeviceType::CPU ? at::autocast::get_autocast_cpu_dtype()
                                     : at::autocast::get_autocast_gpu_dtype();
  }
  static void set(c10::DeviceType t, bool on, at::ScalarType dtype) {
    if (t == c10::DeviceType::CPU) {
      at::autocast::set_cpu_enabled(on);
      at::autocast::set_autocast_cpu_dtype(dtype);
    } else {
      at::autocast::set_enabled(on);
      at::autocast::set_autocast_gpu_dtype(dtype);
    }
  }
#endif
  c10::DeviceType type_;
  bool active_;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kFloat;
};

// AdamW's update as one fused multi-tensor kernel (aten::_fused_adamw_): CPU and CUDA from 2.4.
// Tensors of one call share a device and dtype; `steps` are float32 scalars on that device that
// already count this step. Where kHasFusedAdamW is false, torch::optim::AdamW's own loop runs.
inline constexpr bool kHasFusedAdamW = NURTURE_TORCH_AT_LEAST(2, 4);
inline void fused_adamw(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                        at::TensorList exp_avg_sqs, at::TensorList steps, double lr, double beta1,
                        double beta2, double weight_decay, double eps) {
#if NURTURE_TORCH_AT_LEAST(2, 4)
  at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, lr, beta1, beta2,
                    weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
#else
  (void)params, (void)grads, (void)exp_avgs, (void)exp_avg_sqs, (void)steps;
  (void)lr, (void)beta1, (void)beta2, (void)weight_decay, (void)eps;
  TORCH_CHECK(false, "the fused AdamW kernel needs LibTorch >= 2.4");
#endif
}

// The key of a parameter in torch::optim::Optimizer's per-parameter state map: the TensorImpl's
// address as a string up to 1.13, the address itself from 2.0.
inline auto optimizer_state_key(const torch::Tensor& param) {
#if NURTURE_TORCH_AT_LEAST(2, 0)
  return static_cast<void*>(param.unsafeGetTensorImpl());
#else
  return c10::guts::to_string(param.unsafeGetTensorImpl());
#endif
}

// CUDA fp32 matrix products in TensorFloat-32 (tensor cores; ~1e-3 relative error) or in IEEE
// fp32 (LibTorch's default). The string setter exists in 1.13 and every 2.x.
inline void set_cuda_matmul_tf32(bool on) { at::globalContext().setFloat32MatmulPrecision(on ? "high" : "highest"); }

// c10d's TCPStore: from 2.4 it defaults to a libuv server, which LibTorch builds without libuv
// (Debian's 2.6) refuse at run time ("use_libuv was requested but PyTorch was build without libuv
// support"). use_classic_tcp_store() selects the classic server where the option exists (a
// template on TCPStoreOptions, so this header needs no c10d header).
template <class Options, class = void>
struct HasUseLibUV : std::false_type {};
template <class Options>
struct HasUseLibUV<Options, std::void_t<decltype(std::declval<Options&>().useLibUV)>> : std::true_type {};

template <class Options>
bool use_classic_tcp_store(Options& options) {
  if constexpr (HasUseLibUV<Options>::value) {
    options.useLibUV = false;
    return true;
  }
  return false;
}

// What keeps an autograd Node (a gradient accumulator) alive: std::shared_ptr up to 2.13,
// c10::intrusive_ptr from 2.14; whatever impl::grad_accumulator returns.
using AutogradNodePtr =
    decltype(torch::autograd::impl::grad_accumulator(std::declval<const torch::autograd::Variable&>()));

// Version string of the LibTorch in use, for logs and summary.json.
inline std::string torch_version() { return TORCH_VERSION; }

}  // namespace nurture::compat
