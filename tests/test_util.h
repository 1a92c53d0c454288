// Shared helpers for the test suite: a seeding fixture and paths into the source/build trees.
#pragma once
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/test_paths.h"

namespace nurture::testing {

// Every test that draws random numbers derives from this: the same numbers on every run.
class Seeded : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(1234); }
};

inline torch::TensorOptions f64() { return torch::TensorOptions().dtype(torch::kDouble); }
inline double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

// The message of the exception of type E that `body` throws; a test failure when it throws none.
template <typename E, typename Body>
std::string error_of(Body&& body) {
  try {
    body();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an exception";
  return "(no exception thrown)";
}

inline std::filesystem::path source_dir() { return kSourceDir; }
inline std::filesystem::path binary_dir() { return kBinaryDir; }
inline std::filesystem::path nurture_binary() { return kBinaryDir + std::string("/nurture"); }

// A fresh, empty directory under the build tree for one test's files.
// This process's scratch area: ctest runs tests as parallel processes, and suites that share a
// directory (a tokenizer trained once per suite) must not delete each other's. main() removes
// it when every test passed, and leaves it for inspection otherwise.
inline std::filesystem::path process_scratch_root() {
  return binary_dir() / "test_scratch" / std::to_string(::getpid());
}

inline std::filesystem::path scratch_dir(const std::string& name) {
  auto dir = process_scratch_root() / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Writes `text` to `path` (creating its directory) and returns the path.
inline std::filesystem::path write_file(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs a shell command in the source tree, capturing its exit status, standard output and
// standard error.
struct CommandResult {
  int exit_code = -1;
  std::string out, err;
};

inline CommandResult run_shell(const std::string& command) {
  const auto err_file = binary_dir() / "test_scratch" / ("stderr-" + std::to_string(::getpid()));
  std::filesystem::create_directories(err_file.parent_path());
  const std::string cmd =
      "cd '" + source_dir().string() + "' && " + command + " 2>'" + err_file.string() + "'";
  CommandResult r;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) r.out.append(buf, n);
  const int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.err = read_file(err_file);
  std::filesystem::remove(err_file);
  return r;
}

// Runs the `nurture` executable the way a user does: from the source tree.
inline CommandResult run_nurture(const std::string& args) {
  return run_shell("'" + nurture_binary().string() + "' " + args);
}

// The lines of a metrics.jsonl without the timing fields, which no two runs share: what a
// resumed run must reproduce.
inline std::vector<nlohmann::json> metrics_without_timing(const std::filesystem::path& file) {
  std::vector<nlohmann::json> out;
  std::istringstream in(read_file(file));
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    for (const char* key : {"tokens_per_s", "time_generation_s", "time_scoring_s", "time_training_s"}) j.erase(key);
    out.push_back(j);
  }
  return out;
}

}  // namespace nurture::testing
