// The process-wide stop request.
#include "pipelines/runtime/stop.h"

#include <atomic>

namespace nurture {

static std::atomic<bool> stop_flag{false};  // lock-free: safe to set from a signal handler
void request_stop() { stop_flag.store(true); }
bool stop_requested() { return stop_flag.load(); }
void clear_stop_request() { stop_flag.store(false); }

}  // namespace nurture
