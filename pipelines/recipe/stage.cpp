// StageContext helpers.
#include "pipelines/recipe/stage.h"

namespace nurture {

std::filesystem::path StageContext::resolve_ref(const std::string& key) const {
  return resolve_ref(key, settings.get_string(key));
}

std::filesystem::path StageContext::resolve_ref(const std::string& key, const std::string& ref) const {
  auto it = stage_dirs.find(ref);
  if (it != stage_dirs.end()) return it->second;
  if (std::filesystem::exists(ref)) return ref;
  throw std::runtime_error(settings.where(key) + ": '" + ref +
                           "' is neither a completed stage nor a directory");
}

}  // namespace nurture
