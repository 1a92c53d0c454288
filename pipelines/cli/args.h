// Command-line parsing shared by the subcommands (Boost.Program_options): one call that turns
// every Boost error (unknown flag, missing value, bad number) into a cli::UsageError naming
// the subcommand and pointing at its --help.
#pragma once
#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "pipelines/cli/cli.h"

namespace nurture::cli {

namespace po = boost::program_options;

// Parses `args` (the words after the subcommand) against `options` and `positional`.
po::variables_map parse_args(const std::string& command, const std::vector<std::string>& args,
                             const po::options_description& options,
                             const po::positional_options_description& positional = {});

// Prints "usage: nurture <usage>\n<options>" for --help.
void print_help(const std::string& usage, const std::string& summary,
                const po::options_description& options);

}  // namespace nurture::cli
