// The registry entries of nurture's own pipelines, one function per pipeline file, collected by
// register_builtins() (pipelines/builtins.cpp).
#pragma once
#include "pipelines/pipeline.h"

namespace nurture {

PipelineEntry demo_data_pipeline_entry();  // demo_data.cpp
PipelineEntry tokenizer_pipeline_entry();  // tokenizer_pipeline.cpp
PipelineEntry pretrain_pipeline_entry();   // pretrain_pipeline.cpp
PipelineEntry sft_pipeline_entry();        // sft_pipeline.cpp
PipelineEntry eval_pipeline_entry();       // eval_pipeline.cpp
PipelineEntry reward_model_pipeline_entry();  // reward_model_pipeline.cpp
PipelineEntry dpo_pipeline_entry();        // dpo_pipeline.cpp
PipelineEntry ppo_pipeline_entry();        // ppo_pipeline.cpp

}  // namespace nurture
