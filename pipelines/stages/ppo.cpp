// The `ppo` stage: reinforcement learning from a reward (RLHF) with Proximal Policy Optimization,
// as TRL's PPOTrainer and OpenRLHF do it.
//
// The policy starts from `init_from` (an sft stage, usually); a frozen copy of it is the reference
// policy. Every iteration:
//   1. rollout   take rollout_batch_size prompts, render them with the chat template and sample a
//                reply to each with the KV cache (seeded per iteration, so a resumed run draws the
//                same replies);
//   2. score     the reply's score is a weighted sum of the reward model's score of the rendered
//                conversation and the registered reward functions' scores of the decoded text, plus
//                missing_eos_penalty for a reply that never produced its stop token;
//   3. advantage per-token rewards are −β·KL_t(π ‖ π_ref), plus the score at the reply's last
//                token; the value model's estimates turn them into GAE advantages and returns,
//                whitened over the batch;
//   4. update    ppo_epochs passes over shuffled minibatches: the clipped policy objective steps
//                the policy's AdamW, the clipped value loss the value model's own AdamW;
//   5. adapt     with adaptive_kl, β follows Ziegler et al.'s proportional controller towards
//                target_kl.
// Dropout is off throughout (as TRL does): π_old is recomputed by a forward pass like the update's,
// so the first ratio π/π_old is 1 (up to the rounding of differently composed minibatches), and
// at iteration 0 the policy's log-probs equal the reference's bit for bit (KL exactly 0).
//
// Letters: B rollout rows, P prompt positions (left-padded), N response positions.
// The toolkit in pipelines/rl/ does the work; this file is PPO's recipe over it.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "modules/core/compat.h"
#include "modules/generation/sampling.h"
#include "modules/model/heads.h"
#include "modules/model/model_dir.h"
#include "modules/objectives/losses.h"
#include "pipelines/rl/advantages.h"
#include "pipelines/rl/critic.h"
#include "pipelines/rl/kl.h"
#include "pipelines/rl/logprobs.h"
#include "pipelines/rl/metrics.h"
#include "pipelines/rl/on_policy_loop.h"
#include "pipelines/rl/policy_update.h"
#include "pipelines/rl/prompt_eval.h"
#include "pipelines/rl/prompts.h"
#include "pipelines/rl/rewards.h"
#include "pipelines/rl/rollout.h"
#include "pipelines/runtime/log.h"
#include "pipelines/stages/stages.h"
#include "pipelines/train/model_setup.h"
#include "pipelines/train/trainer.h"

