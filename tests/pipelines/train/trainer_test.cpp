// The shared training loop: schedule values, which parameters decay, gradient accumulation that
// weighs every unit the same, a resumed run that ends bit-identical to an uninterrupted one,
// damaged checkpoints passed over, and non-finite steps skipped.
#include <gmock/gmock.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <set>

#include "pipelines/train/manifest.h"
#include "pipelines/train/trainer.h"
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
  ASSERT_TRUE(fs::exists(dir_ / "resumed" / "checkpoints" / "step-00000004" / "state.json"));
  auto state = nlohmann::json::parse(read_file(dir_ / "resumed" / "checkpoints" / "step-00000004" / "state.json"));
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

// Checkpoints every 4 steps, keeping 2: steps 8 and 10 remain. With the newest one damaged, the
// run resumes from step 8 (warning about step 10) and ends where the uninterrupted run ended.
TEST_F(TrainerTest, DamagedNewestCheckpointFallsBackToThePreviousIntactOne) {
  auto o = options(1);
  o.save_every = 4;
  auto straight = make_model();
  auto ctx = context(dir_ / "run");
  Trainer(ctx, *straight, o).fit(step_fn(straight, 4), [] { return nlohmann::json::object(); });
  std::vector<std::string> kept;
  for (const auto& dir : list_checkpoints(dir_ / "run")) kept.push_back(dir.filename().string());
  EXPECT_EQ(kept, (std::vector<std::string>{"step-00000010", "step-00000008"}));

  const fs::path newest = dir_ / "run" / "checkpoints" / "step-00000010" / "model.pt";
  std::string bytes = read_file(newest);
  bytes[bytes.size() / 2] ^= 0x20;  // one flipped bit, same size
  write_file(newest, bytes);
  auto resumed = make_model();
  Trainer trainer(ctx, *resumed, o);
  ::testing::internal::CaptureStderr();
  trainer.resume_if_possible();
  const std::string warnings = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(warnings.find("[toy] warning: damaged checkpoint step-00000010: model.pt: its SHA-256 differs "
                          "from the manifest's"),
            std::string::npos)
      << warnings;
  EXPECT_NE(warnings.find("resuming from the newest intact one, " + (dir_ / "run" / "checkpoints" / "step-00000008").string()),
            std::string::npos)
      << warnings;
  EXPECT_EQ(trainer.state().step, 8);
  trainer.fit(step_fn(resumed, 4), [] { return nlohmann::json::object(); });
  EXPECT_TRUE(torch::equal(straight->weight, resumed->weight));
  EXPECT_TRUE(torch::equal(straight->bias, resumed->bias));
}

TEST_F(TrainerTest, NoIntactCheckpointIsAClearError) {
  auto model = make_model();
  auto ctx = context(dir_ / "run");
  Trainer(ctx, *model, options(1)).fit(step_fn(model, 4), [] { return nlohmann::json::object(); });
  const fs::path file = dir_ / "run" / "checkpoints" / "step-00000010" / "optimizer.pt";
  const std::string bytes = read_file(file);
  write_file(file, bytes.substr(0, bytes.size() / 3));  // truncated
  Trainer again(ctx, *model, options(1));
  try {
    again.resume_if_possible();
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("no intact checkpoint in " + (dir_ / "run" / "checkpoints").string() +
                                               " (step-00000010: optimizer.pt: " + std::to_string(bytes.size() / 3) +
                                               " bytes, the manifest says " + std::to_string(bytes.size()) +
                                               " (truncated?)). HINT: run with --force"));
  }
  // A checkpoint a crash left half-written (no manifest yet) is not taken either.
  fs::remove(dir_ / "run" / "checkpoints" / "step-00000010" / "manifest.json");
  EXPECT_THROW(again.resume_if_possible(), std::runtime_error);
  // And one written into a .tmp directory is ignored.
  fs::rename(dir_ / "run" / "checkpoints" / "step-00000010", dir_ / "run" / "checkpoints" / "step-00000010.tmp");
  EXPECT_TRUE(list_checkpoints(dir_ / "run").empty());
}

// A micro-batch whose loss is NaN (a broken example) skips its step: the parameters stay as they
// were, the step is counted, and the run goes on; max_nonfinite_steps in a row stop it with the
// last checkpoint intact.
TEST_F(TrainerTest, NonFiniteStepsAreSkippedAndTooManyStopTheStage) {
  auto o = options(1);
  o.save_every = 2;
  o.max_nonfinite_steps = 3;
  auto model = make_model();
  auto ctx = context(dir_ / "run");
  Trainer trainer(ctx, *model, o);
  auto fn = step_fn(model, 4);
  const std::set<int64_t> bad = {3, 6};
  torch::Tensor before;  // the weights when a poisoned step began
  int checked = 0;
  auto poisoned = [&](TrainingState& s) {
    if (bad.count(s.step - 1)) {  // the step before was skipped: no update
      EXPECT_TRUE(torch::equal(model->weight, before)) << "step " << s.step;
      ++checked;
    }
    MicroBatch mb = fn(s);
    if (bad.count(s.step)) {
      before = model->weight.detach().clone();
      mb.loss_sum = mb.loss_sum * std::numeric_limits<double>::quiet_NaN();
    }
    return mb;
  };
  ::testing::internal::CaptureStderr();
  auto metrics = trainer.fit(poisoned, [] { return nlohmann::json::object(); });
  EXPECT_EQ(checked, 2);
  const std::string warnings = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(metrics["skipped_steps"], 2);
  EXPECT_EQ(metrics["steps"], 10);
  EXPECT_THAT(warnings, ::testing::HasSubstr("[toy] warning: step 4 skipped (loss nan"));
  EXPECT_THAT(warnings, ::testing::HasSubstr("[toy] warning: step 7 skipped"));

  // Three in a row (steps 5-7) stop the stage. The newest checkpoint, of step 6, holds the weights
  // of step 4: skipped steps change nothing.
  auto model2 = make_model();
  auto ctx2 = context(dir_ / "stops");
  Trainer stopping(ctx2, *model2, o);
  auto fn2 = step_fn(model2, 4);
  auto always_nan_from_5 = [&](TrainingState& s) {
    MicroBatch mb = fn2(s);
    if (s.step >= 4) mb.loss_sum = mb.loss_sum * std::numeric_limits<double>::quiet_NaN();
    return mb;
  };
  ::testing::internal::CaptureStderr();
  try {
    stopping.fit(always_nan_from_5, [] { return nlohmann::json::object(); });
    FAIL() << "expected the stage to stop";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("step 7: 3 steps in a row had a non-finite loss or gradient norm"));
    EXPECT_THAT(e.what(), ::testing::HasSubstr("The last checkpoint is intact: " +
                                               (dir_ / "stops" / "checkpoints" / "step-00000006").string()));
  }
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(list_checkpoints(dir_ / "stops").front().filename(), "step-00000006");
  std::string problem;
  EXPECT_TRUE(verify_checkpoint_dir(list_checkpoints(dir_ / "stops").front(), &problem)) << problem;
  EXPECT_TRUE(torch::isfinite(model2->weight).all().item<bool>());
}

}  // namespace
}  // namespace nurture
