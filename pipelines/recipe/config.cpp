// The recipe tree: YAML parsing with source locations, `base:` inheritance, merging, overrides.
#include "pipelines/recipe/config.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

namespace nurture {

namespace fs = std::filesystem;

// ---- SourceLocation / ConfigError ---------------------------------------------------------------

std::string SourceLocation::str() const {
  if (!override.empty()) return "--set " + override;
  if (file.empty()) return "<recipe>";
  if (line <= 0) return file;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

static std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += (out.empty() ? "" : "\n") + l;
  return out;
}

ConfigError::ConfigError(std::vector<std::string> messages)
    : std::runtime_error(join_lines(messages)), messages_(std::move(messages)) {}

// ---- ConfigNode ------------------------------------------------------------------------------------

ConfigNode ConfigNode::scalar(std::string value, SourceLocation where, bool quoted) {
  ConfigNode n;
  n.kind_ = Kind::Scalar;
  n.text_ = std::move(value);
  n.quoted_ = quoted;
  n.where_ = std::move(where);
  return n;
}

ConfigNode ConfigNode::map(SourceLocation where) {
  ConfigNode n;
  n.kind_ = Kind::Map;
  n.where_ = std::move(where);
  return n;
}

ConfigNode ConfigNode::sequence(SourceLocation where) {
  ConfigNode n;
  n.kind_ = Kind::Sequence;
  n.where_ = std::move(where);
  return n;
}

const ConfigNode* ConfigNode::find(const std::string& key) const {
  for (const auto& e : entries_)
    if (e.key == key) return &e.value;
  return nullptr;
}

ConfigNode* ConfigNode::find(const std::string& key) {
  for (auto& e : entries_)
    if (e.key == key) return &e.value;
  return nullptr;
}

ConfigNode& ConfigNode::set(const std::string& key, ConfigNode value, SourceLocation key_where) {
  if (kind_ != Kind::Map) {
    kind_ = Kind::Map;
    text_.clear();
    items_.clear();
  }
  for (auto& e : entries_) {
    if (e.key == key) {
      e.value = std::move(value);
      return e.value;
    }
  }
  if (key_where.file.empty() && key_where.override.empty()) key_where = value.where();
  entries_.push_back(Entry{key, std::move(key_where), std::move(value)});
  return entries_.back().value;
}

bool ConfigNode::erase(const std::string& key) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->key == key) {
      entries_.erase(it);
      return true;
    }
  }
  return false;
}

const char* ConfigNode::kind_name() const {
  switch (kind_) {
    case Kind::Null: return "nothing";
    case Kind::Scalar: return "a value";
    case Kind::Sequence: return "a list";
    case Kind::Map: return "a mapping";
  }
  return "?";
}

// ---- YAML -> ConfigNode ----------------------------------------------------------------------------

static SourceLocation location_of(const YAML::Mark& mark, const std::string& source) {
  SourceLocation loc;
  loc.file = source;
  loc.line = mark.line + 1;
  loc.column = mark.column + 1;
  return loc;
}

static void apply_source(ConfigNode& node, const SourceLocation& where);

// Deeper than any recipe needs; also where an alias that refers to itself (`a: &x {b: *x}`) is
// caught instead of recursing until the stack runs out.
constexpr int kMaxRecipeDepth = 64;
// Values in one file, an alias counted each time it is used: a recipe has hundreds; aliases that
// nest ten copies of ten copies of ... (the "billion laughs") would expand past any memory.
constexpr int64_t kMaxRecipeValues = 100000;
// The largest recipe file read (recipes are a few kilobytes).
constexpr std::uintmax_t kMaxRecipeBytes = 4u << 20;

