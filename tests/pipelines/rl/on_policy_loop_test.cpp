// The on-policy loop with a stand-in algorithm (one linear model, one AdamW step per iteration):
// metrics and evaluations at their cadence in metrics.jsonl, checkpoints at theirs (the newest
// `keep`), a stop request turned into a checkpoint and StageInterrupted, and a resumed loop that
// ends where an uninterrupted one does, with the algorithm's own state back.
#include "pipelines/rl/on_policy_loop.h"

#include <gmock/gmock.h>

#include <sstream>

#include "pipelines/recipe/config.h"
#include "pipelines/runtime/stop.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
using namespace nurture::testing;
namespace fs = std::filesystem;

// One linear model trained towards y = 1 and a counter it checkpoints as its own state; `stop_at`
// asks to stop after that iteration (-1: never).
struct StandIn {
  torch::nn::Linear model{2, 1};
  torch::optim::SGD optimizer{model->parameters(), torch::optim::SGDOptions(0.1)};
  int64_t counter = 0, evaluations = 0, stop_at = -1;

  rl::OnPolicyStep step() {
    rl::OnPolicyStep s;
    s.iterate = [this](int64_t iteration) {
      optimizer.zero_grad();
      const auto loss = (model->forward(torch::ones({1, 2})) - 1).pow(2).sum();
      loss.backward();
      optimizer.step();
      ++counter;
      rl::IterationResult r;
      r.metrics = {{"loss", loss.item<double>()}, {"iteration_seen", iteration}};
      r.timings = {{"time_s", 0.5}};
      r.stop = iteration == stop_at;
      return r;
    };
    s.evaluate = [this] { return json{{"eval_evaluations", static_cast<double>(++evaluations)}}; };
    s.modules = [this]() -> NamedModules { return {{"model", model.get()}}; };
    s.optimizers = [this]() -> NamedOptimizers { return {{"optimizer", &optimizer}}; };
    s.save_state = [this](json& extra) { extra["counter"] = counter; };
    s.load_state = [this](const json& extra) {
      counter = extra.at("counter").get<int64_t>();
      return std::string(" (counter " + std::to_string(counter) + ")");
    };
    return s;
  }
};

class OnPolicyLoopTest : public Seeded {
 protected:
  void SetUp() override {
    Seeded::SetUp();
    dir_ = scratch_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  // The stage's directory exists, as the runner makes it.
  StageContext context(const std::string& name) const {
    fs::create_directories(dir_ / name);
    return {name, "stand_in", dir_ / name, Settings(parse_yaml("{}", "r.yaml"), "stages." + name), {}, {}};
  }
  std::vector<json> records(const std::string& name, const std::string& split) const {
    std::vector<json> out;
    std::istringstream in(read_file(dir_ / name / "metrics.jsonl"));
    for (std::string line; std::getline(in, line);)
      if (json j = json::parse(line); j["split"] == split) out.push_back(j);
    return out;
  }
  fs::path dir_;
};

TEST_F(OnPolicyLoopTest, MetricsEvaluationsAndCheckpointsAtTheirCadence) {
  const StageContext ctx = context("run");
  StandIn algorithm;
  rl::OnPolicyLoop loop(ctx, {/*iterations=*/5, /*eval_every=*/2, /*save_every=*/2, /*keep=*/2, /*max_nonfinite=*/5});
  const rl::OnPolicyStep step = algorithm.step();
  loop.resume_if_possible(step);  // nothing to resume
  loop.run(step);
  const auto train = records("run", "train"), val = records("run", "val");
  ASSERT_EQ(train.size(), 5u);
  EXPECT_EQ(train[4]["iteration"], 5);
  EXPECT_EQ(train[4]["iteration_seen"], 4);
  EXPECT_EQ(train[4]["time_s"], 0.5);  // timings are logged
  ASSERT_EQ(val.size(), 3u);           // iterations 2, 4 and the last
  EXPECT_EQ(val[2]["iteration"], 5);
  const auto checkpoints = list_checkpoints(ctx.dir);
  ASSERT_EQ(checkpoints.size(), 2u);
  EXPECT_EQ(checkpoints[0].filename(), "step-00000005");
  EXPECT_EQ(checkpoints[1].filename(), "step-00000004");
  const json results = loop.final_metrics({"loss"});
  EXPECT_EQ(results["iterations"], 5);
  EXPECT_EQ(results["eval_evaluations"], 3.0);
  EXPECT_EQ(results["loss"], train[4]["loss"]);
  EXPECT_FALSE(results.contains("time_s"));  // not in a resumed run's results either
}

TEST_F(OnPolicyLoopTest, AStopCheckpointsAndTheResumedLoopEndsAsTheUninterruptedOne) {
  torch::manual_seed(7);
  StandIn whole;
  const StageContext whole_ctx = context("whole");
  rl::OnPolicyLoop uninterrupted(whole_ctx, {6, 0, 0, 2, 5});
  uninterrupted.run(whole.step());

  const StageContext ctx = context("stopped");
  torch::manual_seed(7);  // the same initial weights
  StandIn first;
  first.stop_at = 2;  // asks to stop during the third iteration
  {
    rl::OnPolicyLoop loop(ctx, {6, 0, 0, 2, 5});
    const rl::OnPolicyStep step = first.step();
    EXPECT_THAT(error_of<StageInterrupted>([&] { loop.run(step); }), HasSubstr("stopped at iteration 3/6"));
  }
  ASSERT_EQ(list_checkpoints(ctx.dir).front().filename(), "step-00000003");
  StandIn second;  // a new process: fresh weights, counter 0
  rl::OnPolicyLoop loop(ctx, {6, 0, 0, 2, 5});
  const rl::OnPolicyStep step = second.step();
  loop.resume_if_possible(step);
  EXPECT_EQ(second.counter, 3);  // the algorithm's state came back
  loop.run(step);
  EXPECT_EQ(second.counter, 6);
  EXPECT_TRUE(second.model->weight.equal(whole.model->weight));
  EXPECT_EQ(records("stopped", "train").size(), 6u);  // iterations 1-3, then 4-6: none twice
  EXPECT_EQ(loop.final_metrics({"loss"}), uninterrupted.final_metrics({"loss"}));
}

}  // namespace
}  // namespace nurture
