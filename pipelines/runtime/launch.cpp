// Local workers of a data-parallel job (see launch.h).
#include "pipelines/runtime/launch.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <csignal>
#include <cstring>
#include <iostream>
#include <optional>
#include <stdexcept>

namespace nurture {

namespace {

// A free TCP port on the loopback interface, for a one-node job's master.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("launch: no socket for a free port: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    ::close(fd);
    throw std::runtime_error(std::string("launch: cannot find a free port: ") + std::strerror(errno));
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

std::string self_executable() {
  char path[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  if (n <= 0) throw std::runtime_error("launch: cannot find this executable (/proc/self/exe)");
  return std::string(path, static_cast<size_t>(n));
}

constexpr int kInterruptedStatus = 3;  // `nurture run` stopped by a signal after a checkpoint

std::atomic<int> pending_signal{0};
extern "C" void on_launch_signal(int signal) { pending_signal.store(signal); }

struct Worker {
  int rank = 0;
  pid_t pid = -1;
  int out = -1, err = -1;           // read ends of its stdout and stderr
  std::string out_line, err_line;   // partial lines
  bool running = true;
  int status = 0;                   // exit status (128 + signal when killed)
};

// Writes the complete lines of `pending` (plus the rest when `flush`) to `stream`, prefixed.
void emit(std::string& pending, std::ostream& stream, int rank, bool flush) {
  size_t start = 0;
  for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1)
    stream << "[rank " << rank << "] " << pending.substr(start, nl - start + 1);
  pending.erase(0, start);
  if (flush && !pending.empty()) {
    stream << "[rank " << rank << "] " << pending << "\n";
    pending.clear();
  }
  stream.flush();
}

// Reads what `fd` has; returns false (and closes it) at its end.
bool drain(int& fd, std::string& pending, std::ostream& stream, int rank) {
  char buffer[8192];
  const ssize_t n = ::read(fd, buffer, sizeof buffer);
  if (n > 0) {
    pending.append(buffer, static_cast<size_t>(n));
    emit(pending, stream, rank, false);
    return true;
  }
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  emit(pending, stream, rank, true);
  ::close(fd);
  fd = -1;
  return false;
}

std::string describe(int status) {
  if (status > 128) return "was killed by signal " + std::to_string(status - 128) + " (" + strsignal(status - 128) + ")";
  return "exited with status " + std::to_string(status);
}

// Options that cannot work are the caller's error, before anything starts.
void check_options(const LaunchOptions& o) {
  if (o.command.empty())
    throw std::invalid_argument("what should the workers run? e.g. nurture launch --nproc 2 -- run recipes/quickstart.yaml");
  if (o.nproc < 1) throw std::invalid_argument("--nproc must be at least 1");
  if (o.nnodes < 1) throw std::invalid_argument("--nnodes must be at least 1");
  if (o.node_rank < 0 || o.node_rank >= o.nnodes)
    throw std::invalid_argument("--node-rank " + std::to_string(o.node_rank) + " must be in [0, --nnodes " +
                                std::to_string(o.nnodes) + ")");
  if (o.nnodes > 1 && (o.master_addr.empty() || o.master_port == 0))
    throw std::invalid_argument("with several nodes every node needs the same --master ADDR:PORT (rank 0's node)");
}

// Ctrl-C and SIGTERM reach the launcher only (the workers have their own process group); while
// this lives they are recorded in pending_signal, to be passed on.
class SignalCatcher {
 public:
  SignalCatcher() {
    struct sigaction action {};
    action.sa_handler = on_launch_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, &old_int_);
    sigaction(SIGTERM, &action, &old_term_);
    pending_signal.store(0);
  }
  ~SignalCatcher() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  SignalCatcher(const SignalCatcher&) = delete;
  SignalCatcher& operator=(const SignalCatcher&) = delete;

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

// Where the workers meet, and what they run.
struct Job {
  const LaunchOptions& o;
  std::string master_addr;
  int master_port = 0;
  int world = 1;
  std::string executable;
};

// In the forked child: its own process group, output into the pipes, the rank's environment,
// then the command.
[[noreturn]] void exec_worker(const Job& job, int local_rank, int rank, int out[2], int err[2]) {
  const LaunchOptions& o = job.o;
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // a launcher that dies takes its workers along
  ::dup2(out[1], STDOUT_FILENO);
  ::dup2(err[1], STDERR_FILENO);
  ::close(out[0]), ::close(out[1]), ::close(err[0]), ::close(err[1]);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  setenv("RANK", std::to_string(rank).c_str(), 1);
  setenv("WORLD_SIZE", std::to_string(job.world).c_str(), 1);
  setenv("LOCAL_RANK", std::to_string(local_rank).c_str(), 1);
  setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
  setenv("GROUP_RANK", std::to_string(o.node_rank).c_str(), 1);
  setenv("MASTER_ADDR", job.master_addr.c_str(), 1);
  setenv("MASTER_PORT", std::to_string(job.master_port).c_str(), 1);
  std::vector<char*> argv;
  std::string name = "nurture";
  argv.push_back(name.data());
  std::vector<std::string> args = o.command;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execv(job.executable.c_str(), argv.data());
  std::fprintf(stderr, "launch: cannot run %s: %s\n", job.executable.c_str(), std::strerror(errno));
  ::_exit(127);
}

// Forks the worker of local rank `i`, its stdout and stderr piped back.
Worker start_worker(const Job& job, int i) {
  Worker w;
  w.rank = job.o.node_rank * job.o.nproc + i;
  int out[2], err[2];
  if (::pipe(out) != 0 || ::pipe(err) != 0) throw std::runtime_error(std::string("launch: pipe: ") + std::strerror(errno));
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("launch: fork: ") + std::strerror(errno));
  if (pid == 0) exec_worker(job, i, w.rank, out, err);
  ::setpgid(pid, pid);  // as the child does: whichever runs first, the group exists before any signal
  ::close(out[1]), ::close(err[1]);
  w.pid = pid;
  w.out = out[0];
  w.err = err[0];
  std::cerr << "[launch] rank " << w.rank << ": pid " << pid << std::endl;
  return w;
}

// A worker and whatever it started (its own process group): a child left running would keep the
// worker's output pipes open, and the launch waiting.
void signal_group(const Worker& w, int signal) {
  if (::kill(-w.pid, signal) != 0) ::kill(w.pid, signal);
}

// Watches the workers to their end: passes signals on, relays output, stops the others when one
// fails (killing them after the grace period).
class Supervisor {
 public:
  Supervisor(std::vector<Worker> workers, std::chrono::seconds grace)
      : workers_(std::move(workers)), grace_(grace) {}

