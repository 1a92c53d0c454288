// The `pretrain` stage: next-token prediction on raw text. The text is tokenized once into
// memory-mapped token shards (<stage>/data/), training reads random windows of `context` tokens,
// and evaluation measures the loss on held-out text. Writes <stage>/model/.
#include <cmath>

#include "modules/objectives/losses.h"
#include "pipelines/data/batch.h"
#include "pipelines/data/data.h"
#include "pipelines/runtime/log.h"
#include "pipelines/stages/stages.h"
#include "pipelines/train/model_setup.h"
#include "pipelines/train/trainer.h"

namespace nurture {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::shared_ptr<const Schema> pretrain_schema() {
  auto s = std::make_shared<Schema>();
  s->add_string_list("train", "text files (.txt: one document per line; .jsonl: {text}); "
                              "${stage}/file reads an earlier stage's output").must_be_required();
  s->add_string_list("val", "held-out text files; default: the last val_fraction of `train`");
  s->add_float("val_fraction", 0.05, "share of the training tokens held out when `val` is not given")
      .greater_than(0).at_most(0.5);
  s->add_bool("whole_files", false, ".txt inputs: each file is one document (else one per line)");
  s->add_bool("skip_bad_lines", false, "skip (and count) malformed .jsonl lines instead of stopping");
  s->add_int("context", 0, "tokens per training window (0 = the model's block_size)").at_least(0);
  add_model_fields(*s);
  TrainingDefaults d;
  d.max_steps = 1000;
  d.batch_size = 16;
  d.lr = 3e-3;
  d.warmup_steps = 20;
  d.eval_every = 100;
  add_training_fields(*s, d);
  return s;
}

// Where the stage's text is: token shards and the ranges used for training and evaluation.
struct PretrainData {
  std::unique_ptr<TokenShard> train, val;
  int64_t train_end = 0;  // training windows come from [0, train_end) of `train`
  int64_t val_begin = 0, val_end = 0;  // held-out tokens: [val_begin, val_end) of `val`
};

class PretrainStage : public Stage {
 public:
  json run(const StageContext& ctx) override {
    const Settings& s = ctx.settings;
    tokenizer_ = std::make_unique<Tokenizer>(stage_tokenizer(ctx));
    setup_model(ctx);
    setup_data(ctx);
    const double entropy = unigram_entropy();
    log_line(ctx.name, "unigram entropy of the training text: " + std::to_string(entropy) + " nats/token");

    Trainer trainer(ctx, *model_, TrainingOptions::from(s));
    trainer.resume_if_possible();
    const int64_t batch = s.get_int("batch_size");
    json metrics = trainer.fit([&](TrainingState& state) { return micro_step(ctx, state, batch); },
                               [&] { return evaluate(batch, s.get_int("eval_batches")); });
    metrics["unigram_entropy"] = entropy;

    save_model_dir(ctx.dir / "model", *model_, model_->options, "lm", *tokenizer_);
    log_line(ctx.name, "model written to " + (ctx.dir / "model").string());
    return metrics;
  }

 private:
  // ---- setup --------------------------------------------------------------------------------------

  void setup_model(const StageContext& ctx) {
    model_ = build_language_model(ctx, *tokenizer_);
    const int64_t block = model_->options.block_size();
    context_ = ctx.settings.get_int("context") ? ctx.settings.get_int("context") : block;
    if (context_ > block)
      throw std::runtime_error(ctx.settings.where("context") + ": " + std::to_string(context_) +
                               " exceeds the model's block_size " + std::to_string(block));
    if (context_ < 2) throw std::runtime_error(ctx.settings.where("context") + ": must be at least 2");
  }

  void setup_data(const StageContext& ctx) {
    const Settings& s = ctx.settings;
    PrepareOptions train;
    train.inputs = s.get_string_list("train");
    train.whole_files = s.get_bool("whole_files");
    train.skip_bad_lines = s.get_bool("skip_bad_lines");
    data_.train = prepared(ctx, "train", train);
    const auto val_files = s.get_string_list("val");
    if (!val_files.empty()) {
      PrepareOptions val = train;
      val.inputs = val_files;
      data_.val = prepared(ctx, "val", val);
      data_.train_end = data_.train->size();
      data_.val_end = data_.val->size();
    } else {
      const auto held_out = static_cast<int64_t>(data_.train->size() * s.get_float("val_fraction"));
      data_.train_end = data_.train->size() - held_out;
      data_.val_begin = data_.train_end;
      data_.val_end = data_.train->size();
    }
    if (data_.train_end < context_)
      throw std::runtime_error(s.where("train") + ": " + std::to_string(data_.train_end) +
                               " training tokens are fewer than one window of " + std::to_string(context_));
    if (data_.val_end - data_.val_begin < context_)
      throw std::runtime_error(s.where(val_files.empty() ? "val_fraction" : "val") + ": " +
                               std::to_string(data_.val_end - data_.val_begin) +
                               " held-out tokens are fewer than one window of " + std::to_string(context_));
    log_line(ctx.name, "data: " + human_count(static_cast<double>(data_.train_end)) + " training tokens, " +
                           human_count(static_cast<double>(data_.val_end - data_.val_begin)) +
                           " held out; windows of " + std::to_string(context_));
  }

