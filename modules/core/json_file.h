// Reading JSON that nurture did not write itself, within limits: a file larger than any real one
// of its kind, or nested deeper than any real one, is refused before it is parsed (the parser
// would otherwise take memory and time in proportion to whatever it was given). Every failure is
// a std::runtime_error that starts with the file's name.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace nurture {

struct JsonLimits {
  uint64_t max_bytes = 16ull << 20;  // config files are kilobytes; tokenizer.json files megabytes
  int max_depth = 64;                // real files nest a handful of levels
};

// Where brackets outside strings first nest deeper than max_depth (a byte offset), or -1 when they
// never do; a linear scan, no recursion.
int64_t json_too_deep_at(std::string_view text, int max_depth);

// `text` parsed: "<source>: N bytes, more than the M accepted for this file", "<source>: byte N:
// JSON nested deeper than D levels", or "<source>: not valid JSON: ...".
nlohmann::json parse_json(std::string_view text, const std::string& source, const JsonLimits& limits = {});

// The file read and parsed under `limits`; "<file>: missing or unreadable" when it cannot be read.
nlohmann::json read_json_file(const std::filesystem::path& file, const JsonLimits& limits = {});

}  // namespace nurture
