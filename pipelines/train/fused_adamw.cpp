// FusedAdamW: torch::optim::AdamW's state, updated by aten::_fused_adamw_.
#include "pipelines/train/fused_adamw.h"

#include <map>
#include <tuple>
#include <vector>

#include "modules/core/compat.h"

namespace nurture {

bool FusedAdamW::fused() { return compat::kHasFusedAdamW; }

torch::Tensor FusedAdamW::step(LossClosure closure) {
  for (const auto& group : param_groups())
    if (static_cast<const torch::optim::AdamWOptions&>(group.options()).amsgrad()) return AdamW::step(closure);
  if (!fused()) return AdamW::step(closure);

  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure) {
    torch::AutoGradMode enable_grad(true);
    loss = closure();
  }
  // One kernel call per group and (device, dtype), as the kernel requires.
  struct Lists {
    std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs, steps;
  };
  for (auto& group : param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(group.options());
    std::map<std::tuple<int, int, int>, Lists> lists;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      TORCH_CHECK(!p.grad().is_sparse(), "FusedAdamW does not support sparse gradients");
      auto& slot = state_[compat::optimizer_state_key(p)];
      if (!slot) {  // as AdamW initialises it
        auto fresh = std::make_unique<torch::optim::AdamWParamState>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        slot = std::move(fresh);
      }
      auto& state = static_cast<torch::optim::AdamWParamState&>(*slot);
      StepCount& count = step_counts_[p.unsafeGetTensorImpl()];
      if (!count.tensor.defined() || count.value != state.step())
        count.tensor = torch::full({}, static_cast<double>(state.step()),
                                   torch::TensorOptions().dtype(torch::kFloat).device(p.device()));
      state.step(state.step() + 1);
      count.value = state.step();

      Lists& l = lists[{static_cast<int>(p.device().type()), p.device().index(), static_cast<int>(p.scalar_type())}];
      l.params.push_back(p);
      l.grads.push_back(p.grad());
      l.exp_avgs.push_back(state.exp_avg());
      l.exp_avg_sqs.push_back(state.exp_avg_sq());
      l.steps.push_back(count.tensor);
    }
    if (lists.empty()) continue;
    // The kernel reads the count including this step.
    std::vector<torch::Tensor> group_steps;
    for (auto& [key, l] : lists) group_steps.insert(group_steps.end(), l.steps.begin(), l.steps.end());
    at::_foreach_add_(group_steps, 1);
    for (auto& [key, l] : lists)
      compat::fused_adamw(l.params, l.grads, l.exp_avgs, l.exp_avg_sqs, l.steps, options.lr(),
                          std::get<0>(options.betas()), std::get<1>(options.betas()), options.weight_decay(),
                          options.eps());
  }
  return loss;
}

}  // namespace nurture
