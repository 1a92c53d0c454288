// The `reward_model` stage: a scalar score head on a pre-trained or fine-tuned backbone, trained on
// preference pairs {prompt, chosen, rejected} with the Bradley–Terry loss so that
// score(prompt + chosen) > score(prompt + rejected). Writes <stage>/model/ (kind "reward"), which
// PPO optimises against.
//
// Each pair is rendered with the chat template as prompt + one assistant reply, once per side; a
// micro-batch of B pairs is one [2B, T] forward (chosen rows, then rejected rows, right-padded),
// scored at each row's last real token.
#include <algorithm>

#include "modules/model/heads.h"
#include "modules/objectives/losses.h"
#include "pipelines/data/batch.h"
#include "pipelines/data/data.h"
#include "pipelines/data/preference_data.h"
#include "pipelines/runtime/log.h"
#include "pipelines/stages/stages.h"
#include "pipelines/train/model_setup.h"
#include "pipelines/train/trainer.h"

namespace nurture {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::shared_ptr<const Schema> reward_model_schema() {
  auto s = std::make_shared<Schema>();
  add_preference_data_fields(*s);
  add_init_from_field(*s, "init_from", "the backbone to put the score head on");
  TrainingDefaults d;
  d.max_steps = 300;
  d.batch_size = 16;
  d.lr = 1e-4;
  d.warmup_steps = 10;
  d.weight_decay = 0.0;
  d.eval_every = 50;
  add_training_fields(*s, d);
  return s;
}

// ---- the stage --------------------------------------------------------------------------------------

class RewardModelStage : public Stage {
 public:
  json run(const StageContext& ctx) override {
    const Settings& s = ctx.settings;
    tokenizer_ = std::make_unique<Tokenizer>(stage_tokenizer(ctx));
    setup_model(ctx);
    data_ = read_preference_splits(s, ctx.name, *tokenizer_, stage_chat_template(ctx, *tokenizer_),
                                   model_->options.block_size());

    Trainer trainer(ctx, *model_, TrainingOptions::from(s));
    trainer.resume_if_possible();
    const int64_t batch = s.get_int("batch_size");
    ShuffledOrder order(static_cast<uint64_t>(ctx.run.seed), static_cast<int64_t>(data_.train.pairs.size()));
    json metrics = trainer.fit(
        [&](TrainingState& state) { return micro_step(ctx, state, order, batch); },
        [&] { return evaluate(batch, s.get_int("eval_batches")); });
    data_.add_counts(metrics);

    save_model_dir(ctx.dir / "model", *model_, model_->options, "reward", *tokenizer_);
    log_line(ctx.name, "reward model written to " + (ctx.dir / "model").string());
    return metrics;
  }

 private:
  // The backbone from init_from; the score head starts fresh.
  void setup_model(const StageContext& ctx) {
    Transformer backbone = build_language_model(ctx, *tokenizer_);
    model_ = RewardModel(backbone->options);
    model_->load_backbone(backbone);
    model_->to(ctx.run.device, ctx.run.param_dtype());
    int64_t parameters = 0;
    for (const auto& p : model_->parameters()) parameters += p.numel();
    log_line(ctx.name, "reward model: that backbone + a score head, " +
                           human_count(static_cast<double>(parameters)) + " parameters");
  }

  // Bradley–Terry over the scores of a pair batch.
  PairwiseLoss forward_loss(const PaddedBatch& b) {
    const int64_t pairs = b.ids.size(0) / 2;
    auto scores = model_->forward(b.ids, b.attention_mask);  // [2B, T] -> [2B]
    return bradley_terry_loss(scores.narrow(0, 0, pairs), scores.narrow(0, pairs, pairs));
  }

  // The next `batch` pairs of the seeded order at the data cursor; every pair is one unit.
  MicroBatch micro_step(const StageContext& ctx, TrainingState& state, ShuffledOrder& order, int64_t batch) {
    std::vector<const TokenizedPair*> pairs;
    for (int64_t position : take_positions(state, batch)) pairs.push_back(&data_.train.pairs[order.at(position)]);
    PaddedBatch b = pair_batch(pairs, data_.pad_id, ctx.run.device);
    PairwiseLoss loss = forward_loss(b);
    const double n = static_cast<double>(pairs.size());
    return {loss.loss * n, torch::full({}, n, loss.loss.options()), b.tokens,
            {{"accuracy", loss.accuracy * n}, {"margin", loss.margin * n}}};
  }

  // Held-out loss, accuracy (chosen scored above rejected) and mean margin, in pair order.
  json evaluate(int64_t batch, int64_t eval_batches) {
    if (data_.val.pairs.empty()) return json::object();
    const torch::Device device = model_->parameters().front().device();
    auto n = static_cast<int64_t>(data_.val.pairs.size());
    if (eval_batches > 0) n = std::min(n, eval_batches * batch);
    torch::Tensor loss = torch::zeros({}, torch::kFloat64), accuracy = torch::zeros({}, torch::kFloat64),
                  margin = torch::zeros({}, torch::kFloat64);
    for (int64_t first = 0; first < n; first += batch) {
      const std::vector<const TokenizedPair*> pairs = data_.val_pairs(first, std::min(n, first + batch));
      PairwiseLoss l = forward_loss(pair_batch(pairs, data_.pad_id, device));
      const double k = static_cast<double>(pairs.size());
      loss += l.loss.to(torch::kCPU, torch::kFloat64) * k;
      accuracy += l.accuracy.to(torch::kCPU, torch::kFloat64) * k;
      margin += l.margin.to(torch::kCPU, torch::kFloat64) * k;
    }
    return {{"val_loss", loss.item<double>() / n},
            {"val_accuracy", accuracy.item<double>() / n},
            {"val_margin", margin.item<double>() / n}};
  }

  std::unique_ptr<Tokenizer> tokenizer_;
  RewardModel model_{nullptr};
  PreferenceSplits data_;
};

}  // namespace

StageEntry reward_model_stage_entry() {
  return {"train a reward model (a score head on a backbone) on preference pairs", reward_model_schema,
          [] { return std::make_unique<RewardModelStage>(); }, /*data_parallel=*/true,
          /*produces=*/{Kind::reward}};
}

}  // namespace nurture