namespace nurture {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// ---- settings ---------------------------------------------------------------------------------------

std::shared_ptr<const Schema> ppo_schema() {
  auto s = std::make_shared<Schema>();
  // What is trained, and against what.
  add_init_from_field(*s, "init_from",
                      "the policy to improve: an sft stage (usually) or a model directory; a "
                      "frozen copy of it is the reference policy of the KL penalty");
  s->add_stage_ref("reward_model", "a trained reward model (a reward_model stage or a model "
                                   "directory of kind reward); it scores each reply rendered with "
                                   "the chat template, and the value model starts from its backbone")
      .or_path()
      .producing(Kind::reward);
  rl::add_reward_functions_field(*s, "registered rule-based rewards added to the score: names or "
                                     "{name, weight, parameters}, e.g. [exact_match] (1 when the reply "
                                     "equals the prompt's reference); plugins register more. At least "
                                     "one of reward_model and reward_functions is needed");
  s->add_float("reward_model_weight", 1.0, "weight of the reward model's score in the score");
  s->add_float("reward_function_weight", 1.0, "weight of the reward functions' sum in the score");
  s->add_float("missing_eos_penalty", 0.0, "added to the score of a reply that ends without its "
                                           "stop token (<|im_end|>), e.g. -1.0 (TRL's "
                                           "missing_eos_penalty; 0 = off)");
  // Data.
  rl::add_prompt_fields(*s, "feeds reward functions such as exact_match");
  // Rollouts.
  s->add_int("iterations", 100, "rollout + update rounds").at_least(1);
  s->add_int("rollout_batch_size", 64, "prompts sampled per iteration on each rank (a seeded order, "
                                       "reshuffled every pass over the prompts)")
      .at_least(1);
  s->add_int("max_new_tokens", 64, "longest reply sampled; prompts that leave less room than this "
                                   "in the model's block_size are left out")
      .at_least(1);
  s->add_float("temperature", 1.0, "sampling temperature; the policy's log-probs are those of "
                                   "logits / temperature, so the ratio refers to what was sampled")
      .greater_than(0);
  s->add_int("top_k", 0, "sample from the k most likely tokens only (0 = off, as TRL and OpenRLHF)")
      .at_least(0);
  s->add_float("top_p", 1.0, "nucleus sampling threshold (1 = off)").greater_than(0).at_most(1);
  // Updates.
  s->add_int("ppo_epochs", 4, "optimisation passes over each rollout (TRL: 4)").at_least(1);
  s->add_int("minibatch_size", 16, "rollout rows per optimizer step on each rank; also the batch of "
                                   "the scoring forward passes")
      .at_least(1);
  s->add_float("clip_eps", 0.2, "policy ratio clip range: ratio in [1 - clip_eps, 1 + clip_eps]")
      .greater_than(0);
  s->add_float("value_clip", 0.2, "value clip range around the rollout's values (TRL cliprange_value)")
      .greater_than(0);
  s->add_float("gamma", 1.0, "discount over response tokens (GAE)").at_least(0).at_most(1);
  s->add_float("lam", 0.95, "GAE lambda: bias/variance trade-off of the advantages").at_least(0).at_most(1);
  s->add_bool("whiten_advantages", true, "normalise advantages to mean 0, variance 1 over each "
                                         "rollout's response tokens");
  // The KL penalty.
  s->add_float("kl_coef", 0.05, "β: per-token reward −β·KL(π ‖ π_ref) that keeps the policy near "
                                "the reference (TRL: 0.05); the initial value with adaptive_kl")
      .at_least(0);
  s->add_enum("kl_estimator", "k1", {"k1", "k3"}, "per-token KL estimate in the penalty: k1 = log "
                                                  "π − log π_ref (unbiased, TRL's default); k3 = "
                                                  "(r − 1) − log r, r = π_ref/π (never negative)");
  s->add_bool("adaptive_kl", false, "adjust β after every iteration towards target_kl (Ziegler et "
                                    "al. 2019): β ← β·(1 + clip(KL/target − 1, ±0.2)·"
                                    "rollout_batch_size/kl_horizon)");
  s->add_float("target_kl", 6.0, "the KL per reply (nats) the adaptive controller aims for").greater_than(0);
  s->add_int("kl_horizon", 10000, "the adaptive controller's horizon, in rollout replies").at_least(1);
  // Optimisation.
  s->add_float("lr", 1e-5, "policy learning rate (AdamW, constant); 1e-6..1e-5 suits pretrained "
                           "models, tiny models need more (1e-4..1e-3)")
      .greater_than(0);
  s->add_float("value_lr", 5e-5, "value model learning rate (its own AdamW; OpenRLHF's critic "
                                 "learns ~10x faster than the actor). Models are separate, so this "
                                 "replaces a value-loss coefficient, which Adam's normalisation "
                                 "would cancel")
      .greater_than(0);
  s->add_float("weight_decay", 0.0, "AdamW decay on matrices and embeddings of both models").at_least(0);
  s->add_float("grad_clip", 1.0, "clip each model's global gradient norm to this (0 = off)").at_least(0);
  s->add_int("eval_every", 10, "evaluate on eval_prompts every N iterations (0 = only at the end)")
      .at_least(0);
  s->add_int("save_every", 10, "checkpoint policy, value model, optimizers and β every N "
                               "iterations (0 = only at the end)")
      .at_least(0);
  s->add_int("keep_checkpoints", 2, "keep the newest N checkpoints (older ones are deleted)").at_least(1);
  s->add_int("max_nonfinite_steps", 5, "a minibatch update with a non-finite loss or gradient norm is "
                                       "skipped; this many in a row stop the stage")
      .at_least(1);
  s->add_check([](const Settings& t, ValidationContext& ctx) {
    if (t.get_int("minibatch_size") > t.get_int("rollout_batch_size"))
      ctx.errors.push_back(t.where("minibatch_size") + ": " + std::to_string(t.get_int("minibatch_size")) +
                           " exceeds rollout_batch_size " + std::to_string(t.get_int("rollout_batch_size")) +
                           " (a minibatch is a part of one rank's rollout)");
  });
  return s;
}

struct PpoOptions {
  rl::OnPolicyOptions loop;
  int64_t rollout_batch_size = 64;
  rl::ReplySampling sampling;
  int64_t ppo_epochs = 4, minibatch_size = 16;
  double clip_eps = 0.2, value_clip = 0.2, gamma = 1.0, lam = 0.95;
  bool whiten_advantages = true;
  rl::KlOptions kl;
  double lr = 1e-5, value_lr = 5e-5, weight_decay = 0.0, grad_clip = 1.0;
  double reward_model_weight = 1.0, reward_function_weight = 1.0, missing_eos_penalty = 0.0;

