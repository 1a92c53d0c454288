// The process-wide registries.
#include "pipelines/runner/registries.h"

namespace nurture {

Registries& registries() {
  static Registries r;
  return r;
}

}  // namespace nurture
