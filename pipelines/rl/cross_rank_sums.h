// Named sums over the data-parallel ranks: add values under names, reduce once (one all-reduce,
// one read back to the host), then read them by name. Every rank must add the same names in the
// same order.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace nurture::rl {

class CrossRankSums {
 public:
  explicit CrossRankSums(const torch::Device& device) : device_(device) {}
  // A [] tensor (any floating or integer dtype; summed in float64) or a host number.
  void add(const std::string& name, const torch::Tensor& value);
  void add(const std::string& name, double value);
  // Sums every value over the ranks (world_size 1: no communication) and reads them back.
  void reduce();
  // The sum named `name` over the ranks; a std::logic_error before reduce() or for a name never added.
  double operator[](const std::string& name) const;

 private:
  torch::Device device_;
  std::vector<std::string> names_;
  std::vector<torch::Tensor> values_;
  std::map<std::string, double> sums_;
  bool reduced_ = false;
};

}  // namespace nurture::rl
