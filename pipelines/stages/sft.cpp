// The `sft` stage: supervised fine-tuning on conversations. Each example is rendered with the
// chat template, and the loss counts only the assistant's replies (and their closing <|im_end|>),
// so the model learns to answer, not to imitate users. Writes <stage>/model/.
//
// This is the reference pipeline to copy: schema, then run() = tokenizer, model, data, train, save.
#include <cmath>

#include "modules/objectives/losses.h"
#include "pipelines/data/batch.h"
#include "pipelines/data/data.h"
#include "pipelines/data/dataset_format.h"
#include "pipelines/runtime/log.h"
#include "pipelines/stages/stages.h"
#include "pipelines/train/model_setup.h"
#include "pipelines/train/trainer.h"

namespace nurture {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::shared_ptr<const Schema> sft_schema() {
  auto s = std::make_shared<Schema>();
  s->add_string("train", "", "JSONL conversations (see `format`)").must_be_required();
  s->add_string("val", "", "held-out JSONL conversations (optional)");
  s->add_string("format", "chat", "dataset format: chat ({messages} or {prompt, response}) or alpaca, "
                                  "or one a plugin registered");
  s->add_string("chat_template", "auto", "how conversations become tokens: auto (the model's own template, recognised), chatml, qwen3, llama3, llama3.1, transcript (base models) or a plugin's");
  s->add_int("max_length", 0, "tokens per conversation (0 = the model's block_size)").at_least(0);
  s->add_enum("truncation", "right", {"right", "drop"},
              "too-long conversations: cut at max_length, or leave them out");
  s->add_bool("packing", false, "pack several conversations into each row of max_length tokens "
                                "(kept apart by attention and positions) instead of padding each");
  s->add_bool("skip_bad_lines", false, "skip (and count) malformed lines instead of stopping");
  add_model_fields(*s);
  TrainingDefaults d;
  d.max_steps = 300;
  d.batch_size = 16;
  d.lr = 1e-3;
  d.warmup_steps = 10;
  d.weight_decay = 0.0;
  d.eval_every = 50;
  add_training_fields(*s, d);
  return s;
}

class SftStage : public Stage {
 public:
  json run(const StageContext& ctx) override {
    const Settings& s = ctx.settings;
    tokenizer_ = std::make_unique<Tokenizer>(stage_tokenizer(ctx));
    model_ = build_language_model(ctx, *tokenizer_);
    setup_data(ctx);

    Trainer trainer(ctx, *model_, TrainingOptions::from(s));
    trainer.resume_if_possible();
    const int64_t batch = s.get_int("batch_size");
    ShuffledOrder order(static_cast<uint64_t>(ctx.run.seed), static_cast<int64_t>(train_.examples.size()));
    json metrics = trainer.fit(
        [&](TrainingState& state) { return micro_step(ctx, state, order, batch); },
        [&] { return evaluate(batch, s.get_int("eval_batches")); });
    metrics["train_examples"] = conversations_;
    if (s.get_bool("packing")) metrics["packed_rows"] = train_.examples.size();
    metrics["truncated"] = train_.truncated;
    metrics["dropped"] = train_.dropped;
    metrics["skipped_lines"] = train_.stats.skipped;

    save_model_dir(ctx.dir / "model", *model_, model_->options, "lm", *tokenizer_);
    log_line(ctx.name, "model written to " + (ctx.dir / "model").string());
    return metrics;
  }

