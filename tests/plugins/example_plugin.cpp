// An example plugin, built as its own shared library and loaded by a recipe's `plugins:` list:
// it adds two pipelines (`line_count`, and `random_lm`, which produces a model later stages can
// evaluate or fine-tune) and a reward function (`shorter_is_better`) without touching the
// framework. Copy this file to start a plugin of your own.
#include <fstream>
#include <string>

#include "pipelines/runner/plugin.h"
#include "pipelines/train/model_setup.h"

namespace {

// Counts the lines of a text file and the lines containing a word.
class LineCountStage : public nurture::Stage {
 public:
  nlohmann::json run(const nurture::StageContext& ctx) override {
    const std::string path = ctx.settings.get_string("file");
    const std::string word = ctx.settings.get_string("word");
    std::ifstream in(path);
    if (!in) throw std::runtime_error(ctx.settings.where("file") + ": cannot read '" + path + "'");
    int64_t lines = 0, matching = 0;
    for (std::string line; std::getline(in, line); ++lines) matching += line.find(word) != std::string::npos;
    std::ofstream(ctx.dir / "count.txt") << lines << "\n";
    return {{"lines", lines}, {"matching", matching}};
  }
};

// A freshly initialised model (from `model`, or `init_from` a model as it is), written as an lm
// model directory: a stand-in for a plugin's own training stage. Because its registry entry says
// it produces an lm, eval's `models`, sft's `init_from` and the like accept its stages.
class RandomLmStage : public nurture::Stage {
 public:
  nlohmann::json run(const nurture::StageContext& ctx) override {
    const nurture::Tokenizer tokenizer = nurture::stage_tokenizer(ctx);
    nurture::Transformer model = nurture::build_language_model(ctx, tokenizer);
    nurture::save_model_dir(ctx.dir / "model", *model, model->options, "lm", tokenizer);
    int64_t parameters = 0;
    for (const auto& p : model->parameters()) parameters += p.numel();
    return {{"parameters", parameters}};
  }
};

std::shared_ptr<const nurture::Schema> random_lm_schema() {
  auto s = std::make_shared<nurture::Schema>();
  nurture::add_model_fields(*s);
  return s;
}

}  // namespace

NURTURE_PLUGIN(registries) {
  registries.pipelines.add(
      "line_count",
      {"count a text file's lines (example plugin)",
       [] {
         auto s = std::make_shared<nurture::Schema>();
         s->add_string("file", "", "the text file to count").must_be_required();
         s->add_string("word", "the", "also count lines containing this word");
         return std::shared_ptr<const nurture::Schema>(s);
       },
       [] { return std::make_unique<LineCountStage>(); }});
  registries.pipelines.add("random_lm", {"write a randomly initialised language model (example plugin)",
                                         random_lm_schema,
                                         [] { return std::make_unique<RandomLmStage>(); },
                                         /*data_parallel=*/false,
                                         /*produces=*/{nurture::Kind::lm}});
  registries.rewards.add("shorter_is_better", [](const nurture::RewardInput& in) {
    return -static_cast<double>(in.response.size());
  });
}
