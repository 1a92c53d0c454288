// Recipe validation: each pipeline (and the run-wide section) declares a Schema of its settings:
// key, type, default, range, choices, help. Validation collects every error with its location
// before anything runs; resolving fills in defaults so the saved recipe is complete. `Settings`
// is the typed, read-only view a pipeline gets of its validated section.
#pragma once
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "modules/core/names.h"
#include "pipelines/recipe/config.h"
#include "pipelines/recipe/kind.h"

namespace nurture {

enum class FieldType {
  Int,
  Float,
  Bool,
  String,
  Enum,        // one of `choices`
  StringList,  // a list of strings (a single string is read as a one-element list)
  Section,     // a nested mapping with its own schema
  StageRef,    // the name of an earlier stage (or, if `allow_path`, an existing directory); with
               // `produces`, a stage whose pipeline produces that kind
  Any,         // free-form (e.g. a plugin's own settings)
};

class Schema;

struct Field {
  std::string key;
  FieldType type = FieldType::String;
  std::string help;
  std::string default_value;  // YAML text; empty with !required = no default (absent stays absent)
  bool has_default = false;
  bool required = false;
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_exclusive = false;
  std::vector<std::string> choices;                // Enum
  std::optional<Kind> produces;                    // StageRef: what the stage must produce (none = any)
  std::string usual_producer;                      // StageRef: the pipeline messages suggest first
  bool allow_auto = false;                         // Int: the word "auto" is also accepted
  bool allow_path = false;                         // StageRef: an existing path is also accepted
  bool list = false;                               // StageRef: a list of them (`models: [sft, ppo]`)
  std::shared_ptr<const Schema> section;           // Section
  // Extra check on a scalar that passed the type check; returns an error text or "".
  std::function<std::string(const ConfigNode&)> check;

  // Fluent refinements: schema.add_float("lr", 3e-4, "...").greater_than(0).at_most(1).
  Field& at_least(double v) { min = v; min_exclusive = false; return *this; }
  Field& greater_than(double v) { min = v; min_exclusive = true; return *this; }
  Field& at_most(double v) { max = v; return *this; }
  Field& or_auto() { allow_auto = true; return *this; }
  Field& or_path() { allow_path = true; return *this; }
  Field& as_list() { list = true; return *this; }
  // StageRef: the stage named must produce `kind` (any pipeline that declares it, plugins' too).
  Field& producing(Kind kind) { produces = kind; return *this; }
  // StageRef: the pipeline that usually provides it, named first in errors and the reference (a
  // hint for people; any producer of the kind is accepted).
  Field& usually(std::string pipeline) { usual_producer = std::move(pipeline); return *this; }
  Field& must_be_required() { required = true; has_default = false; return *this; }
  Field& checked(std::function<std::string(const ConfigNode&)> f) { check = std::move(f); return *this; }
};

// What validation needs to know beyond the tree itself.
struct ValidationContext {
  std::vector<std::string> errors;
  // Stages before the one being validated, with their pipelines (for StageRef checks).
  std::vector<std::pair<std::string, std::string>> earlier_stages;
  // What each registered pipeline produces (for StageRef fields that ask for a kind).
  std::map<std::string, std::vector<Kind>> products;
  int world_size = 1;  // processes of a data-parallel run (from the environment)
};

class Settings;

class Schema {
 public:
  Field& add_int(const std::string& key, int64_t def, const std::string& help);
  Field& add_float(const std::string& key, double def, const std::string& help);
  Field& add_bool(const std::string& key, bool def, const std::string& help);
  Field& add_string(const std::string& key, const std::string& def, const std::string& help);
  Field& add_enum(const std::string& key, const std::string& def, std::vector<std::string> choices,
                  const std::string& help);
  Field& add_string_list(const std::string& key, const std::string& help);
  Field& add_section(const std::string& key, std::shared_ptr<const Schema> schema,
                     const std::string& help);
  Field& add_stage_ref(const std::string& key, const std::string& help);
  Field& add_any(const std::string& key, const std::string& help);
  // A field without a default, which must be given.
  Field& require(const std::string& key);

  const std::vector<Field>& fields() const { return fields_; }
  const Field* field(const std::string& key) const;
  // Keys not in the schema are errors unless this is set (plugins' free-form sections).
  void allow_unknown_keys() { allow_unknown_ = true; }
  // A check across fields (e.g. global_batch_size divisible by batch_size x ranks), run on the
  // resolved settings once every field on its own is valid; it appends `where: key: what`
  // messages to ctx.errors.
  using Check = std::function<void(const Settings& settings, ValidationContext& ctx)>;
  void add_check(Check check) { checks_.push_back(std::move(check)); }

  // Checks `node` (a mapping at `path`, e.g. "stages.sft"); appends errors to ctx.
  void validate(const ConfigNode& node, const std::string& path, ValidationContext& ctx) const;
  // Returns `node` with every default filled in (call after validate() found no errors).
  ConfigNode resolve(const ConfigNode& node) const;
  // Markdown table of the fields (the recipe reference in docs/).
  std::string reference(const std::string& heading_path) const;

 private:
  Field& add(Field f);
  std::vector<Field> fields_;
  std::vector<Check> checks_;
  bool allow_unknown_ = false;
};

// Scalar parsing shared by validation and Settings. Each returns false when `text` isn't one.
bool parse_int(const std::string& text, int64_t* out);
bool parse_float(const std::string& text, double* out);
bool parse_bool(const std::string& text, bool* out);

// The validated, defaults-filled settings of one section, typed. Asking for a key the schema
// doesn't define is a programming error (std::logic_error), not a user error.
class Settings {
 public:
  Settings(ConfigNode node, std::string path);
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  std::vector<std::string> get_string_list(const std::string& key) const;
  bool has(const std::string& key) const;  // present and not null
  Settings section(const std::string& key) const;
  const ConfigNode& node() const { return node_; }
  const ConfigNode& at(const std::string& key) const;
  const std::string& path() const { return path_; }
  // `path.key` and where it was written, for errors found while running (e.g. a data file).
  std::string where(const std::string& key) const;

 private:
  ConfigNode node_;
  std::string path_;
};

}  // namespace nurture
