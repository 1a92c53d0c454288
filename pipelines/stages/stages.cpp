// The built-in pipelines, registered by name in lifecycle order.
#include "pipelines/stages/stages.h"

namespace nurture {

Registry<StageEntry>& pipeline_registry() {
  static Registry<StageEntry> registry = [] {
    Registry<StageEntry> r("pipeline");
    r.add("demo_data", demo_data_stage_entry());
    r.add("tokenizer", tokenizer_stage_entry());
    r.add("pretrain", pretrain_stage_entry());
    r.add("sft", sft_stage_entry());
    r.add("reward_model", reward_model_stage_entry());
    r.add("dpo", dpo_stage_entry());
    r.add("ppo", ppo_stage_entry());
    r.add("grpo", grpo_stage_entry());
    r.add("eval", eval_stage_entry());
    return r;
  }();
  return registry;
}

}  // namespace nurture