  static PpoOptions from(const Settings& s) {
    PpoOptions o;
    o.loop = {s.get_int("iterations"), s.get_int("eval_every"), s.get_int("save_every"),
              s.get_int("keep_checkpoints"), s.get_int("max_nonfinite_steps")};
    o.rollout_batch_size = s.get_int("rollout_batch_size");
    o.sampling = {s.get_int("max_new_tokens"), s.get_float("temperature"), s.get_int("top_k"), s.get_float("top_p")};
    o.ppo_epochs = s.get_int("ppo_epochs");
    o.minibatch_size = s.get_int("minibatch_size");
    o.clip_eps = s.get_float("clip_eps");
    o.value_clip = s.get_float("value_clip");
    o.gamma = s.get_float("gamma");
    o.lam = s.get_float("lam");
    o.whiten_advantages = s.get_bool("whiten_advantages");
    o.kl = {s.get_float("kl_coef"), rl::parse_kl_estimator(s.get_string("kl_estimator")), s.get_bool("adaptive_kl"),
            s.get_float("target_kl"), s.get_int("kl_horizon")};
    o.lr = s.get_float("lr");
    o.value_lr = s.get_float("value_lr");
    o.weight_decay = s.get_float("weight_decay");
    o.grad_clip = s.get_float("grad_clip");
    o.reward_model_weight = s.get_float("reward_model_weight");
    o.reward_function_weight = s.get_float("reward_function_weight");
    o.missing_eos_penalty = s.get_float("missing_eos_penalty");
    return o;
  }

  // The shared optimizer settings (make_adamw) with this model's learning rate.
  TrainingOptions adamw(double learning_rate) const {
    TrainingOptions t;
    t.lr = learning_rate;
    t.weight_decay = weight_decay;
    t.grad_clip = grad_clip;
    return t;
  }
};

// ---- the stage --------------------------------------------------------------------------------------

class PpoStage : public Stage {
 public:
  json run(const StageContext& ctx) override {
    ctx_ = &ctx;
    options_ = PpoOptions::from(ctx.settings);
    loop_.emplace(ctx, options_.loop);
    kl_.emplace(options_.kl);
    setup_rewards();
    setup_models();
    setup_optimizers();
    setup_data();
    const rl::OnPolicyStep step = on_policy_step();
    loop_->resume_if_possible(step);
    loop_->run(step);
    save_model_dir(ctx.dir / "model", *policy_, policy_->options, "lm", *tokenizer_);
    log_line(ctx.name, "policy -> " + (ctx.dir / "model").string());
    return loop_->final_metrics({"reward_mean", "reward_std", "score_mean", "kl", "kl_coef", "entropy",
                                 "response_length", "stopped_fraction", "policy_loss", "value_loss",
                                 "clip_fraction"});
  }

 private:
  // ---- setup ----

