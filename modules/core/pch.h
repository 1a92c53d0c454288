// Precompiled header for every target that includes LibTorch (a torch TU is ~25 s to parse
// without it on a 2-core machine). Only stable third-party headers belong here.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
