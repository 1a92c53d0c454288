// The `nurture` command line: one function per subcommand, each taking the arguments after the
// subcommand's name and returning the process exit code. Libraries throw; cli::main catches.
#pragma once
#include <stdexcept>
#include <string>
#include <vector>

namespace nurture::cli {

// A bad flag, a missing argument, an unknown subcommand: exit code 2 and a hint to --help.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Exit codes every subcommand shares (documented in `nurture --help`).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;   // a run or stage failed
inline constexpr int kExitUsage = 2;     // bad command line, recipe or input file
// 3: a run stopped by SIGTERM/SIGINT after checkpointing (kExitInterrupted in runner.h)

int main(int argc, char** argv);

int run_command(const std::vector<std::string>& args);        // cli_run.cpp
int tokenizer_command(const std::vector<std::string>& args);  // cli_tokenizer.cpp
int generate_command(const std::vector<std::string>& args);   // cli_generate.cpp
int chat_command(const std::vector<std::string>& args);       // cli_chat.cpp
int data_command(const std::vector<std::string>& args);       // cli_data.cpp
int bench_command(const std::vector<std::string>& args);      // cli_bench.cpp
int launch_command(const std::vector<std::string>& args);     // cli_launch.cpp
int export_command(const std::vector<std::string>& args);     // export_command.cpp
int score_command(const std::vector<std::string>& args);      // score_command.cpp

}  // namespace nurture::cli
