// Named cross-rank sums (see cross_rank_sums.h).
#include "pipelines/rl/cross_rank_sums.h"

#include <stdexcept>

#include "pipelines/runtime/distributed.h"

namespace nurture::rl {

void CrossRankSums::add(const std::string& name, const torch::Tensor& value) {
  if (reduced_) throw std::logic_error("CrossRankSums: '" + name + "' added after reduce()");
  TORCH_CHECK(value.numel() == 1, "CrossRankSums: '", name, "' must be one value, got ", value.sizes());
  for (const auto& known : names_)
    if (known == name) throw std::logic_error("CrossRankSums: '" + name + "' added twice");
  names_.push_back(name);
  values_.push_back(value.detach().reshape({}).to(device_, torch::kFloat64));
}

void CrossRankSums::add(const std::string& name, double value) {
  add(name, torch::full({}, value, torch::TensorOptions().dtype(torch::kFloat64).device(device_)));
}

void CrossRankSums::reduce() {
  if (reduced_) throw std::logic_error("CrossRankSums: reduce() called twice");
  reduced_ = true;
  if (values_.empty()) return;
  torch::Tensor all = torch::stack(values_);
  dist::all_reduce_sum(all);
  const auto host = all.cpu().contiguous();
  const double* v = host.data_ptr<double>();
  for (size_t i = 0; i < names_.size(); ++i) sums_[names_[i]] = v[i];
}

double CrossRankSums::operator[](const std::string& name) const {
  if (!reduced_) throw std::logic_error("CrossRankSums: '" + name + "' read before reduce()");
  auto it = sums_.find(name);
  if (it == sums_.end()) throw std::logic_error("CrossRankSums: no sum named '" + name + "'");
  return it->second;
}

}  // namespace nurture::rl
