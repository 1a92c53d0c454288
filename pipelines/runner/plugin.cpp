// Loading plugin shared libraries into the process-wide registries.
#include "pipelines/runner/plugin.h"

#include <dlfcn.h>

#include <filesystem>
#include <set>

#include "pipelines/recipe/config.h"

namespace nurture {

void load_plugin(const std::string& path, const std::string& where) {
  static std::set<std::string> loaded;
  namespace fs = std::filesystem;
  if (!fs::exists(path))
    throw ConfigError({where + ": plugins: no file '" + path +
                       "' (build the plugin first; relative paths start in the working directory)"});
  const std::string canonical = fs::canonical(path).string();
  if (loaded.count(canonical)) return;
  void* handle = dlopen(canonical.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) throw ConfigError({where + ": plugins: cannot load '" + path + "': " + dlerror()});
  using Entry = void (*)(Registries&);
  auto entry = reinterpret_cast<Entry>(dlsym(handle, "nurture_register_plugin"));
  if (!entry)
    throw ConfigError({where + ": plugins: '" + path +
                       "' has no nurture_register_plugin function (define it with NURTURE_PLUGIN)"});
  entry(registries());
  loaded.insert(canonical);
}

}  // namespace nurture
