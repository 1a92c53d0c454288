// A stage's model and tokenizer: where they come from and where they go.
#include "pipelines/train/model_setup.h"

#include <sstream>

#include "modules/model/model_dir.h"
#include "pipelines/runtime/log.h"


namespace nurture {

namespace fs = std::filesystem;

// ---- settings ---------------------------------------------------------------------------------------

std::shared_ptr<const Schema> model_schema() {
  static const std::shared_ptr<const Schema> schema = [] {
    auto s = std::make_shared<Schema>();
    s->add_string("preset", "llama_micro", "named architecture (nurture run --describe lists them in "
                                           "docs/recipes.md); the keys below override it")
        .checked([](const ConfigNode& n) {
          const auto& presets = model_preset_registry();
          return presets.contains(n.text()) ? std::string() : presets.unknown(n.text());
        });
    // Every Transformer option, without a default: an absent key keeps the preset's value.
    for (const auto& option : transformer_option_fields()) {
      const std::string help =
          option.help + (option.name == "vocab_size" ? " (default: the tokenizer's)" : "");
      Field& f = option.type == "int"     ? s->add_int(option.name, 0, help).at_least(0)
                 : option.type == "float" ? s->add_float(option.name, 0, help)
                 : option.type == "bool"  ? s->add_bool(option.name, false, help)
                                          : s->add_string(option.name, "", help);
      f.has_default = false;
      f.default_value.clear();
    }
    return s;
  }();
  return schema;
}

void add_model_fields(Schema& s) {
  s.add_section("model", model_schema(), "the architecture of a model trained from scratch");
  s.add_stage_ref("init_from", "start from this stage's model (or a model directory) instead of `model`")
      .or_path()
      .producing(Kind::lm);
  s.add_stage_ref("tokenizer", "a tokenizer stage or a .model file; default: init_from's tokenizer")
      .or_path()
      .producing(Kind::tokenizer);
}

Field& add_init_from_field(Schema& s, const std::string& key, const std::string& help) {
  return s.add_stage_ref(key, help).or_path().producing(Kind::lm).must_be_required();
}

// ---- where models and tokenizers come from ---------------------------------------------------------

fs::path model_dir_of(const StageContext& ctx, const std::string& key) {
  return model_dir_of(ctx, key, ctx.settings.get_string(key));
}

fs::path model_dir_of(const StageContext& ctx, const std::string& key, const std::string& ref) {
  const fs::path dir = ctx.resolve_ref(key, ref);
  if (fs::exists(dir / "model" / "config.json")) return dir / "model";
  if (fs::exists(dir / "config.json")) return dir;
  throw std::runtime_error(ctx.settings.where(key) + ": " + dir.string() +
                           " holds no model (expected config.json there or in model/)");
}

Tokenizer stage_tokenizer(const StageContext& ctx) {
  const Settings& s = ctx.settings;
  const std::string name = s.has("tokenizer") ? s.get_string("tokenizer") : "";
  if (!name.empty()) {
    auto it = ctx.stage_dirs.find(name);
    const fs::path path = it != ctx.stage_dirs.end() ? it->second / kTokenizerFileName : fs::path(name);
    try {
      return Tokenizer::load(path.string());
    } catch (const std::exception& e) {
      throw std::runtime_error(s.where("tokenizer") + ": " + e.what());
    }
  }
  if (s.has("init_from")) return Tokenizer::load(model_dir_of(ctx, "init_from").string());  // either kind
  throw std::runtime_error("stages." + ctx.name + ": needs a tokenizer: set `tokenizer:` (a tokenizer "
                           "stage or a .model file) or `init_from:` (a model directory has one)");
}

TransformerOptions model_options(const Settings& model, int64_t tokenizer_vocab) {
  TransformerOptions o = model_preset_registry().get(model.get_string("preset"))();
  o.vocab_size(tokenizer_vocab);
  for (const auto& option : transformer_option_fields()) {
    if (!model.has(option.name)) continue;
    try {
      set_option(o, option.name, model.at(option.name).text());
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(model.where(option.name) + ": " + e.what());
    }
  }
  try {
    validate(o);
  } catch (const std::exception& e) {
    throw std::runtime_error(model.path() + ": " + e.what());
  }
  if (o.vocab_size() < tokenizer_vocab)
    throw std::runtime_error(model.where("vocab_size") + ": " + std::to_string(o.vocab_size()) +
                             " is smaller than the tokenizer's vocabulary (" +
                             std::to_string(tokenizer_vocab) + ")");
  return o;
}

Transformer build_language_model(const StageContext& ctx, const Tokenizer& tokenizer) {
  const Settings& s = ctx.settings;
  Transformer model{nullptr};
  if (s.has("init_from")) {
    const fs::path dir = model_dir_of(ctx, "init_from");
    model = load_transformer(dir, ctx.run.device, ctx.run.param_dtype());
    model->to(ctx.run.param_dtype());
    if (model->options.vocab_size() < tokenizer.vocab_size())
      throw std::runtime_error(s.where("init_from") + ": the model's vocabulary (" +
                               std::to_string(model->options.vocab_size()) +
                               ") is smaller than the tokenizer's (" +
                               std::to_string(tokenizer.vocab_size()) + ")");
    log_line(ctx.name, "model from " + dir.string() + ": " + parameter_summary(model->options));
  } else {
    torch::manual_seed(ctx.run.seed);
    model = Transformer(model_options(s.section("model"), tokenizer.vocab_size()));
    model->to(ctx.run.device, ctx.run.param_dtype());
    log_line(ctx.name, "new model (" + s.section("model").get_string("preset") +
                           "): " + parameter_summary(model->options));
  }
  return model;
}

std::shared_ptr<const ChatTemplate> stage_chat_template(const StageContext& ctx, const Tokenizer& tokenizer) {
  return resolve_chat_template(ctx.settings.get_string("chat_template"), tokenizer, ctx.settings.where("chat_template"));
}

// ---- where they go ----------------------------------------------------------------------------------

void save_model_dir(const fs::path& dir, torch::nn::Module& model, const TransformerOptions& options,
                    const std::string& kind, const Tokenizer& tokenizer) {
  if (!is_main_process()) return;
  const fs::path tmp = dir.string() + ".tmp";
  fs::remove_all(tmp);
  HfSaveOptions hf;  // the ids transformers' generate stops at and pads with
  hf.eos_token_id = tokenizer.eot_id();
  hf.pad_token_id = tokenizer.pad_id();
  save_model(tmp, model, options, kind, ModelFormat::kAuto, hf);
  tokenizer.save_to_directory(tmp.string());
  const fs::path old = dir.string() + ".old";
  fs::remove_all(old);
  if (fs::exists(dir)) fs::rename(dir, old);
  fs::rename(tmp, dir);
  fs::remove_all(old);
}

Transformer frozen_copy(const Transformer& model) {
  auto copy = std::dynamic_pointer_cast<TransformerImpl>(model->clone());
  Transformer frozen(copy);
  for (auto& p : frozen->parameters()) p.set_requires_grad(false);
  frozen->eval();
  return frozen;
}

std::string parameter_summary(const TransformerOptions& o) {
  const double n = static_cast<double>(count_parameters(o));
  std::ostringstream out;
  out << human_count(n) << " parameters: " << o.n_layer() << " layers, " << o.n_head() << " heads, width "
      << o.n_embd() << ", context " << o.block_size() << ", vocab " << o.vocab_size();
  return out.str();
}

}  // namespace nurture
