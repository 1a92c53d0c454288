// Every difference between the LibTorch versions nurture builds against (Debian's 1.13.1 and
// 2.x from pip or the official archive) lives here, and nowhere else.
#pragma once
#include <torch/torch.h>
#include <torch/version.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cstdint>
#include <mutex>

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

// Version string of the LibTorch in use, for logs and summary.json.
inline std::string torch_version() { return TORCH_VERSION; }

}  // namespace nurture::compat
