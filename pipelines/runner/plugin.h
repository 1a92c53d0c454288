// Plugins: a shared library named in a recipe's `plugins:` list registers new components
// (pipelines, model presets, reward functions, chat templates) without touching the framework.
//
//   // my_reward.cpp, built as a shared library linking nurture_pipelines
//   #include "pipelines/runner/plugin.h"
//   NURTURE_PLUGIN(registries) {
//     registries.rewards.add("length", [](const nurture::RewardInput& in) { ... });
//   }
#pragma once
#include <string>

#include "pipelines/runner/registries.h"

#define NURTURE_PLUGIN_ENTRY nurture_register_plugin
#define NURTURE_PLUGIN(registries_name)                                                  \
  extern "C" __attribute__((visibility("default"))) void NURTURE_PLUGIN_ENTRY(           \
      ::nurture::Registries& registries_name)

namespace nurture {

// Loads `path` and calls its registration function. `where` (the recipe location) prefixes
// errors: a missing file, a library that fails to load, or one without the entry point.
// Loading the same file twice registers it once.
void load_plugin(const std::string& path, const std::string& where);

}  // namespace nurture
