// libFuzzer target: the recipe loader. Any bytes as a recipe file must end in a parsed tree or a
// ConfigError (file:line:col messages); then validation against a schema with every field type,
// resolution, an override and YAML output must not crash either.
#include <cstddef>
#include <cstdint>
#include <string>

#include "pipelines/recipe/config.h"
#include "pipelines/recipe/schema.h"

namespace {

using namespace nurture;

std::shared_ptr<const Schema> stage_schema() {
  static const auto schema = [] {
    auto model = std::make_shared<Schema>();
    model->add_string("preset", "llama_micro", "");
    model->add_int("n_layer", 2, "").at_least(1);
    auto s = std::make_shared<Schema>();
    s->add_string("pipeline", "", "").must_be_required();
    s->add_int("max_steps", 10, "").at_least(1);
    s->add_int("threads", 1, "").or_auto().at_least(1);
    s->add_float("lr", 3e-4, "").greater_than(0).at_most(1);
    s->add_bool("skip_bad_lines", false, "");
    s->add_enum("schedule", "cosine", {"cosine", "linear", "constant"}, "");
    s->add_string_list("train", "");
    s->add_section("model", model, "");
    s->add_stage_ref("init_from", "").or_path().producing(Kind::lm);
    s->add_stage_ref("models", "").as_list();
    s->add_any("extra", "");
    return s;
  }();
  return schema;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  ConfigNode root;
  try {
    root = parse_yaml(text, "fuzz.yaml");
  } catch (const ConfigError&) {
    return 0;
  }
  try {
    apply_override(root, "stages.a.lr=0.5");
  } catch (const ConfigError&) {
  }
  const ConfigNode* stages = root.is_map() ? root.find("stages") : nullptr;
  if (!stages || !stages->is_map()) return 0;
  ValidationContext ctx;
  ctx.products = {{"pretrain", {Kind::lm}}, {"tokenizer", {Kind::tokenizer}}};
  for (const auto& e : stages->entries()) {
    const size_t before = ctx.errors.size();
    if (!e.value.is_map()) continue;
    stage_schema()->validate(e.value, "stages." + e.key, ctx);
    if (ctx.errors.size() == before) {
      ConfigNode resolved = stage_schema()->resolve(e.value);
      Settings settings(resolved, "stages." + e.key);
      settings.get_int("max_steps");
      settings.get_float("lr");
      settings.get_string_list("train");
      (void)to_yaml(resolved);
    }
    ctx.earlier_stages.emplace_back(e.key, ctx.earlier_stages.size() % 2 ? "tokenizer" : "pretrain");
  }
  return 0;
}