  // Which scores make the reward; checked before any model is loaded.
  void setup_rewards() {
    const Settings& s = ctx_->settings;
    const ConfigNode* list = s.node().find("reward_functions");
    functions_ = std::make_unique<rl::RewardFunctions>(list ? *list : ConfigNode(), s.path() + ".reward_functions");
    if (!s.has("reward_model") && functions_->empty())
      throw std::runtime_error(s.node().where().str() + ": " + s.path() +
                               ": PPO needs a reward: set reward_model (a reward_model stage or model "
                               "directory) and/or reward_functions (e.g. [exact_match])");
    advantage_ = rl::advantage_estimator_registry().get("gae");
  }

  // Policy from init_from, its frozen reference, the reward, and the critic on the reward model's
  // backbone (it already reads replies for their quality) or else the policy's.
  void setup_models() {
    const StageContext& ctx = *ctx_;
    tokenizer_ = stage_tokenizer(ctx);
    chat_template_ = stage_chat_template(ctx, *tokenizer_);
    policy_ = build_language_model(ctx, *tokenizer_);
    policy_->eval();  // no dropout: π_old is recomputed exactly by the update passes
    reference_ = frozen_copy(policy_);
    fs::path value_dir = model_dir_of(ctx, "init_from");
    if (ctx.settings.has("reward_model")) setup_reward_model(&value_dir);
    if (!functions_->empty()) {
      log_line(ctx.name, "reward functions " + functions_->names() + " (weight " +
                             fixed(options_.reward_function_weight, 2) + ")");
      score_.add(options_.reward_function_weight, std::move(functions_));
    }
    score_.add(1.0, std::make_unique<rl::MissingEosPenalty>(options_.missing_eos_penalty));
    critic_.emplace(value_dir, ctx.run.device, ctx.run.param_dtype());
    log_line(ctx.name, "reference: frozen copy of the policy; value model: backbone of " + value_dir.string() +
                           " with a zeroed value head");
  }

  // The reward model's scores, weighted; the critic starts from its backbone when it reads the
  // policy's tokens.
  void setup_reward_model(fs::path* value_dir) {
    const StageContext& ctx = *ctx_;
    const fs::path dir = model_dir_of(ctx, "reward_model");
    const std::string kind = read_model_kind(dir);
    if (kind != "reward")
      throw std::runtime_error(ctx.settings.where("reward_model") + ": " + dir.string() + " holds a model of kind '" +
                               kind + "', not a trained reward model (kind reward, the output of a "
                               "reward_model stage)");
    auto scorer = rl::load_reward_scorer(dir, ctx.settings.get_string("chat_template"),
                                         ctx.settings.where("chat_template"), options_.minibatch_size, ctx.run.device,
                                         ctx.run.param_dtype());
    if (scorer->tokenizer().serialized() == tokenizer_->serialized()) {
      *value_dir = dir;
    } else {
      log_line(ctx.name, "the reward model has its own tokenizer: it reads replies re-encoded, and "
                         "the value model starts from the policy");
    }
    log_line(ctx.name, "reward model " + dir.string() + ": " + parameter_summary(scorer->model()->options) +
                           " (weight " + fixed(options_.reward_model_weight, 2) + ")");
    score_.add(options_.reward_model_weight, std::move(scorer));
  }

  // With several ranks both models start from rank 0's weights, and their gradients are summed
  // over the ranks.
  void setup_optimizers() {
    policy_trainer_ = std::make_unique<rl::TrainedModel>(*policy_, options_.adamw(options_.lr));
    critic_->setup_optimizer(options_.adamw(options_.value_lr));
    policy_trainer_->broadcast();
    critic_->trainer().broadcast();
    policy_trainer_->sync_gradients(ctx_->run.bucket_mb << 20);
    critic_->trainer().sync_gradients(ctx_->run.bucket_mb << 20);
  }