  std::unique_ptr<TokenShard> prepared(const StageContext& ctx, const std::string& split,
                                       const PrepareOptions& options) {
    const fs::path dir = ctx.dir / "data" / split;
    dist::on_rank0(ctx.name + "/data/" + split, [&] {  // rank 0 writes the shard the ranks share
      if (shard_is_current(dir, *tokenizer_, options)) return;
      log_line(ctx.name, "tokenizing " + std::to_string(options.inputs.size()) + " " + split + " file(s)");
      try {
        prepare_token_shard(dir, *tokenizer_, options);
      } catch (const std::exception& e) {
        throw std::runtime_error(ctx.settings.where(split) + ": " + e.what());
      }
    });
    return std::make_unique<TokenShard>(dir);
  }

  // Σ −p log p over the training tokens' unigram frequencies: the loss of a model that ignores
  // context, which pre-training must beat.
  double unigram_entropy() const {
    std::vector<int64_t> counts(static_cast<size_t>(tokenizer_->vocab_size()) + 1, 0);
    for (int64_t i = 0; i < data_.train_end; ++i) {
      const int64_t id = data_.train->at(i);
      ++counts[std::min<size_t>(static_cast<size_t>(id), counts.size() - 1)];
    }
    double h = 0;
    for (int64_t c : counts) {
      if (c == 0) continue;
      const double p = static_cast<double>(c) / data_.train_end;
      h -= p * std::log(p);
    }
    return h;
  }

  // ---- training -----------------------------------------------------------------------------------

  MicroBatch micro_step(const StageContext& ctx, TrainingState& state, int64_t batch) {
    std::vector<int64_t> flat;
    flat.reserve(static_cast<size_t>(batch * context_));
    for (int64_t position : take_positions(state, batch)) {
      const int64_t offset = window_offset(static_cast<uint64_t>(ctx.run.seed), position, data_.train_end, context_);
      auto window = data_.train->read(offset, context_);
      flat.insert(flat.end(), window.begin(), window.end());
    }
    torch::Tensor tokens = to_device(torch::tensor(flat, torch::kInt64).view({batch, context_}), ctx.run.device);
    LMLoss loss = lm_loss(model_->forward(tokens), tokens);  // [B, T] -> [B, T, V]
    return {loss.sum, loss.count, batch * context_, {}};
  }

  // Loss over consecutive held-out windows (all of them, or the first eval_batches batches).
  json evaluate(int64_t batch, int64_t eval_batches) {
    const TokenShard& shard = data_.val ? *data_.val : *data_.train;
    const torch::Device device = model_->parameters().front().device();
    int64_t windows = (data_.val_end - data_.val_begin) / context_;
    if (eval_batches > 0) windows = std::min(windows, eval_batches * batch);
    torch::Tensor sum = torch::zeros({}, torch::kFloat64), count = torch::zeros({}, torch::kFloat64);
    for (int64_t first = 0; first < windows; first += batch) {
      const int64_t n = std::min(batch, windows - first);
      std::vector<int64_t> flat;
      for (int64_t w = first; w < first + n; ++w) {
        auto window = shard.read(data_.val_begin + w * context_, context_);
        flat.insert(flat.end(), window.begin(), window.end());
      }
      torch::Tensor tokens = torch::tensor(flat, torch::kInt64).view({n, context_}).to(device);
      LMLoss loss = lm_loss(model_->forward(tokens), tokens);
      sum += loss.sum.to(torch::kCPU, torch::kFloat64);
      count += loss.count.to(torch::kCPU, torch::kFloat64);
    }
    const double val_loss = (sum / count.clamp_min(1)).item<double>();
    return {{"val_loss", val_loss}, {"val_ppl", std::exp(val_loss)}};
  }

  std::unique_ptr<Tokenizer> tokenizer_;
  Transformer model_{nullptr};
  int64_t context_ = 0;
  PretrainData data_;
};

}  // namespace

StageEntry pretrain_stage_entry() {
  return {"pre-train a language model on raw text (next-token prediction)", pretrain_schema,
          [] { return std::make_unique<PretrainStage>(); }, /*data_parallel=*/true,
          /*produces=*/{Kind::lm}};
}

}  // namespace nurture