namespace {

struct Conversion {
  std::string source;
  std::vector<std::string> errors;
  int64_t values = 0;
  bool over_budget = false;  // stop at the first value past kMaxRecipeValues
};

ConfigNode convert(const YAML::Node& y, Conversion& c, int depth = 0) {
  SourceLocation where = location_of(y.Mark(), c.source);
  if (c.over_budget) return ConfigNode{};
  if (++c.values > kMaxRecipeValues) {
    c.over_budget = true;
    c.errors.push_back(where.str() + ": the recipe expands to more than " + std::to_string(kMaxRecipeValues) +
                       " values, counting an alias each time it is used (aliases of aliases that multiply?)");
    return ConfigNode{};
  }
  if (depth > kMaxRecipeDepth) {
    c.errors.push_back(where.str() + ": the recipe nests deeper than " + std::to_string(kMaxRecipeDepth) +
                       " levels (an alias that contains itself?)");
    return ConfigNode{};
  }
  switch (y.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null: {
      ConfigNode n;
      n.set_where(where);
      return n;
    }
    case YAML::NodeType::Scalar:
      // yaml-cpp tags quoted scalars with "!"; plain scalars with "?".
      return ConfigNode::scalar(y.Scalar(), where, y.Tag() == "!");
    case YAML::NodeType::Sequence: {
      ConfigNode n = ConfigNode::sequence(where);
      for (const auto& item : y) n.items().push_back(convert(item, c, depth + 1));
      return n;
    }
    case YAML::NodeType::Map: {
      ConfigNode n = ConfigNode::map(where);
      for (const auto& kv : y) {
        SourceLocation key_where = location_of(kv.first.Mark(), c.source);
        if (!kv.first.IsScalar()) {
          c.errors.push_back(key_where.str() + ": keys must be plain names, got " +
                             (kv.first.IsMap() ? "a mapping" : "a list"));
          continue;
        }
        const std::string key = kv.first.Scalar();
        if (n.find(key)) {
          c.errors.push_back(key_where.str() + ": " + key + ": duplicate key (it is already set above)");
          continue;
        }
        n.entries().push_back({key, key_where, convert(kv.second, c, depth + 1)});
      }
      return n;
    }
  }
  return ConfigNode{};
}

}  // namespace

ConfigNode parse_yaml(const std::string& text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError({location_of(e.mark, source).str() + ": invalid YAML: " + e.msg});
  }
  Conversion c;
  c.source = source;
  ConfigNode node = convert(root, c);
  if (!c.errors.empty()) throw ConfigError(c.errors);
  return node;
}

ConfigNode load_yaml_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in || fs::is_directory(path))
    throw ConfigError({path.string() + ": cannot read this recipe file (does it exist?)"});
  std::error_code ec;
  const std::uintmax_t bytes = fs::file_size(path, ec);
  if (!ec && bytes > kMaxRecipeBytes)
    throw ConfigError({path.string() + ": " + std::to_string(bytes) + " bytes is not a recipe (at most " +
                       std::to_string(kMaxRecipeBytes >> 20) + " MiB)"});
  std::stringstream buffer;
  buffer << in.rdbuf();
  return parse_yaml(buffer.str(), path.string());
}

static fs::path resolve_base(const ConfigNode& base_value, const fs::path& including_file) {
  if (!base_value.is_scalar() || base_value.text().empty())
    throw ConfigError({base_value.where().str() + ": base: expected the path of a recipe file"});
  fs::path p = base_value.text();
  if (p.is_absolute()) return p;
  fs::path beside = including_file.parent_path() / p;
  if (fs::exists(beside)) return beside;
  if (fs::exists(p)) return p;
  throw ConfigError({base_value.where().str() + ": base: no recipe file '" + p.string() +
                     "' beside " + including_file.string() + " or in the working directory"});
}

static ConfigNode load_with_bases(const fs::path& path, std::set<std::string>& chain) {
  std::string canonical = fs::weakly_canonical(path).string();
  if (!chain.insert(canonical).second)
    throw ConfigError({path.string() + ": base: recipes inherit from each other in a cycle"});
  ConfigNode node = load_yaml_file(path);
  if (!node.is_map() && !node.is_null())
    throw ConfigError({node.where().str() + ": a recipe must be a mapping of settings, got " +
                       node.kind_name()});
  if (node.is_null()) node = ConfigNode::map(node.where());
  const ConfigNode* base_value = node.find("base");
  if (!base_value) return node;
  ConfigNode merged = load_with_bases(resolve_base(*base_value, path), chain);
  node.erase("base");
  deep_merge(merged, node);
  return merged;
}

ConfigNode load_recipe_file(const fs::path& path) {
  std::set<std::string> chain;
  return load_with_bases(path, chain);
}

// ---- merge and overrides -------------------------------------------------------------------------

