// The shared training loop: schedule values, which parameters decay, gradient accumulation that
// weighs every unit the same, and a resumed run that ends bit-identical to an uninterrupted one.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "pipelines/trainer.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using namespace nurture::testing;
namespace fs = std::filesystem;

TEST(LearningRate, WarmupThenCosineToTheFloor) {
  TrainingOptions o;
  o.lr = 1.0;
  o.min_lr_ratio = 0.1;
  o.warmup_steps = 4;
  o.max_steps = 14;
  EXPECT_DOUBLE_EQ(learning_rate(o, 0), 0.25);
  EXPECT_DOUBLE_EQ(learning_rate(o, 3), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(o, 4), 1.0);                          // decay starts
  EXPECT_NEAR(learning_rate(o, 9), 0.1 + 0.9 * 0.5, 1e-12);            // halfway: cos(π/2) = 0
  EXPECT_NEAR(learning_rate(o, 14), 0.1, 1e-12);
  o.schedule = "linear";
  EXPECT_NEAR(learning_rate(o, 9), 1.0 - 0.9 * 0.5, 1e-12);
  o.schedule = "constant";
  EXPECT_DOUBLE_EQ(learning_rate(o, 13), 1.0);
}

TEST(MakeAdamW, DecaysMatricesOnly) {
  torch::nn::Sequential model(torch::nn::Linear(3, 4), torch::nn::LayerNorm(torch::nn::LayerNormOptions({4})));
  TrainingOptions o;
  o.weight_decay = 0.25;
  auto optimizer = make_adamw(*model, o);
  ASSERT_EQ(optimizer->param_groups().size(), 2u);
  const auto& decay = optimizer->param_groups()[0];
  const auto& no_decay = optimizer->param_groups()[1];
  ASSERT_EQ(decay.params().size(), 1u);  // the Linear's weight
  EXPECT_EQ(decay.params()[0].dim(), 2);
  EXPECT_EQ(no_decay.params().size(), 3u);  // bias, LayerNorm weight and bias
  EXPECT_DOUBLE_EQ(static_cast<const torch::optim::AdamWOptions&>(decay.options()).weight_decay(), 0.25);
  EXPECT_DOUBLE_EQ(static_cast<const torch::optim::AdamWOptions&>(no_decay.options()).weight_decay(), 0.0);
  set_learning_rate(*optimizer, 0.5);
  EXPECT_DOUBLE_EQ(optimizer->param_groups()[1].options().get_lr(), 0.5);
}

// A least-squares problem with examples of different weights ("units"), in float64.
class TrainerTest : public Seeded {
 protected:
  void SetUp() override {
    Seeded::SetUp();
    dir_ = scratch_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    x_ = torch::randn({12, 3}, torch::kFloat64);
    y_ = torch::randn({12, 1}, torch::kFloat64);
    units_ = torch::tensor({1, 2, 3, 1, 5, 1, 2, 2, 4, 1, 1, 3}, torch::kFloat64);
  }
  torch::nn::Linear make_model() {
    torch::manual_seed(7);
    torch::nn::Linear model(3, 1);
    model->to(torch::kFloat64);
    return model;
  }
  StageContext context(const fs::path& dir) {
    StageContext ctx{"toy", "toy", dir, Settings(ConfigNode::map({}), "stages.toy"), {}, {}};
    fs::create_directories(dir);
    return ctx;
  }
  // Micro-batches of `per_batch` consecutive examples (wrapping around); each example's squared
  // error counts units[i] times.
  Trainer::MicroStep step_fn(torch::nn::Linear& model, int64_t per_batch) {
    return [this, &model, per_batch](TrainingState& state) {
      auto idx = (torch::arange(per_batch, torch::kInt64) + state.data_position) % 12;
      state.data_position += per_batch;
      auto err = (model->forward(x_.index_select(0, idx)) - y_.index_select(0, idx)).pow(2).squeeze(1);
      auto u = units_.index_select(0, idx);
      return MicroBatch{(err * u).sum(), u.sum(), per_batch, {{"err", (err * u).sum().detach()}}};
    };
  }
  TrainingOptions options(int64_t accum) {
    TrainingOptions o;
    o.max_steps = 10;
    o.lr = 0.05;
    o.warmup_steps = 2;
    o.grad_accum = accum;
    o.eval_every = 0;
    o.log_every = 3;
    return o;
  }
  fs::path dir_;
  torch::Tensor x_, y_, units_;
};

