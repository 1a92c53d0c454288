// The recipe's data model: a YAML tree that remembers where every value came from (file, line,
// column, or the `--set` override that wrote it), so that any error can point at it.
// Loading (with `base:` inheritance), deep merging, command-line overrides and YAML output.
#pragma once
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace nurture {

// Where a value was written: `recipes/x.yaml:12:5` or `--set stages.sft.lr=fast`.
struct SourceLocation {
  std::string file;      // path as the user gave it, or "--set"
  int line = 0;          // 1-based; 0 when not from a file
  int column = 0;        // 1-based
  std::string override;  // the whole `--set` assignment, when from the command line
  std::string str() const;
};

// One or more user-facing configuration errors, each already formatted as
// `<where>: <key.path>: <what is wrong>`. The CLI prints them and exits with status 2.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<std::string> messages);
  const std::vector<std::string>& messages() const { return messages_; }

 private:
  std::vector<std::string> messages_;
};

// A node of the recipe tree. Maps keep their order (stages run in the order written).
class ConfigNode {
 public:
  enum class Kind { Null, Scalar, Sequence, Map };

  ConfigNode() = default;
  static ConfigNode scalar(std::string value, SourceLocation where, bool quoted = false);
  static ConfigNode map(SourceLocation where);
  static ConfigNode sequence(SourceLocation where);

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::Null; }
  bool is_scalar() const { return kind_ == Kind::Scalar; }
  bool is_map() const { return kind_ == Kind::Map; }
  bool is_sequence() const { return kind_ == Kind::Sequence; }
  const std::string& text() const { return text_; }  // the scalar's text
  bool quoted() const { return quoted_; }             // written as "..." or '...'
  const SourceLocation& where() const { return where_; }
  void set_where(SourceLocation where) { where_ = std::move(where); }

  // Map access. find() returns nullptr when absent; set() replaces or appends.
  struct Entry;  // key, where the key was written, value (defined below)
  const std::vector<Entry>& entries() const { return entries_; }
  std::vector<Entry>& entries() { return entries_; }
  const ConfigNode* find(const std::string& key) const;
  ConfigNode* find(const std::string& key);
  ConfigNode& set(const std::string& key, ConfigNode value, SourceLocation key_where = {});
  bool erase(const std::string& key);

  // Sequence access.
  const std::vector<ConfigNode>& items() const { return items_; }
  std::vector<ConfigNode>& items() { return items_; }

  const char* kind_name() const;

 private:
  Kind kind_ = Kind::Null;
  std::string text_;
  bool quoted_ = false;
  SourceLocation where_;
  std::vector<Entry> entries_;
  std::vector<ConfigNode> items_;
};

struct ConfigNode::Entry {
  std::string key;
  SourceLocation key_where;
  ConfigNode value;
};

// Parses YAML text; syntax errors become ConfigError at `source:line:col`.
ConfigNode parse_yaml(const std::string& text, const std::string& source);
// Reads a YAML file; a missing or unreadable file is a ConfigError naming it.
ConfigNode load_yaml_file(const std::filesystem::path& path);
// Reads a recipe and the chain of recipes named by `base:` (deep-merged, the file wins over its
// base). A relative base path is looked up beside the file first, then in the working directory.
ConfigNode load_recipe_file(const std::filesystem::path& path);

// Maps merge key by key (recursively); anything else in `overlay` replaces what `base` had.
void deep_merge(ConfigNode& base, const ConfigNode& overlay);

// Applies `a.b.c=value` (value parsed as YAML, so numbers stay numbers and `[x, y]` is a list).
// Missing maps on the path are created; validation reports keys that don't belong.
void apply_override(ConfigNode& root, const std::string& assignment);

// Block-style YAML for the resolved recipe (`--dry-run`, run directories).
std::string to_yaml(const ConfigNode& node);

}  // namespace nurture