void deep_merge(ConfigNode& base, const ConfigNode& overlay) {
  if (!(base.is_map() && overlay.is_map())) {
    base = overlay;
    return;
  }
  for (const auto& e : overlay.entries()) {
    if (ConfigNode* existing = base.find(e.key)) {
      deep_merge(*existing, e.value);
    } else {
      base.entries().push_back(e);
    }
  }
}

static void apply_source(ConfigNode& node, const SourceLocation& where) {
  node.set_where(where);
  for (auto& e : node.entries()) {
    e.key_where = where;
    apply_source(e.value, where);
  }
  for (auto& item : node.items()) apply_source(item, where);
}

void apply_override(ConfigNode& root, const std::string& assignment) {
  SourceLocation where;
  where.file = "--set";
  where.override = assignment;
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError({where.str() + ": expected KEY.PATH=VALUE, e.g. --set stages.sft.lr=1e-4"});
  const std::string path = assignment.substr(0, eq);
  const std::string value_text = assignment.substr(eq + 1);

  ConfigNode value = parse_yaml(value_text.empty() ? "\"\"" : value_text, "--set");
  apply_source(value, where);

  std::vector<std::string> keys;
  std::stringstream ss(path);
  for (std::string part; std::getline(ss, part, '.');) {
    if (part.empty())
      throw ConfigError({where.str() + ": '" + path + "' has an empty key between dots"});
    keys.push_back(part);
  }
  ConfigNode* node = &root;
  for (size_t i = 0; i < keys.size(); ++i) {
    const bool last = i + 1 == keys.size();
    const std::string& key = keys[i];
    if (node->is_sequence()) {
      size_t index = 0;
      try {
        size_t used = 0;
        index = std::stoul(key, &used);
        if (used != key.size()) throw std::invalid_argument(key);
      } catch (const std::exception&) {
        throw ConfigError({where.str() + ": '" + key + "' indexes a list, expected a number"});
      }
      if (index >= node->items().size())
        throw ConfigError({where.str() + ": index " + key + " is past the end of a list of " +
                           std::to_string(node->items().size())});
      node = &node->items()[index];
      if (last) *node = value;
      continue;
    }
    if (!node->is_map() && !node->is_null())
      throw ConfigError({where.str() + ": cannot set '" + key + "' inside " + node->kind_name()});
    if (node->is_null()) *node = ConfigNode::map(where);
    if (last) {
      node->set(key, value, where);
    } else {
      ConfigNode* child = node->find(key);
      node = child ? child : &node->set(key, ConfigNode::map(where), where);
    }
  }
}

// ---- YAML output ------------------------------------------------------------------------------------

static bool needs_quotes(const ConfigNode& n) {
  const std::string& s = n.text();
  if (s.empty()) return true;
  if (!n.quoted()) return false;
  // A quoted scalar keeps its quotes only where YAML would otherwise read it differently.
  YAML::Node probe;
  try {
    probe = YAML::Load(s);
  } catch (const YAML::Exception&) {
    return true;
  }
  return !probe.IsScalar() || probe.Scalar() != s || s.find_first_of(":#{}[],&*!|>'\"%@`") !=
                                                         std::string::npos ||
         s == "true" || s == "false" || s == "null" || s == "~" ||
         s.find_first_not_of("0123456789.+-eE") == std::string::npos;
}

static void emit(YAML::Emitter& out, const ConfigNode& n) {
  switch (n.kind()) {
    case ConfigNode::Kind::Null:
      out << YAML::Null;
      break;
    case ConfigNode::Kind::Scalar:
      if (needs_quotes(n)) out << YAML::DoubleQuoted << n.text();
      else out << n.text();
      break;
    case ConfigNode::Kind::Sequence:
      out << YAML::BeginSeq;
      for (const auto& item : n.items()) emit(out, item);
      out << YAML::EndSeq;
      break;
    case ConfigNode::Kind::Map:
      out << YAML::BeginMap;
      for (const auto& e : n.entries()) {
        out << YAML::Key << e.key << YAML::Value;
        emit(out, e.value);
      }
      out << YAML::EndMap;
      break;
  }
}

std::string to_yaml(const ConfigNode& node) {
  YAML::Emitter out;
  out.SetIndent(2);
  emit(out, node);
  return std::string(out.c_str()) + "\n";
}

}  // namespace nurture
