// Tests of FusedAdamW: the same parameters as torch::optim::AdamW step for step (float64 and
// float32, two groups, one with decay), and checkpoints that move between the two mid-run.
#include "pipelines/train/fused_adamw.h"

#include <gtest/gtest.h>

#include <sstream>

#include "modules/core/compat.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using testing::max_abs;

// Two groups as make_adamw builds them: decay on the matrix, none on the vector.
struct Problem {
  torch::Tensor w, b;
  std::vector<torch::optim::OptimizerParamGroup> groups(double lr) const {
    auto decay = std::make_unique<torch::optim::AdamWOptions>(lr);
    decay->betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1);
    auto none = std::make_unique<torch::optim::AdamWOptions>(lr);
    none->betas({0.9, 0.95}).eps(1e-8).weight_decay(0.0);
    std::vector<torch::optim::OptimizerParamGroup> g;
    g.emplace_back(std::vector<torch::Tensor>{w}, std::move(decay));
    g.emplace_back(std::vector<torch::Tensor>{b}, std::move(none));
    return g;
  }
};

Problem make_problem(torch::ScalarType dtype) {
  torch::manual_seed(7);
  return {torch::randn({12, 5}, dtype).set_requires_grad(true), torch::randn({5}, dtype).set_requires_grad(true)};
}

Problem copy_of(const Problem& p) {
  return {p.w.detach().clone().set_requires_grad(true), p.b.detach().clone().set_requires_grad(true)};
}

// Gradients of a fixed loss (a different one each step).
void backward(const Problem& p, int step) {
  const auto x = torch::linspace(-1, 1, 12, p.w.options().requires_grad(false)) * (1 + step);
  const auto loss = (torch::tanh(x.matmul(p.w) + p.b) - 0.3).pow(2).sum() + p.w.abs().sum() * 0.01;
  loss.backward();
}

void run(torch::optim::Optimizer& optimizer, const Problem& p, int from, int to) {
  for (int step = from; step < to; ++step) {
    optimizer.zero_grad();
    backward(p, step);
    optimizer.step();
  }
}

double relative(const Problem& a, const Problem& b) {
  return std::max(max_abs(a.w - b.w) / max_abs(b.w), max_abs(a.b - b.b) / max_abs(b.b));
}

TEST(FusedAdamW, StepsLikeAdamW) {
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    const Problem start = make_problem(dtype);
    Problem fused_p = copy_of(start), plain_p = copy_of(start);
    FusedAdamW fused(fused_p.groups(0.05), torch::optim::AdamWOptions(0.05));
    torch::optim::AdamW plain(plain_p.groups(0.05), torch::optim::AdamWOptions(0.05));
    run(fused, fused_p, 0, 8);
    run(plain, plain_p, 0, 8);
    const double moved = max_abs(plain_p.w - start.w);
    std::cout << "[fused adamw] " << (FusedAdamW::fused() ? "fused kernel" : "AdamW's loop (LibTorch < 2.4)")
              << ", " << c10::toString(dtype) << ": relative difference " << relative(fused_p, plain_p)
              << " after 8 steps that moved the weights by up to " << moved << "\n";
    EXPECT_GT(moved, 0.1);
    EXPECT_LT(relative(fused_p, plain_p), dtype == torch::kDouble ? 1e-13 : 1e-5);
    // The step count AdamW saves is kept up to date.
    for (const auto& p : {fused_p.w, fused_p.b}) {
      auto& state = static_cast<torch::optim::AdamWParamState&>(
          *fused.state().at(compat::optimizer_state_key(p)));
      EXPECT_EQ(state.step(), 8);
    }
  }
}

// A checkpoint of either resumes in the other: 3 steps, save, load into the other kind, 5 more.
TEST(FusedAdamW, CheckpointsMoveBetweenFusedAndPlainAdamW) {
  const Problem start = make_problem(torch::kDouble);
  Problem reference = copy_of(start);
  torch::optim::AdamW uninterrupted(reference.groups(0.05), torch::optim::AdamWOptions(0.05));
  run(uninterrupted, reference, 0, 8);

  for (bool fused_first : {true, false}) {
    Problem p = copy_of(start);
    std::unique_ptr<torch::optim::AdamW> first, second;
    auto make = [&](bool fused) -> std::unique_ptr<torch::optim::AdamW> {
      if (fused) return std::make_unique<FusedAdamW>(p.groups(0.05), torch::optim::AdamWOptions(0.05));
      return std::make_unique<torch::optim::AdamW>(p.groups(0.05), torch::optim::AdamWOptions(0.05));
    };
    first = make(fused_first);
    run(*first, p, 0, 3);
    std::stringstream saved;
    torch::save(*first, saved);
    second = make(!fused_first);
    torch::load(*second, saved);
    run(*second, p, 3, 8);
    EXPECT_LT(relative(p, reference), 1e-13) << (fused_first ? "fused -> AdamW" : "AdamW -> fused");
  }
}

}  // namespace
}  // namespace nurture
