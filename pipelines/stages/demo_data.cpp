// The `demo_data` stage: writes the quickstart's small world (pipelines/data/demo_data.h) into
// the stage's directory.
#include "pipelines/data/demo_data.h"
#include "pipelines/runtime/log.h"
#include "pipelines/stages/stages.h"

namespace nurture {

namespace {

class DemoDataStage : public Stage {
 public:
  nlohmann::json run(const StageContext& ctx) override {
    DemoDataOptions o;
    o.seed = static_cast<uint64_t>(ctx.run.seed);
    o.prose_repeats = ctx.settings.get_int("prose_repeats");
    o.max_operand = ctx.settings.get_int("max_operand");
    o.heldout_fraction = ctx.settings.get_float("heldout_fraction");
    nlohmann::json counts = write_demo_data(ctx.dir, o);
    log_line(ctx.name, "wrote the demo world into " + ctx.dir.string() + ": " + counts.dump());
    return counts;
  }
};

std::shared_ptr<const Schema> demo_data_schema() {
  auto s = std::make_shared<Schema>();
  s->add_int("prose_repeats", 8, "how often each fact is told in the pre-training prose").at_least(1);
  s->add_int("max_operand", 9, "sums a + b use 0 <= a, b <= this").at_least(1).at_most(99);
  s->add_float("heldout_fraction", 0.25, "facts kept out of SFT/RM/PPO training, for evaluation")
      .greater_than(0).at_most(0.9);
  return s;
}

}  // namespace

StageEntry demo_data_stage_entry() {
  return {"generate the quickstart's small world (capitals and sums) in every data format",
          demo_data_schema, [] { return std::make_unique<DemoDataStage>(); }, /*data_parallel=*/false,
          /*produces=*/{Kind::data}};
}

}  // namespace nurture
