// Recipe validation against declared schemas, defaults, and the typed Settings view.
#include "pipelines/recipe/schema.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <stdexcept>

namespace nurture {

// ---- scalar parsing --------------------------------------------------------------------------------

bool parse_int(const std::string& text, int64_t* out) {
  if (text.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || end != text.c_str() + text.size()) {
    // Accept integral floats written as such (e.g. 1e3 steps).
    double d = 0;
    if (!parse_float(text, &d) || d != std::floor(d) || std::fabs(d) > 9.0e15) return false;
    v = static_cast<long long>(d);
  }
  *out = v;
  return true;
}

bool parse_float(const std::string& text, double* out) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (errno != 0 || end != text.c_str() + text.size() || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

bool parse_bool(const std::string& text, bool* out) {
  static const std::vector<std::string> yes = {"true", "True", "TRUE", "yes", "on"};
  static const std::vector<std::string> no = {"false", "False", "FALSE", "no", "off"};
  if (std::find(yes.begin(), yes.end(), text) != yes.end()) return *out = true, true;
  if (std::find(no.begin(), no.end(), text) != no.end()) return *out = false, true;
  return false;
}

static std::string join(const std::vector<std::string>& v, const std::string& sep = ", ") {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

static std::string shown(const ConfigNode& n) {
  if (n.is_scalar()) return "\"" + n.text() + "\"";
  return n.kind_name();
}

// ---- Schema building -----------------------------------------------------------------------------

Field& Schema::add(Field f) {
  for (auto& existing : fields_) {
    if (existing.key == f.key) return existing = std::move(f);
  }
  fields_.push_back(std::move(f));
  return fields_.back();
}

static Field make(const std::string& key, FieldType type, const std::string& def, bool has_def,
                  const std::string& help) {
  Field f;
  f.key = key;
  f.type = type;
  f.default_value = def;
  f.has_default = has_def;
  f.help = help;
  return f;
}

static std::string number_text(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

Field& Schema::add_int(const std::string& key, int64_t def, const std::string& help) {
  return add(make(key, FieldType::Int, std::to_string(def), true, help));
}
Field& Schema::add_float(const std::string& key, double def, const std::string& help) {
  return add(make(key, FieldType::Float, number_text(def), true, help));
}
Field& Schema::add_bool(const std::string& key, bool def, const std::string& help) {
  return add(make(key, FieldType::Bool, def ? "true" : "false", true, help));
}
Field& Schema::add_string(const std::string& key, const std::string& def, const std::string& help) {
  return add(make(key, FieldType::String, def, true, help));
}
Field& Schema::add_enum(const std::string& key, const std::string& def,
                        std::vector<std::string> choices, const std::string& help) {
  Field f = make(key, FieldType::Enum, def, true, help);
  f.choices = std::move(choices);
  return add(std::move(f));
}
Field& Schema::add_string_list(const std::string& key, const std::string& help) {
  return add(make(key, FieldType::StringList, "", false, help));
}
Field& Schema::add_section(const std::string& key, std::shared_ptr<const Schema> schema,
                           const std::string& help) {
  Field f = make(key, FieldType::Section, "", false, help);
  f.section = std::move(schema);
  return add(std::move(f));
}
Field& Schema::add_stage_ref(const std::string& key, const std::string& help) {
  return add(make(key, FieldType::StageRef, "", false, help));
}
Field& Schema::add_any(const std::string& key, const std::string& help) {
  return add(make(key, FieldType::Any, "", false, help));
}
Field& Schema::require(const std::string& key) {
  for (auto& f : fields_)
    if (f.key == key) return f.must_be_required();
  throw std::logic_error("Schema::require: no field '" + key + "'");
}

const Field* Schema::field(const std::string& key) const {
  for (const auto& f : fields_)
    if (f.key == key) return &f;
  return nullptr;
}

// ---- validation ----------------------------------------------------------------------------------

static void check_range(const Field& f, double v, const ConfigNode& n, const std::string& path,
                        ValidationContext& ctx) {
  const bool low = f.min_exclusive ? !(v > f.min) : v < f.min;
  const bool high = v > f.max;
  if (!low && !high) return;
  std::string want;
  if (std::isfinite(f.min) && std::isfinite(f.max))
    want = (f.min_exclusive ? "in (" : "in [") + number_text(f.min) + ", " + number_text(f.max) + "]";
  else if (std::isfinite(f.min))
    want = (f.min_exclusive ? "> " : ">= ") + number_text(f.min);
  else
    want = "<= " + number_text(f.max);
  ctx.errors.push_back(n.where().str() + ": " + path + ": must be " + want + ", got " + n.text());
}

// The checks of one value by its field's type. Each appends `where: path: what` to ctx.errors and
// returns false when the value is wrong.
namespace {

struct ValueCheck {
  const Field& f;
  const ConfigNode& n;
  const std::string& path;
  ValidationContext& ctx;

  bool fail(const std::string& what) const { return fail_at(n, what); }
  bool fail_at(const ConfigNode& at, const std::string& what) const {
    ctx.errors.push_back(at.where().str() + ": " + path + ": " + what);
    return false;
  }

  bool integer() const {
    int64_t v = 0;
    if (f.allow_auto && n.text() == "auto") return true;
    if (!parse_int(n.text(), &v))
      return fail(std::string("expected a whole number") + (f.allow_auto ? " or auto" : "") + ", got " +
                  shown(n));
    check_range(f, static_cast<double>(v), n, path, ctx);
    return true;
  }

  bool number() const {
    double v = 0;
    if (!parse_float(n.text(), &v)) return fail("expected a number, got " + shown(n));
    check_range(f, v, n, path, ctx);
    return true;
  }

  bool boolean() const {
    bool v = false;
    if (!parse_bool(n.text(), &v)) fail("expected true or false, got " + shown(n));
    return true;  // as before: a wrong bool still gets its extra check
  }

  bool choice() const {
    if (std::find(f.choices.begin(), f.choices.end(), n.text()) != f.choices.end()) return true;
    std::string hint = did_you_mean(n.text(), f.choices);
    return fail("expected one of " + join(f.choices) + ", got " + shown(n) +
                (hint.empty() ? "" : " (" + hint + ")"));
  }

  void string_list() const {
    if (n.is_sequence()) {
      for (const auto& item : n.items())
        if (!item.is_scalar()) fail_at(item, std::string("list items must be strings, got ") + item.kind_name());
    } else if (!n.is_scalar()) {
      fail("expected a list of strings, got " + std::string(n.kind_name()));
    }
  }

  void section() const {
    if (!n.is_map()) {
      fail("expected a mapping of settings, got " + std::string(n.kind_name()));
      return;
    }
    f.section->validate(n, path, ctx);
  }

  void stage_refs() const {
    if (!f.list || n.is_scalar()) {
      stage_ref(n);
    } else if (n.is_sequence()) {
      for (const auto& item : n.items()) stage_ref(item);
    } else {
      fail("expected a list of stages, got " + std::string(n.kind_name()));
    }
  }

  // One stage reference: an earlier stage that produces what the field needs, or (allow_path) an
  // existing path.
  void stage_ref(const ConfigNode& item) const {
    if (!item.is_scalar()) {
      fail_at(item, "expected a stage name, got " + std::string(item.kind_name()));
      return;
    }
    const std::string& name = item.text();
    for (const auto& [stage, pipeline] : ctx.earlier_stages) {
      if (stage != name) continue;
      // An empty pipeline (unknown or missing, reported at that stage) is not checked.
      if (f.produces && !pipeline.empty() && !produces(pipeline, *f.produces))
        fail_at(item, wrong_kind(stage, pipeline));
      return;
    }
    if (f.allow_path && std::filesystem::exists(name)) return;
    std::vector<std::string> names;
    for (const auto& s : ctx.earlier_stages) names.push_back(s.first);
    std::string hint = did_you_mean(name, names);
    fail_at(item, "'" + name + "' names no earlier stage" + (f.allow_path ? " and no existing path" : "") +
                      (names.empty() ? " (there are none before this one)" : " (earlier: " + join(names) + ")") +
                      (hint.empty() ? "" : "; " + hint));
  }

  const std::vector<Kind>& products(const std::string& pipeline) const {
    static const std::vector<Kind> nothing;
    auto it = ctx.products.find(pipeline);
    return it == ctx.products.end() ? nothing : it->second;
  }
  bool produces(const std::string& pipeline, Kind kind) const {
    const auto& kinds = products(pipeline);
    return std::find(kinds.begin(), kinds.end(), kind) != kinds.end();
  }

  // "stage 'tok' runs pipeline 'tokenizer', expected a stage running sft or another stage that
  // produces lm (pipelines: dpo, ppo, pretrain, sft); 'tokenizer' produces tokenizer"
  std::string wrong_kind(const std::string& stage, const std::string& pipeline) const {
    const std::string kind = kind_name(*f.produces);
    std::vector<std::string> producers;
    for (const auto& [name, kinds] : ctx.products)
      if (std::find(kinds.begin(), kinds.end(), *f.produces) != kinds.end()) producers.push_back(name);
    const std::string wanted = f.usual_producer.empty()
                                   ? "a stage that produces " + kind
                                   : "a stage running " + f.usual_producer + " or another stage that produces " + kind;
    return "stage '" + stage + "' runs pipeline '" + pipeline + "', expected " + wanted +
           (producers.empty() ? "" : " (pipelines: " + join(producers) + ")") + "; '" + pipeline +
           "' produces " + kind_names(products(pipeline));
  }
};

}  // namespace

static void validate_value(const Field& f, const ConfigNode& n, const std::string& path,
                           ValidationContext& ctx) {
  const ValueCheck check{f, n, path, ctx};
  const bool scalar_type = f.type != FieldType::Section && f.type != FieldType::StringList &&
                           f.type != FieldType::Any && !(f.type == FieldType::StageRef && f.list);
  if (scalar_type && !n.is_scalar()) {
    check.fail("expected a single value, got " + std::string(n.kind_name()));
    return;
  }
  bool valid = true;
  switch (f.type) {
    case FieldType::Int: valid = check.integer(); break;
    case FieldType::Float: valid = check.number(); break;
    case FieldType::Bool: valid = check.boolean(); break;
    case FieldType::String: break;
    case FieldType::Enum: valid = check.choice(); break;
    case FieldType::StringList: return check.string_list();
    case FieldType::Section: return check.section();
    case FieldType::StageRef: return check.stage_refs();
    case FieldType::Any: return;
  }
  if (!valid || !f.check) return;
  std::string err = f.check(n);
  if (!err.empty()) check.fail(err);
}

void Schema::validate(const ConfigNode& node, const std::string& path, ValidationContext& ctx) const {
  const size_t errors_before = ctx.errors.size();
  std::vector<std::string> known;
  for (const auto& f : fields_) known.push_back(f.key);
  const std::string prefix = path.empty() ? "" : path + ".";
  for (const auto& e : node.entries()) {
    const Field* f = field(e.key);
    if (!f) {
      if (allow_unknown_) continue;
      std::string hint = did_you_mean(e.key, known);
      ctx.errors.push_back(e.key_where.str() + ": " + prefix + e.key + ": unknown key" +
                           (hint.empty() ? " (known: " + join(known) + ")" : "; " + hint));
      continue;
    }
    if (e.value.is_null()) {
      if (f->required)
        ctx.errors.push_back(e.value.where().str() + ": " + prefix + e.key + ": needs a value");
      continue;
    }
    validate_value(*f, e.value, prefix + e.key, ctx);
  }
  for (const auto& f : fields_) {
    if (!f.required) continue;
    const ConfigNode* v = node.find(f.key);
    if (!v)
      ctx.errors.push_back(node.where().str() + ": " + (path.empty() ? "" : path + ": ") +
                           "missing required key '" + f.key + "' (" + f.help + ")");
  }
  if (ctx.errors.size() != errors_before || checks_.empty()) return;
  const Settings settings(resolve(node), path);
  for (const auto& check : checks_) check(settings, ctx);
}

ConfigNode Schema::resolve(const ConfigNode& node) const {
  ConfigNode out = ConfigNode::map(node.where());
  for (const auto& f : fields_) {
    const ConfigNode* v = node.find(f.key);
    if (v && !v->is_null()) {
      if (f.type == FieldType::Section) out.set(f.key, f.section->resolve(*v));
      else out.set(f.key, *v);
    } else if (f.type == FieldType::Section) {
      out.set(f.key, f.section->resolve(ConfigNode::map(node.where())));
    } else if (f.has_default) {
      SourceLocation where;
      where.file = "default";
      out.set(f.key, ConfigNode::scalar(f.default_value, where), where);
    }
  }
  if (allow_unknown_) {
    for (const auto& e : node.entries())
      if (!field(e.key)) out.set(e.key, e.value, e.key_where);
  }
  return out;
}

static const char* type_name(const Field& f) {
  switch (f.type) {
    case FieldType::Int: return f.allow_auto ? "int or auto" : "int";
    case FieldType::Float: return "float";
    case FieldType::Bool: return "bool";
    case FieldType::String: return "string";
    case FieldType::Enum: return "choice";
    case FieldType::StringList: return "list of strings";
    case FieldType::Section: return "section";
    case FieldType::StageRef:
      return f.list ? (f.allow_path ? "list of stages or paths" : "list of stages")
                    : (f.allow_path ? "stage or path" : "stage");
    case FieldType::Any: return "any";
  }
  return "?";
}

std::string Schema::reference(const std::string& heading_path) const {
  std::ostringstream out;
  out << "| key | type | default | meaning |\n|---|---|---|---|\n";
  std::vector<const Field*> sections;
  for (const auto& f : fields_) {
    std::string def = f.required ? "**required**" : (f.has_default ? "`" + f.default_value + "`" : "");
    std::string help = f.help;
    if (f.type == FieldType::Enum) help += " (" + join(f.choices, " \\| ") + ")";
    if (f.type == FieldType::StageRef && f.produces)
      help += std::string(" (a stage that produces ") + kind_name(*f.produces) +
              (f.usual_producer.empty() ? "" : ", usually " + f.usual_producer) + ")";
    out << "| `" << f.key << "` | " << type_name(f) << " | " << def << " | " << help << " |\n";
    if (f.type == FieldType::Section) sections.push_back(&f);
  }
  for (const Field* f : sections)
    out << "\n`" << heading_path << "." << f->key << "`:\n\n" << f->section->reference(heading_path + "." + f->key);
  return out.str();
}

// ---- Settings --------------------------------------------------------------------------------------

Settings::Settings(ConfigNode node, std::string path) : node_(std::move(node)), path_(std::move(path)) {}

const ConfigNode& Settings::at(const std::string& key) const {
  const ConfigNode* v = node_.find(key);
  if (!v) throw std::logic_error("setting " + path_ + "." + key + " is not in the resolved recipe");
  return *v;
}

bool Settings::has(const std::string& key) const {
  const ConfigNode* v = node_.find(key);
  return v && !v->is_null();
}

int64_t Settings::get_int(const std::string& key) const {
  int64_t v = 0;
  if (!parse_int(at(key).text(), &v))
    throw std::logic_error(where(key) + ": not a whole number (schema and caller disagree)");
  return v;
}

double Settings::get_float(const std::string& key) const {
  double v = 0;
  if (!parse_float(at(key).text(), &v))
    throw std::logic_error(where(key) + ": not a number (schema and caller disagree)");
  return v;
}

bool Settings::get_bool(const std::string& key) const {
  bool v = false;
  if (!parse_bool(at(key).text(), &v))
    throw std::logic_error(where(key) + ": not a bool (schema and caller disagree)");
  return v;
}

std::string Settings::get_string(const std::string& key) const { return at(key).text(); }

std::vector<std::string> Settings::get_string_list(const std::string& key) const {
  std::vector<std::string> out;
  if (!has(key)) return out;
  const ConfigNode& v = at(key);
  if (v.is_scalar()) return {v.text()};
  for (const auto& item : v.items()) out.push_back(item.text());
  return out;
}

Settings Settings::section(const std::string& key) const { return Settings(at(key), path_ + "." + key); }

std::string Settings::where(const std::string& key) const {
  const ConfigNode* v = node_.find(key);
  std::string loc = v ? v->where().str() + ": " : "";
  return loc + path_ + "." + key;
}

}  // namespace nurture
