// How a stage gets its model and tokenizer: a fresh Transformer from a preset with key-by-key
// overrides (`model: {preset: llama_micro, n_layer: 4}`), or `init_from` an earlier stage /
// a model directory; the tokenizer from a `tokenizer` stage or file, or the one inside the model
// directory it starts from. And how it leaves them: a self-contained model directory.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "modules/model/heads.h"
#include "modules/model/transformer.h"
#include "modules/text/chat_template.h"
#include "modules/text/tokenizer.h"
#include "pipelines/recipe/stage.h"

namespace nurture {

// The `model` section: `preset` plus any TransformerOptions key (vocab_size comes from the
// tokenizer unless given).
std::shared_ptr<const Schema> model_schema();

// Adds `model` (section), `init_from` (stage or model directory; wins over `model`) and
// `tokenizer` (a tokenizer stage, a .model file, or empty = the one in init_from's directory).
// init_from accepts any stage that produces an lm, tokenizer any that produces a tokenizer.
void add_model_fields(Schema& schema);
// The same for stages that need an existing model (init_from required, no `model` section): `key`
// names a stage that produces an lm, or a model directory.
Field& add_init_from_field(Schema& schema, const std::string& key, const std::string& help);

// The model directory a stage reference or path points to: <stage>/model when the stage wrote
// one, else the directory itself. Throws naming the setting when it holds no model.
std::filesystem::path model_dir_of(const StageContext& ctx, const std::string& key);
// The same for one item `ref` of a list-of-stages setting `key`.
std::filesystem::path model_dir_of(const StageContext& ctx, const std::string& key, const std::string& ref);

// The stage's tokenizer (see add_model_fields).
Tokenizer stage_tokenizer(const StageContext& ctx);

// TransformerOptions from the `model` section (preset, then overrides; vocab_size from the
// tokenizer when the section does not set it).
TransformerOptions model_options(const Settings& model_section, int64_t tokenizer_vocab);

// The language model a stage starts from: init_from's weights, or a fresh model from `model`
// (seeded GPT-2 init). On ctx.run.device.
Transformer build_language_model(const StageContext& ctx, const Tokenizer& tokenizer);

// The chat template the stage's `chat_template` setting names for `tokenizer`: a registered one,
// or "auto", the tokenizer's own (resolve_chat_template).
std::shared_ptr<const ChatTemplate> stage_chat_template(const StageContext& ctx, const Tokenizer& tokenizer);

// Writes <stage>/model/ (a Hugging Face directory when the shape is a Hugging Face architecture,
// else config.json and model.pt; see save_model) and tokenizer.model, atomically (a temp
// directory renamed into place). kind: "lm" | "reward" | "value".
void save_model_dir(const std::filesystem::path& dir, torch::nn::Module& model,
                    const TransformerOptions& options, const std::string& kind,
                    const Tokenizer& tokenizer);

// A frozen copy (eval mode, no gradients) of a language model, e.g. PPO's and DPO's reference.
Transformer frozen_copy(const Transformer& model);

std::string parameter_summary(const TransformerOptions& options);  // "15.2M parameters, 6 layers, ..."

}  // namespace nurture