  // Returns the first failure's status, 0 when all succeeded.
  int wait() {
    for (;;) {
      pass_on_signals();
      relay_output();
      const bool any_running = reap_exits();
      kill_after_grace(any_running);
      const bool output_open = std::any_of(workers_.begin(), workers_.end(),
                                           [](const Worker& w) { return w.out >= 0 || w.err >= 0; });
      if (!any_running && !output_open) return first_failure_;
    }
  }

 private:
  // Signals from the user or the scheduler: pass them on, once each, so a worker checkpoints on
  // the first and stops at once on the second.
  void pass_on_signals() {
    if (const int signal = pending_signal.exchange(0)) {
      passed_on_ = true;
      std::cerr << "[launch] " << strsignal(signal) << ": passing it on to the workers" << std::endl;
      for (auto& w : workers_)
        if (w.running) signal_group(w, signal);
    }
  }

  // What the workers wrote, line by line with their rank (waits up to 100 ms for some).
  void relay_output() {
    std::vector<pollfd> fds;
    std::vector<std::pair<Worker*, bool>> owners;  // worker, is stderr
    for (auto& w : workers_) {
      if (w.out >= 0) fds.push_back({w.out, POLLIN, 0}), owners.emplace_back(&w, false);
      if (w.err >= 0) fds.push_back({w.err, POLLIN, 0}), owners.emplace_back(&w, true);
    }
    if (!fds.empty() && ::poll(fds.data(), fds.size(), 100) > 0) {
      for (size_t k = 0; k < fds.size(); ++k) {
        if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        Worker& w = *owners[k].first;
        if (owners[k].second) drain(w.err, w.err_line, std::cerr, w.rank);
        else drain(w.out, w.out_line, std::cout, w.rank);
      }
    } else if (fds.empty()) {
      ::usleep(100 * 1000);
    }
  }

