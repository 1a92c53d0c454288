// The `tokenizer` stage: trains the SentencePiece model that later stages share. Its output,
// <stage>/tokenizer.model, is copied into every model directory built on it.
#include <fstream>

#include "modules/text/tokenizer.h"
#include "pipelines/data/data.h"
#include "pipelines/runtime/log.h"
#include "pipelines/stages/stages.h"

namespace nurture {

namespace {

std::shared_ptr<const Schema> tokenizer_schema() {
  auto s = std::make_shared<Schema>();
  s->add_string_list("inputs", "text files to learn from (one sentence or document per line), or "
                               "JSONL files with a `text` field; ${stage}/file reads a file an "
                               "earlier stage wrote").must_be_required();
  s->add_int("vocab_size", 4096, "vocabulary size, including special and byte pieces").at_least(300);
  s->add_enum("model_type", "bpe", {"bpe", "unigram"}, "SentencePiece algorithm");
  s->add_float("character_coverage", 0.9995, "share of characters covered by pieces (0.9995 suits "
                                             "Korean/CJK; 1.0 for small alphabets)")
      .greater_than(0).at_most(1);
  s->add_bool("byte_fallback", true, "unknown characters become UTF-8 byte pieces, never <unk>");
  s->add_bool("split_digits", true, "every digit its own piece (helps arithmetic)");
  s->add_bool("skip_bad_lines", false, "skip malformed .jsonl lines instead of stopping");
  s->add_int("max_sentences", 0, "sample this many lines for training (0 = all)").at_least(0);
  return s;
}

// SentencePiece reads plain text: a JSONL input is written out as its `text` fields, one line each,
// into the stage directory, and that file is what the trainer reads.
std::string as_text_file(const std::string& input, const std::filesystem::path& dir, bool skip_bad_lines) {
  const std::filesystem::path path = input;
  if (path.extension() != ".jsonl") return input;
  const std::filesystem::path text = dir / (path.stem().string() + ".jsonl.txt");
  std::ofstream out(text);
  for_each_jsonl(path, skip_bad_lines, [&](const nlohmann::json& record, const std::string&) {
    out << string_field(record, "text") << "\n";
  });
  if (!out.flush()) throw std::runtime_error(text.string() + ": cannot write");
  return text.string();
}

class TokenizerStage : public Stage {
 public:
  nlohmann::json run(const StageContext& ctx) override {
    const Settings& s = ctx.settings;
    TokenizerTrainOptions o;
    for (const auto& input : s.get_string_list("inputs")) {
      if (!std::ifstream(input))
        throw std::runtime_error(s.where("inputs") + ": cannot read '" + input + "'");
      o.inputs.push_back(as_text_file(input, ctx.dir, s.get_bool("skip_bad_lines")));
    }
    o.output = (ctx.dir / kTokenizerFileName).string();
    o.vocab_size = s.get_int("vocab_size");
    o.model_type = s.get_string("model_type");
    o.character_coverage = s.get_float("character_coverage");
    o.byte_fallback = s.get_bool("byte_fallback");
    o.split_digits = s.get_bool("split_digits");
    o.max_sentences = s.get_int("max_sentences");
    o.num_threads = ctx.run.threads;
    o.seed = static_cast<uint32_t>(ctx.run.seed);
    log_line(ctx.name, "training a " + o.model_type + " tokenizer, vocab " +
                           std::to_string(o.vocab_size) + ", on " + std::to_string(o.inputs.size()) +
                           " file(s)");
    Tokenizer tok = train(o, s);

    // How well it compresses the training text: bytes per token over the first lines.
    int64_t bytes = 0, tokens = 0;
    std::ifstream in(o.inputs.front());
    std::string line;
    for (int i = 0; i < 2000 && std::getline(in, line); ++i) {
      bytes += static_cast<int64_t>(line.size());
      tokens += static_cast<int64_t>(tok.encode(line).size());
    }
    const double bytes_per_token = tokens ? static_cast<double>(bytes) / tokens : 0.0;
    log_line(ctx.name, "vocab " + std::to_string(tok.vocab_size()) + ", " +
                           std::to_string(bytes_per_token).substr(0, 4) + " bytes/token -> " + o.output);
    return {{"vocab_size", tok.vocab_size()}, {"bytes_per_token", bytes_per_token}};
  }

 private:
  // SentencePiece's refusals named by the recipe key they are about: a vocabulary the text cannot
  // fill is the vocab_size's, anything else the stage's.
  static Tokenizer train(const TokenizerTrainOptions& o, const Settings& s) {
    try {
      return Tokenizer::train(o);
    } catch (const std::exception& e) {  // invalid options or a failed training
      const std::string what = e.what();
      const std::string where = what.find("Vocabulary size") != std::string::npos
                                    ? s.where("vocab_size")
                                    : s.node().where().str() + ": " + s.path();
      throw std::runtime_error(where + ": " + what);
    }
  }
};

}  // namespace

StageEntry tokenizer_stage_entry() {
  return {"train the SentencePiece tokenizer later stages share", tokenizer_schema,
          [] { return std::make_unique<TokenizerStage>(); }, /*data_parallel=*/false,
          /*produces=*/{Kind::tokenizer}};
}

}  // namespace nurture