  void setup_data() {
    const StageContext& ctx = *ctx_;
    rl::StagePrompts sets = rl::load_stage_prompts(ctx.settings, ctx.name, *tokenizer_, *chat_template_,
                                                   policy_->options.block_size(), options_.sampling.max_new_tokens);
    prompts_ = std::move(sets.train);
    eval_prompts_ = std::move(sets.eval);
    order_.emplace(static_cast<uint64_t>(ctx.run.seed), static_cast<int64_t>(prompts_.examples.size()));
    const int64_t minibatches = (options_.rollout_batch_size + options_.minibatch_size - 1) / options_.minibatch_size;
    log_line(ctx.name, std::to_string(options_.loop.iterations) + " iterations of " +
                           std::to_string(options_.rollout_batch_size) + " prompts, " +
                           std::to_string(options_.ppo_epochs) + " epochs x " + std::to_string(minibatches) +
                           " minibatches; max_new_tokens " + std::to_string(options_.sampling.max_new_tokens) +
                           ", temperature " + fixed(options_.sampling.temperature, 2) + ", " + kl_->describe() +
                           ", lr " + scientific(options_.lr, 1) + ", value_lr " + scientific(options_.value_lr, 1));
  }

  // What the on-policy loop runs and checkpoints.
  rl::OnPolicyStep on_policy_step() {
    rl::OnPolicyStep step;
    step.iterate = [this](int64_t iteration) { return iterate(iteration); };
    if (eval_prompts_) step.evaluate = [this] { return evaluate(); };
    step.modules = [this]() -> NamedModules { return {{"policy", policy_.get()}, {"value", critic_->model().get()}}; };
    step.optimizers = [this]() -> NamedOptimizers {
      return {{"policy_optimizer", &policy_trainer_->optimizer()}, {"value_optimizer", &critic_->trainer().optimizer()}};
    };
    step.save_state = [this](json& extra) {
      extra["kl_coef"] = kl_->beta();
      extra["updates"] = updates_;
    };
    step.load_state = [this](const json& extra) {
      updates_ = extra.value("updates", int64_t{0});
      kl_->set_beta(extra.value("kl_coef", options_.kl.coef));
      return " (β " + fixed(kl_->beta(), 4) + ")";
    };
    return step;
  }

  // ---- one iteration ----

  rl::IterationResult iterate(int64_t iteration) {
    rl::Rollout rollout = collect_rollout(iteration);
    const auto training_start = std::chrono::steady_clock::now();
    rl::UpdateStats stats = update(rollout, iteration);
    rl::IterationResult out;
    // reward = score − β·Σ_t KL_t per reply: the objective PPO maximises (reads the losses back).
    rl::IterationMetrics metrics =
        rl::iteration_metrics(rollout, stats, kl_->beta(), ctx_->name + " iteration " + std::to_string(iteration + 1));
    out.metrics = std::move(metrics.metrics);
    out.stop = metrics.stop;
    const double training_s = rl::seconds_since(training_start);
    kl_->update(out.metrics["kl"].get<double>(), rollout.tokens.size(0) * dist::world_size());
    out.timings = {{"time_generation_s", rollout.generation_s},
                   {"time_scoring_s", rollout.scoring_s},
                   {"time_training_s", training_s}};
    const json& m = out.metrics;
    out.progress = {{"reward", fixed(m["reward_mean"].get<double>(), 3)},
                    {"score", fixed(m["score_mean"].get<double>(), 3)},
                    {"kl", fixed(m["kl"].get<double>(), 3)},
                    {"β", fixed(m["kl_coef"].get<double>(), 4)},
                    {"len", fixed(m["response_length"].get<double>(), 1)},
                    {"stop", fixed(m["stopped_fraction"].get<double>(), 2)},
                    {"gen/score/train", fixed(rollout.generation_s, 1) + "/" + fixed(rollout.scoring_s, 1) + "/" +
                                            fixed(training_s, 1) + "s"}};
    return out;
  }