 private:
  void setup_data(const StageContext& ctx) {
    const Settings& s = ctx.settings;
    template_ = stage_chat_template(ctx, *tokenizer_);
    ChatDataOptions o;
    o.format = s.get_string("format");
    o.max_length = s.get_int("max_length") ? s.get_int("max_length") : model_->options.block_size();
    if (o.max_length > model_->options.block_size())
      throw std::runtime_error(s.where("max_length") + ": " + std::to_string(o.max_length) +
                               " exceeds the model's block_size " + std::to_string(model_->options.block_size()));
    o.truncation = s.get_string("truncation");
    o.skip_bad_lines = s.get_bool("skip_bad_lines");
    if (!dataset_format_registry().contains(o.format))
      throw std::runtime_error(s.where("format") + ": " + dataset_format_registry().unknown(o.format));
    train_ = load_chat_data(s.get_string("train"), *tokenizer_, *template_, o);
    log_line(ctx.name, "data: " + std::to_string(train_.examples.size()) + " conversations (" +
                           std::to_string(train_.truncated) + " truncated, " + std::to_string(train_.dropped) +
                           " dropped, " + std::to_string(train_.stats.skipped) + " bad lines skipped)");
    conversations_ = static_cast<int64_t>(train_.examples.size());
    if (s.get_bool("packing")) {
      // Pack in a seeded random order, once: rows then play the part of examples.
      std::vector<TokenizedExample> shuffled;
      ShuffledOrder order(static_cast<uint64_t>(ctx.run.seed) + 1, conversations_);
      for (int64_t i = 0; i < conversations_; ++i) shuffled.push_back(train_.examples[order.at(i)]);
      int64_t tokens = 0;
      for (const auto& e : shuffled) tokens += static_cast<int64_t>(e.ids.size());
      train_.examples = pack_examples(shuffled, o.max_length);
      const double fill = static_cast<double>(tokens) /
                          static_cast<double>(o.max_length * static_cast<int64_t>(train_.examples.size()));
      log_line(ctx.name, "packed into " + std::to_string(train_.examples.size()) + " rows of " +
                             std::to_string(o.max_length) + " tokens, " +
                             std::to_string(static_cast<int>(fill * 100 + 0.5)) + "% filled");
    }
    if (!s.get_string("val").empty()) {
      val_ = load_chat_data(s.get_string("val"), *tokenizer_, *template_, o);
      log_line(ctx.name, "held out: " + std::to_string(val_.examples.size()) + " conversations");
    }
  }

  // Padding is masked out; a tokenizer without a pad token (Llama 2's) pads with id 0.
  int64_t pad_id() const { return std::max<int64_t>(tokenizer_->pad_id(), 0); }

  torch::Tensor forward_loss(const PaddedBatch& b, torch::Tensor* count) {
    // ids: [B, T] -> logits [B, T, V]; loss on the assistant tokens only
    LMLoss loss = lm_loss(model_->forward(b.ids, b.attention_mask), b.ids, b.loss_mask);
    *count = loss.count;
    return loss.sum;
  }

  MicroBatch micro_step(const StageContext& ctx, TrainingState& state, ShuffledOrder& order, int64_t batch) {
    std::vector<const TokenizedExample*> examples;
    for (int64_t position : take_positions(state, batch)) examples.push_back(&train_.examples[order.at(position)]);
    PaddedBatch b = right_pad(examples, pad_id(), ctx.run.device);
    torch::Tensor count;
    torch::Tensor sum = forward_loss(b, &count);
    return {sum, count, b.tokens, {}};
  }

  json evaluate(int64_t batch, int64_t eval_batches) {
    if (val_.examples.empty()) return json::object();
    const torch::Device device = model_->parameters().front().device();
    auto n = static_cast<int64_t>(val_.examples.size());
    if (eval_batches > 0) n = std::min(n, eval_batches * batch);
    torch::Tensor sum = torch::zeros({}, torch::kFloat64), count = torch::zeros({}, torch::kFloat64);
    for (int64_t first = 0; first < n; first += batch) {
      std::vector<const TokenizedExample*> examples;
      for (int64_t i = first; i < std::min(n, first + batch); ++i) examples.push_back(&val_.examples[i]);
      torch::Tensor c;
      sum += forward_loss(right_pad(examples, pad_id(), device), &c).to(torch::kCPU, torch::kFloat64);
      count += c.to(torch::kCPU, torch::kFloat64);
    }
    const double val_loss = (sum / count.clamp_min(1)).item<double>();
    return {{"val_loss", val_loss}, {"val_ppl", std::exp(val_loss)}};
  }

  std::unique_ptr<Tokenizer> tokenizer_;
  Transformer model_{nullptr};
  std::shared_ptr<const ChatTemplate> template_;
  ChatData train_, val_;
  int64_t conversations_ = 0;
};

}  // namespace

StageEntry sft_stage_entry() {
  return {"supervised fine-tuning on conversations (loss on the assistant's replies only)", sft_schema,
          [] { return std::make_unique<SftStage>(); }, /*data_parallel=*/true, /*produces=*/{Kind::lm}};
}

}  // namespace nurture
