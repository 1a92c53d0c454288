// The `dpo` stage: Direct Preference Optimization (Rafailov et al. 2023). The policy starts from
// an sft model; a frozen copy of it is the reference. On preference pairs {prompt, chosen,
// rejected}, the loss raises β·(log π/π_ref) of the chosen reply above that of the rejected one —
// the Bradley–Terry objective with the policy itself as the implicit reward model, no sampling and
// no separate reward model. Writes <stage>/model/ (kind "lm").
//
// Each side is rendered with the chat template as prompt + one assistant reply; its log-prob is the
// sum over the reply's tokens (content and closing token), the prompt not counted. A micro-batch of
// B pairs is one [2B, T] forward of each model (chosen rows, then rejected rows, right-padded).
#include <algorithm>
#include <map>

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

std::shared_ptr<const Schema> dpo_schema() {
  auto s = std::make_shared<Schema>();
  add_preference_data_fields(*s);
  s->add_float("beta", 0.1, "strength of the pull towards the reference (higher = stay closer); "
                            "the implicit reward is beta * log(policy / reference)")
      .greater_than(0);
  s->add_float("label_smoothing", 0.0, "assumed share of flipped preference labels (conservative "
                                       "DPO); 0 = plain DPO")
      .at_least(0)
      .at_most(0.5);
  add_init_from_field(*s, "init_from", "the policy to start from, and its frozen reference").usually("sft");
  TrainingDefaults d;
  d.max_steps = 300;
  d.batch_size = 8;
  d.lr = 1e-5;
  d.warmup_steps = 10;
  d.weight_decay = 0.0;
  d.eval_every = 50;
  add_training_fields(*s, d);
  return s;
}

// ---- the stage --------------------------------------------------------------------------------------

class DpoStage : public Stage {
 public:
  json run(const StageContext& ctx) override {
    const Settings& s = ctx.settings;
    tokenizer_ = std::make_unique<Tokenizer>(stage_tokenizer(ctx));
    setup_models(ctx);
    data_ = read_preference_splits(s, ctx.name, *tokenizer_, stage_chat_template(ctx, *tokenizer_),
                                   policy_->options.block_size());
    beta_ = s.get_float("beta");
    label_smoothing_ = s.get_float("label_smoothing");
    log_line(ctx.name, "beta " + json(beta_).dump() + ", label_smoothing " + json(label_smoothing_).dump());

    Trainer trainer(ctx, *policy_, TrainingOptions::from(s));
    trainer.resume_if_possible();  // the policy's weights only; the reference stays the initial model
    const int64_t batch = s.get_int("batch_size");
    ShuffledOrder order(static_cast<uint64_t>(ctx.run.seed), static_cast<int64_t>(data_.train.pairs.size()));
    json metrics = trainer.fit(
        [&](TrainingState& state) { return micro_step(ctx, state, order, batch); },
        [&] { return evaluate(batch, s.get_int("eval_batches")); });
    data_.add_counts(metrics);

    save_model_dir(ctx.dir / "model", *policy_, policy_->options, "lm", *tokenizer_);
    log_line(ctx.name, "policy written to " + (ctx.dir / "model").string());
    return metrics;
  }

 private:
  // The policy from init_from, and the reference: a frozen copy of it as it starts.
  void setup_models(const StageContext& ctx) {
    policy_ = build_language_model(ctx, *tokenizer_);
    reference_ = frozen_copy(policy_);
    log_line(ctx.name, "reference: a frozen copy of the initial policy");
  }

  // The DPO loss of a pair batch, with the policy's own reply log-probs (chosen, rejected) [B].
  struct Forward {
    DpoLoss loss;
    torch::Tensor chosen_logps, rejected_logps;
  };
  Forward forward_loss(const PaddedBatch& b) {
    const int64_t pairs = b.ids.size(0) / 2;
    // ids: [2B, T] -> logits [2B, T, V] -> Σ log p over each reply's tokens [2B]
    auto logps = sequence_logprob(policy_->forward(b.ids, b.attention_mask), b.ids, b.loss_mask);
    torch::Tensor ref_logps;
    {
      torch::NoGradGuard no_grad;
      ref_logps = sequence_logprob(reference_->forward(b.ids, b.attention_mask), b.ids, b.loss_mask);
    }
    auto chosen = logps.narrow(0, 0, pairs), rejected = logps.narrow(0, pairs, pairs);
    DpoLoss loss = dpo_loss(chosen, rejected, ref_logps.narrow(0, 0, pairs),
                            ref_logps.narrow(0, pairs, pairs), beta_, label_smoothing_);
    return {loss, chosen.detach(), rejected.detach()};
  }

  // Per-pair sums of what is logged: reward accuracy and margin, the implicit rewards, and the
  // policy's log-probs of each side (both falling together is DPO's known failure mode).
  static std::map<std::string, torch::Tensor> pair_sums(const Forward& f) {
    const double n = static_cast<double>(f.chosen_logps.size(0));
    return {{"accuracy", f.loss.accuracy * n},
            {"margin", f.loss.margin * n},
            {"chosen_reward", f.loss.chosen_rewards.sum()},
            {"rejected_reward", f.loss.rejected_rewards.sum()},
            {"chosen_logp", f.chosen_logps.sum()},
            {"rejected_logp", f.rejected_logps.sum()}};
  }

  // The next `batch` pairs of the seeded order at the data cursor; every pair is one unit.
  MicroBatch micro_step(const StageContext& ctx, TrainingState& state, ShuffledOrder& order, int64_t batch) {
    std::vector<const TokenizedPair*> pairs;
    for (int64_t position : take_positions(state, batch)) pairs.push_back(&data_.train.pairs[order.at(position)]);
    PaddedBatch b = pair_batch(pairs, data_.pad_id, ctx.run.device);
    Forward f = forward_loss(b);
    const double n = static_cast<double>(pairs.size());
    return {f.loss.loss * n, torch::full({}, n, f.loss.loss.options()), b.tokens, pair_sums(f)};
  }

  // The same quantities on the held-out pairs, in pair order.
  json evaluate(int64_t batch, int64_t eval_batches) {
    if (data_.val.pairs.empty()) return json::object();
    const torch::Device device = policy_->parameters().front().device();
    auto n = static_cast<int64_t>(data_.val.pairs.size());
    if (eval_batches > 0) n = std::min(n, eval_batches * batch);
    std::map<std::string, torch::Tensor> sums;
    for (int64_t first = 0; first < n; first += batch) {
      const std::vector<const TokenizedPair*> pairs = data_.val_pairs(first, std::min(n, first + batch));
      Forward f = forward_loss(pair_batch(pairs, data_.pad_id, device));
      auto batch_sums = pair_sums(f);
      batch_sums["loss"] = f.loss.loss * static_cast<double>(pairs.size());
      for (auto& [k, v] : batch_sums) {
        auto cpu = v.to(torch::kCPU, torch::kFloat64);
        sums[k] = sums.count(k) ? sums[k] + cpu : cpu;
      }
    }
    json out = json::object();
    for (const auto& [k, v] : sums) out["val_" + k] = v.item<double>() / n;
    return out;
  }

  std::unique_ptr<Tokenizer> tokenizer_;
  Transformer policy_{nullptr}, reference_{nullptr};
  PreferenceSplits data_;
  double beta_ = 0.1, label_smoothing_ = 0.0;
};

}  // namespace

StageEntry dpo_stage_entry() {
  return {"direct preference optimization of an sft model against its frozen copy", dpo_schema,
          [] { return std::make_unique<DpoStage>(); }, /*data_parallel=*/true, /*produces=*/{Kind::lm}};
}

}  // namespace nurture
