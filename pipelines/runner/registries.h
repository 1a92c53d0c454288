// Every registry in one place, for plugins (pipelines/runner/plugin.h) and the command line: each
// member is the registry its own layer keeps, with that layer's built-ins in it.
#pragma once
#include "modules/model/transformer.h"
#include "modules/text/chat_template.h"
#include "pipelines/data/dataset_format.h"
#include "pipelines/rl/advantages.h"
#include "pipelines/rl/rewards.h"
#include "pipelines/stages/stages.h"

namespace nurture {

struct Registries {
  Registry<StageEntry>& pipelines = pipeline_registry();                    // pipelines/stages/stages.h
  Registry<PresetFactory>& model_presets = model_preset_registry();         // modules/model/transformer.h
  Registry<RewardFunctionEntry>& rewards = reward_function_registry();      // pipelines/rl/reward_functions.h
  Registry<ChatTemplateFactory>& chat_templates = chat_template_registry();  // modules/text/chat_template.h
  Registry<DatasetEntry>& datasets = dataset_format_registry();             // pipelines/data/dataset_format.h
  Registry<rl::AdvantageEstimator>& advantages = rl::advantage_estimator_registry();  // pipelines/rl/advantages.h
};

// The process-wide registries.
Registries& registries();

}  // namespace nurture
