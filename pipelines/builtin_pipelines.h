// The registry entries of nurture's own pipelines, one function per pipeline file, collected by
// register_builtins() (pipelines/builtins.cpp).
#pragma once
#include "pipelines/pipeline.h"

namespace nurture {

PipelineEntry demo_data_pipeline_entry();  // demo_data.cpp
PipelineEntry tokenizer_pipeline_entry();  // tokenizer_pipeline.cpp

}  // namespace nurture