TEST_F(TrainerTest, AccumulationWeighsEveryUnitTheSame) {
  auto whole = make_model();
  auto ctx1 = context(dir_ / "whole");
  Trainer(ctx1, *whole, options(1)).fit(step_fn(whole, 6), [] { return nlohmann::json::object(); });

  auto split = make_model();
  auto ctx2 = context(dir_ / "split");
  Trainer(ctx2, *split, options(3)).fit(step_fn(split, 2), [] { return nlohmann::json::object(); });

  // Micro-batches of 2 hold different unit totals (e.g. 3 vs 8); dividing once by the step's
  // total gives the same update as one batch of 6.
  EXPECT_LT((whole->weight - split->weight).abs().max().item<double>(), 1e-12);
  EXPECT_LT((whole->bias - split->bias).abs().max().item<double>(), 1e-12);
  EXPECT_GT((whole->weight - make_model()->weight).abs().max().item<double>(), 1e-3);  // it trained
}

TEST_F(TrainerTest, ResumedRunEndsIdenticalToAnUninterruptedOne) {
  auto straight = make_model();
  auto ctx1 = context(dir_ / "straight");
  auto metrics = Trainer(ctx1, *straight, options(1)).fit(step_fn(straight, 4), [] { return nlohmann::json::object(); });
  EXPECT_EQ(metrics["steps"], 10);

  // Stop after step 4 (as SIGTERM would), then resume with a fresh model and trainer.
  auto ctx2 = context(dir_ / "resumed");
  {
    auto model = make_model();
    Trainer trainer(ctx2, *model, options(1));
    auto fn = step_fn(model, 4);
    EXPECT_THROW(trainer.fit(
                     [&](TrainingState& s) {
                       if (s.step == 3) request_stop();
                       return fn(s);
                     },
                     [] { return nlohmann::json::object(); }),
                 StageInterrupted);
    clear_stop_request();
  }
  ASSERT_TRUE(fs::exists(dir_ / "resumed" / "checkpoint" / "state.json"));
  auto state = nlohmann::json::parse(read_file(dir_ / "resumed" / "checkpoint" / "state.json"));
  EXPECT_EQ(state["step"], 4);
  EXPECT_EQ(state["data_position"], 16);

  auto resumed = make_model();
  Trainer trainer(ctx2, *resumed, options(1));
  trainer.resume_if_possible();
  EXPECT_EQ(trainer.state().step, 4);
  trainer.fit(step_fn(resumed, 4), [] { return nlohmann::json::object(); });
  EXPECT_TRUE(torch::equal(straight->weight, resumed->weight));
  EXPECT_TRUE(torch::equal(straight->bias, resumed->bias));

  // metrics.jsonl holds each logged step once, as the uninterrupted run's does.
  EXPECT_EQ(read_file(dir_ / "resumed" / "metrics.jsonl").size() > 0, true);
  auto count_lines = [](const fs::path& f) {
    std::ifstream in(f);
    std::string line;
    int n = 0;
    while (std::getline(in, line)) ++n;
    return n;
  };
  EXPECT_EQ(count_lines(dir_ / "resumed" / "metrics.jsonl"), count_lines(dir_ / "straight" / "metrics.jsonl"));
}

TEST_F(TrainerTest, DamagedCheckpointIsAClearError) {
  auto model = make_model();
  auto ctx = context(dir_ / "run");
  Trainer(ctx, *model, options(1)).fit(step_fn(model, 4), [] { return nlohmann::json::object(); });
  write_file(dir_ / "run" / "checkpoint" / "model.pt", "not a checkpoint");
  Trainer again(ctx, *model, options(1));
  try {
    again.resume_if_possible();
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find((dir_ / "run" / "checkpoint" / "model.pt").string() +
                                         ": cannot resume from this checkpoint"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace nurture
