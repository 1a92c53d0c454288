// AdamW whose step runs LibTorch's fused multi-tensor kernel where LibTorch has one (2.4 and
// later, CPU and CUDA): one pass over each parameter instead of about eight, and on a GPU a few
// kernel launches per step instead of several per parameter. Elsewhere (Debian's 1.13) it is
// torch::optim::AdamW unchanged. The state, the options and the checkpoints are AdamW's, so a
// checkpoint written by either resumes in the other.
#pragma once
#include <torch/torch.h>

#include <unordered_map>

namespace nurture {

class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  torch::Tensor step(LossClosure closure = nullptr) override;

  // Whether step() uses the fused kernel in this build (LibTorch >= 2.4).
  static bool fused();

 private:
  // The kernel reads each parameter's step count from a float32 tensor on its device; kept
  // here, with the count it holds, and rebuilt when AdamW's own count (the one checkpoints save)
  // says otherwise (after a load).
  struct StepCount {
    torch::Tensor tensor;
    int64_t value = -1;
  };
  std::unordered_map<const void*, StepCount> step_counts_;
};

}  // namespace nurture
