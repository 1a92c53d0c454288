// StageContext helpers.
#include "pipelines/pipeline.h"

namespace nurture {

std::filesystem::path StageContext::resolve_ref(const std::string& key) const {
  const std::string ref = settings.get_string(key);
  auto it = stage_dirs.find(ref);
  if (it != stage_dirs.end()) return it->second;
  if (std::filesystem::is_directory(ref)) return ref;
  throw std::runtime_error(settings.where(key) + ": '" + ref +
                           "' is neither a completed stage nor a directory");
}

}  // namespace nurture
