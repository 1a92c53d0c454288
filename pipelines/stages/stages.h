// The pipelines nurture ships, one stage file each, and the registry a recipe's `pipeline:` names
// them in (plugins add their own to it).
#pragma once
#include "modules/core/registry.h"
#include "pipelines/recipe/stage.h"

namespace nurture {

// Every pipeline by name: the built-in ones below, registered on first use, and those plugins add.
Registry<StageEntry>& pipeline_registry();

StageEntry demo_data_stage_entry();     // demo_data.cpp
StageEntry tokenizer_stage_entry();     // tokenizer.cpp
StageEntry pretrain_stage_entry();      // pretrain.cpp
StageEntry sft_stage_entry();           // sft.cpp
StageEntry reward_model_stage_entry();  // reward_model.cpp
StageEntry dpo_stage_entry();           // dpo.cpp
StageEntry ppo_stage_entry();           // ppo.cpp
StageEntry grpo_stage_entry();          // grpo.cpp
StageEntry eval_stage_entry();          // eval.cpp

}  // namespace nurture
