// Bounded JSON reading (see json_file.h).
#include "modules/core/json_file.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace nurture {

int64_t json_too_deep_at(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) return static_cast<int64_t>(i);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return -1;
}

namespace {

std::runtime_error too_large(const std::string& source, uint64_t bytes, uint64_t max_bytes) {
  return std::runtime_error(source + ": " + std::to_string(bytes) + " bytes, more than the " +
                            std::to_string(max_bytes) + " accepted for this file");
}

}  // namespace

nlohmann::json parse_json(std::string_view text, const std::string& source, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes) throw too_large(source, text.size(), limits.max_bytes);
  if (const int64_t at = json_too_deep_at(text, limits.max_depth); at >= 0)
    throw std::runtime_error(source + ": byte " + std::to_string(at) + ": JSON nested deeper than " +
                             std::to_string(limits.max_depth) + " levels");
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(source + ": not valid JSON: " + e.what());
  }
}

nlohmann::json read_json_file(const std::filesystem::path& file, const JsonLimits& limits) {
  std::error_code error;
  const auto bytes = std::filesystem::file_size(file, error);
  if (error) throw std::runtime_error(file.string() + ": missing or unreadable");
  if (bytes > limits.max_bytes) throw too_large(file.string(), bytes, limits.max_bytes);
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": missing or unreadable");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw std::runtime_error(file.string() + ": read error");
  return parse_json(text.str(), file.string(), limits);
}

}  // namespace nurture
