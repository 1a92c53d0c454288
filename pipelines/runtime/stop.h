// Preemption: SIGTERM/SIGINT (the runner installs the handlers) ask the running stage to stop.
// A training loop checks stop_requested() at each step boundary, checkpoints and throws
// StageInterrupted; running the same command again resumes from that checkpoint.
#pragma once
#include <stdexcept>

namespace nurture {

void request_stop();  // async-signal-safe
bool stop_requested();
void clear_stop_request();

struct StageInterrupted : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace nurture