  // Collects the workers that exited; returns whether any is still running.
  bool reap_exits() {
    bool any_running = false;
    for (auto& w : workers_) {
      if (!w.running) continue;
      int status = 0;
      if (::waitpid(w.pid, &status, WNOHANG) == 0) {
        any_running = true;
        continue;
      }
      w.running = false;
      w.status = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
      on_exit(w);
    }
    return any_running;
  }

  void on_exit(const Worker& w) {
    if (w.status == kInterruptedStatus && passed_on_) {
      // Asked to stop: it checkpointed; the others do the same on their own.
      std::cerr << "[launch] rank " << w.rank << " stopped after a checkpoint" << std::endl;
      if (first_failure_ == 0) first_failure_ = w.status;
    } else if (w.status != 0 && (first_failure_ == 0 || first_failure_ == kInterruptedStatus)) {
      first_failure_ = w.status;
      std::cerr << "[launch] rank " << w.rank << " " << describe(w.status) << "; stopping the other ranks"
                << std::endl;
      stopping_since_ = std::chrono::steady_clock::now();
      for (auto& other : workers_)
        if (other.running) signal_group(other, SIGTERM);
    }
  }

  void kill_after_grace(bool any_running) {
    if (!stopping_since_ || killed_ || !any_running || std::chrono::steady_clock::now() - *stopping_since_ <= grace_)
      return;
    std::cerr << "[launch] the other ranks did not stop within " << grace_.count() << " s: killing them" << std::endl;
    for (auto& w : workers_)
      if (w.running) signal_group(w, SIGKILL);
    killed_ = true;
  }

  std::vector<Worker> workers_;
  std::chrono::seconds grace_;
  int first_failure_ = 0;
  // Set when a rank failed and the others were asked to stop; they get grace_ to do it. Ranks
  // stopping because the user's signal was passed on are waited for (a second signal, passed on
  // too, stops them at once).
  std::optional<std::chrono::steady_clock::time_point> stopping_since_;
  bool killed_ = false, passed_on_ = false;
};

}  // namespace

int launch_workers(const LaunchOptions& o) {
  check_options(o);
  Job job{o};
  job.master_addr = o.master_addr.empty() ? "127.0.0.1" : o.master_addr;
  job.master_port = o.master_port != 0 ? o.master_port : free_port();
  job.world = o.nproc * o.nnodes;
  job.executable = o.executable.empty() ? self_executable() : o.executable;

  const SignalCatcher signals;
  std::cerr << "[launch] " << o.nproc << " worker(s) on this node: ranks " << o.node_rank * o.nproc << "-"
            << o.node_rank * o.nproc + o.nproc - 1 << " of " << job.world << ", master " << job.master_addr << ":"
            << job.master_port << std::endl;
  std::vector<Worker> workers;
  for (int i = 0; i < o.nproc; ++i) workers.push_back(start_worker(job, i));
  const int first_failure = Supervisor(std::move(workers), o.grace).wait();
  if (first_failure != 0) return first_failure;
  std::cerr << "[launch] all " << o.nproc << " worker(s) finished" << std::endl;
  return 0;
}

}  // namespace nurture
