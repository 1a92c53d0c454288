// The process-wide registries.
#include "pipelines/registry.h"

#include <mutex>

namespace nurture {

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "none" : out;
}

std::string closest_name(const std::string& name, const std::vector<std::string>& known) {
  return did_you_mean(name, known);
}

Registries& registries() {
  static Registries r;
  static std::once_flag once;
  std::call_once(once, [] { register_builtins(r); });
  return r;
}

}  // namespace nurture