  // Samples replies to the next rollout_batch_size prompts, scores them and turns the scores into
  // advantages: the KL penalty on every token, the score added at each reply's last token, GAE
  // over the critic's values, whitened over every rank's rollout.
  rl::Rollout collect_rollout(int64_t iteration) {
    const auto device = ctx_->run.device;
    const int64_t chunk = options_.minibatch_size;
    const double temperature = options_.sampling.temperature;
    const auto rows = order_->next(loop_->state(), options_.rollout_batch_size);
    rl::Rollout r = rl::sample_rollout(policy_, rl::prompt_batch(prompts_, rows),
                                       options_.sampling.options(*tokenizer_, *chat_template_), *tokenizer_,
                                       rl::rollout_seed(ctx_->run.seed, dist::rank(), iteration), device);
    loop_->state().tokens += r.new_tokens;
    const auto scoring_start = std::chrono::steady_clock::now();
    torch::NoGradGuard no_grad;
    r.logprobs = rl::rollout_logprobs(policy_, r, chunk, temperature, &r.entropy);
    r.ref_logprobs = rl::rollout_logprobs(reference_, r, chunk, temperature);
    r.values = critic_->values(r, chunk);
    r.scores = torch::tensor(score_.score(r.examples, r.replies), torch::kDouble).to(device, torch::kFloat);
    r.kl = kl_->per_token(r.logprobs, r.ref_logprobs, r.response_mask);
    r.rewards = rl::kl_penalized_rewards(r.kl, r.scores, r.response_mask, kl_->beta());
    rl::AdvantageInput in{r.rewards, r.values, r.response_mask, r.scores, 1, options_.gamma, options_.lam};
    rl::Advantages a = advantage_(in);
    r.returns = a.returns;
    r.advantages = options_.whiten_advantages ? rl::whiten_over_ranks(a.advantages, r.response_mask) : a.advantages;
    r.scoring_s = rl::seconds_since(scoring_start);  // the scores came back to the host
    return r;
  }

  // ppo_epochs passes over the rollout in shuffled minibatches; each minibatch steps the policy
  // (clipped surrogate) and the critic (clipped value loss).
  rl::UpdateStats update(const rl::Rollout& r, int64_t iteration) {
    rl::UpdateStats stats;
    rl::for_each_minibatch(
        r.tokens.size(0), options_.minibatch_size, options_.ppo_epochs, ctx_->run.seed, iteration, ctx_->run.device,
        [&](const torch::Tensor& rows) {
          const rl::RolloutRows mb = rl::select_rows(r, rows);
          PolicyLoss policy_loss = rl::clipped_policy_loss(policy_, r, mb, options_.sampling.temperature,
                                                           options_.clip_eps);
          policy_trainer_->step(policy_loss.loss, loop_->nonfinite(), updates_, loop_->last_checkpoint());
          ValueLoss value_loss = critic_->loss(r, mb, options_.value_clip);
          critic_->trainer().step(value_loss.loss, loop_->nonfinite(), updates_, loop_->last_checkpoint());
          stats.add(policy_loss, value_loss);
          ++updates_;
        });
    return stats;
  }

  // ---- evaluation ----

  json evaluate() {
    return rl::evaluate_on_prompts(policy_, *eval_prompts_,
                                   options_.sampling.greedy().options(*tokenizer_, *chat_template_), *tokenizer_,
                                   score_, options_.rollout_batch_size);
  }

  const StageContext* ctx_ = nullptr;
  PpoOptions options_;
  std::optional<rl::OnPolicyLoop> loop_;
  std::optional<Tokenizer> tokenizer_;
  std::shared_ptr<const ChatTemplate> chat_template_;
  std::unique_ptr<rl::RewardFunctions> functions_;  // until setup_models adds them to score_
  rl::WeightedRewards score_;
  rl::AdvantageEstimator advantage_;
  std::optional<rl::KlController> kl_;
  Transformer policy_{nullptr}, reference_{nullptr};
  std::unique_ptr<rl::TrainedModel> policy_trainer_;
  std::optional<rl::Critic> critic_;
  rl::PromptSet prompts_;
  std::optional<rl::PromptOrder> order_;
  std::optional<rl::PromptSet> eval_prompts_;
  int64_t updates_ = 0;  // minibatch updates done (each steps both models)
};

}  // namespace

StageEntry ppo_stage_entry() {
  return {"RLHF with PPO: improve a policy against a reward model and/or reward functions, with a "
          "KL penalty to its frozen starting point",
          ppo_schema, [] { return std::make_unique<PpoStage>(); }, /*data_parallel=*/true,
          /*produces=*/{Kind::lm}};
}

}  // namespace nurture
