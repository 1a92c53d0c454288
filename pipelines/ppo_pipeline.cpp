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
// Letters: B rollout rows, P prompt positions (left-padded), N response positions, T = P + N,
// V vocab, C channels.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include "modules/compat.h"
#include "modules/heads.h"
#include "modules/losses.h"
#include "modules/model_dir.h"
#include "modules/sampling.h"
#include "pipelines/builtin_pipelines.h"
#include "pipelines/data.h"
#include "pipelines/log.h"
#include "pipelines/model_setup.h"
#include "pipelines/registry.h"
#include "pipelines/trainer.h"

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
  s->add_string_list("reward_functions", "registered rule-based rewards added to the score, e.g. "
                                         "[exact_match] (1 when the reply equals the prompt's "
                                         "reference); plugins register more. At least one of "
                                         "reward_model and reward_functions is needed");
  s->add_float("reward_model_weight", 1.0, "weight of the reward model's score in the score");
  s->add_float("reward_function_weight", 1.0, "weight of the reward functions' sum in the score");
  s->add_float("missing_eos_penalty", 0.0, "added to the score of a reply that ends without its "
                                           "stop token (<|im_end|>), e.g. -1.0 (TRL's "
                                           "missing_eos_penalty; 0 = off)");
  // Data.
  s->add_string("prompts", "", "JSONL of {prompt, reference?}: prompt is a string (one user turn) "
                               "or a list of {role, content} messages; reference feeds reward "
                               "functions such as exact_match")
      .must_be_required();
  s->add_string("eval_prompts", "", "held-out prompts in the same format, answered greedily every "
                                    "eval_every iterations: exact-match accuracy (when they have "
                                    "references) and mean score (empty = no evaluation)");
  s->add_bool("skip_bad_lines", false, "skip and count malformed data lines instead of stopping");
  s->add_string("chat_template", "chatml", "how prompts become tokens (a registered template); its "
                                           "stop tokens end each reply");
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
  int64_t iterations = 100, rollout_batch_size = 64, max_new_tokens = 64;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  int64_t ppo_epochs = 4, minibatch_size = 16;
  double clip_eps = 0.2, value_clip = 0.2, gamma = 1.0, lam = 0.95;
  bool whiten_advantages = true;
  double kl_coef = 0.05;
  std::string kl_estimator = "k1";
  bool adaptive_kl = false;
  double target_kl = 6.0;
  int64_t kl_horizon = 10000;
  double lr = 1e-5, value_lr = 5e-5, weight_decay = 0.0, grad_clip = 1.0;
  double reward_model_weight = 1.0, reward_function_weight = 1.0, missing_eos_penalty = 0.0;
  int64_t eval_every = 10, save_every = 10, keep_checkpoints = 2, max_nonfinite_steps = 5;

  static PpoOptions from(const Settings& s) {
    PpoOptions o;
    o.iterations = s.get_int("iterations");
    o.rollout_batch_size = s.get_int("rollout_batch_size");
    o.max_new_tokens = s.get_int("max_new_tokens");
    o.temperature = s.get_float("temperature");
    o.top_k = s.get_int("top_k");
    o.top_p = s.get_float("top_p");
    o.ppo_epochs = s.get_int("ppo_epochs");
    o.minibatch_size = s.get_int("minibatch_size");
    o.clip_eps = s.get_float("clip_eps");
    o.value_clip = s.get_float("value_clip");
    o.gamma = s.get_float("gamma");
    o.lam = s.get_float("lam");
    o.whiten_advantages = s.get_bool("whiten_advantages");
    o.kl_coef = s.get_float("kl_coef");
    o.kl_estimator = s.get_string("kl_estimator");
    o.adaptive_kl = s.get_bool("adaptive_kl");
    o.target_kl = s.get_float("target_kl");
    o.kl_horizon = s.get_int("kl_horizon");
    o.lr = s.get_float("lr");
    o.value_lr = s.get_float("value_lr");
    o.weight_decay = s.get_float("weight_decay");
    o.grad_clip = s.get_float("grad_clip");
    o.reward_model_weight = s.get_float("reward_model_weight");
    o.reward_function_weight = s.get_float("reward_function_weight");
    o.missing_eos_penalty = s.get_float("missing_eos_penalty");
    o.eval_every = s.get_int("eval_every");
    o.save_every = s.get_int("save_every");
    o.keep_checkpoints = s.get_int("keep_checkpoints");
    o.max_nonfinite_steps = s.get_int("max_nonfinite_steps");
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

// Ziegler et al. (2019), "Fine-Tuning Language Models from Human Preferences": β grows when the
// measured KL is above target and shrinks below it, by at most 20% of n_steps/horizon per update.
double adaptive_kl_update(double beta, double kl, double target, int64_t n_steps, int64_t horizon) {
  const double error = std::clamp(kl / target - 1.0, -0.2, 0.2);
  return beta * (1.0 + error * static_cast<double>(n_steps) / static_cast<double>(horizon));
}

// A well-mixed seed for (seed, a, b): each iteration's sampling and each epoch's shuffle draw from
// their own generator, so a resumed run reproduces them without any saved generator state.
uint64_t derive_seed(uint64_t seed, uint64_t a, uint64_t b = 0) {
  uint64_t x = seed ^ (a * 0x9E3779B97F4A7C15ULL) ^ (b * 0xC2B2AE3D27D4EB4FULL);
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

std::string fixed(double v, int digits) {
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(digits);
  out << v;
  return out.str();
}

std::string scientific(double v) {
  std::ostringstream out;
  out.setf(std::ios::scientific);
  out.precision(1);
  out << v;
  return out.str();
}

std::string last_user_message(const std::vector<Message>& messages) {
  for (auto it = messages.rbegin(); it != messages.rend(); ++it)
    if (it->role == "user") return it->content;
  return messages.empty() ? std::string() : messages.back().content;
}

// ---- prompts ---------------------------------------------------------------------------------------

// Prompts rendered with the generation prompt, ready to sample from.
struct PromptSet {
  std::vector<PromptExample> examples;
  std::vector<std::vector<int64_t>> ids;
  int64_t too_long = 0;  // left out: no room for max_new_tokens in the block
  ReadStats stats;
};

PromptSet load_prompt_set(const fs::path& file, bool skip_bad_lines, const Tokenizer& tokenizer,
                          const ChatTemplate& chat_template, int64_t max_prompt_tokens) {
  PromptSet set;
  for (auto& example : load_prompts(file, skip_bad_lines, &set.stats)) {
    auto ids = chat_template.render(tokenizer, example.prompt, /*add_generation_prompt=*/true).ids;
    if (static_cast<int64_t>(ids.size()) > max_prompt_tokens) {
      ++set.too_long;
      continue;
    }
    set.examples.push_back(std::move(example));
    set.ids.push_back(std::move(ids));
  }
  if (set.examples.empty())
    throw std::runtime_error(file.string() + ": no prompt fits in " + std::to_string(max_prompt_tokens) +
                             " tokens (" + std::to_string(set.too_long) +
                             " too long). HINT: lower max_new_tokens or shorten the prompts");
  return set;
}

// ---- rollouts ---------------------------------------------------------------------------------------

// Everything one iteration learns from; [B, N] tensors are 0 where response_mask is 0.
struct Rollout {
  torch::Tensor tokens;          // [B, T] int64: left-padded prompts, then the replies
  torch::Tensor attention_mask;  // [B, T] int64
  torch::Tensor response_mask;   // [B, N] float32
  int64_t prompt_length = 0;     // P
  int64_t response_length = 0;   // N
  torch::Tensor logprobs;        // [B, N] log π_old(token), with logits / temperature
  torch::Tensor ref_logprobs;    // [B, N] log π_ref(token)
  torch::Tensor values;          // [B, N] V(state before each response token)
  torch::Tensor entropy;         // [B, N] entropy of π_old at each response position
  torch::Tensor kl;              // [B, N] the penalty's per-token KL estimate
  torch::Tensor scores;          // [B] the score of each reply
  torch::Tensor rewards;         // [B, N] −β·kl, plus the score at each reply's last token
  torch::Tensor advantages;      // [B, N] GAE (whitened when asked)
  torch::Tensor returns;         // [B, N] GAE advantages + values (the value targets)
  torch::Tensor stopped;         // [B] bool
  double generation_s = 0;       // sampling the replies (KV cache)
  double scoring_s = 0;          // π_old, π_ref, V and the rewards on them
};

static double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Logits of the positions that predict each response token, plus the one after the last:
// tokens: [B, T] -> [B, N + 1, V], divided by the sampling temperature. token_logprobs over
// these and tokens[:, P - 1:] gives the [B, N] response log-probs; the first N rows are the
// distributions the response tokens were drawn from.
torch::Tensor response_logits(Transformer& model, const torch::Tensor& tokens,
                              const torch::Tensor& attention_mask, int64_t prompt_length,
                              int64_t response_length, double temperature) {
  auto hidden = model->hidden_states(tokens, attention_mask);  // [B, T, C]
  // contiguous(): LibTorch 2.x's matmul multiplies a strided slice one way when the weight
  // requires grad (the policy) and another when not (the frozen reference), which rounds
  // differently; a contiguous slice takes one path for both, so π = π_ref bit for bit.
  auto response = hidden.narrow(1, prompt_length - 1, response_length + 1).contiguous();  // [B, N+1, C]
  auto logits = model->lm_head(response);                                                  // [B, N+1, V]
  return temperature == 1.0 ? logits : logits / temperature;
}

// tokens: [B, T], logits from response_logits -> [B, N]
torch::Tensor response_logprobs(const torch::Tensor& logits, const torch::Tensor& tokens,
                                int64_t prompt_length, int64_t response_length) {
  return token_logprobs(logits, tokens.narrow(1, prompt_length - 1, response_length + 1));
}

// Value of the state before each response token: tokens: [B, T] -> [B, N]
torch::Tensor response_values(ValueModel& value_model, const torch::Tensor& tokens,
                              const torch::Tensor& attention_mask, int64_t prompt_length,
                              int64_t response_length) {
  return value_model->forward(tokens, attention_mask).narrow(1, prompt_length - 1, response_length);
}

// Sums of per-minibatch metrics over an iteration's updates, read back once.
struct UpdateStats {
  torch::Tensor policy_loss, value_loss, clip_fraction, value_clip_fraction, approx_kl;
  int64_t updates = 0;

  void add(const PolicyLoss& p, const ValueLoss& v) {
    auto acc = [](torch::Tensor& sum, const torch::Tensor& x) {
      sum = sum.defined() ? sum + x.detach() : x.detach().clone();
    };
    acc(policy_loss, p.loss);
    acc(clip_fraction, p.clip_fraction);
    acc(approx_kl, p.approx_kl);
    acc(value_loss, v.loss);
    acc(value_clip_fraction, v.clip_fraction);
    ++updates;
  }
  double mean(const torch::Tensor& sum) const { return sum.item<double>() / static_cast<double>(updates); }
};

// ---- the stage --------------------------------------------------------------------------------------

class PpoPipeline : public Pipeline {
 public:
  json run(const StageContext& ctx) override {
    ctx_ = &ctx;
    options_ = PpoOptions::from(ctx.settings);
    nonfinite_.emplace(ctx.name, options_.max_nonfinite_steps);
    setup_rewards();
    setup_models();
    setup_optimizers();
    setup_data();
    resume_if_possible();
    train();
    save_model_dir(ctx.dir / "model", *policy_, policy_->options, "lm", *tokenizer_);
    log_line(ctx.name, "policy -> " + (ctx.dir / "model").string());
    return final_metrics();
  }

 private:
  // ---- setup ----

  // Which scores make the reward; checked before any model is loaded.
  void setup_rewards() {
    const Settings& s = ctx_->settings;
    for (const auto& name : s.get_string_list("reward_functions")) {
      if (!registries().rewards.contains(name))
        throw std::runtime_error(s.where("reward_functions") + ": " + registries().rewards.unknown(name));
      reward_functions_.emplace_back(name, registries().rewards.get(name));
    }
    if (!s.has("reward_model") && reward_functions_.empty())
      throw std::runtime_error(s.node().where().str() + ": " + s.path() +
                               ": PPO needs a reward: set reward_model (a reward_model stage or model "
                               "directory) and/or reward_functions (e.g. [exact_match])");
  }

  // Policy from init_from, its frozen reference, the reward model, and the value model on the
  // reward model's backbone (it already reads replies for their quality) or else the policy's.
  void setup_models() {
    const StageContext& ctx = *ctx_;
    const Settings& s = ctx.settings;
    tokenizer_ = stage_tokenizer(ctx);
    chat_template_ = stage_chat_template(ctx);
    policy_ = build_language_model(ctx, *tokenizer_);
    policy_->eval();  // no dropout: π_old is recomputed exactly by the update passes
    reference_ = frozen_copy(policy_);
    const fs::path policy_dir = model_dir_of(ctx, "init_from");

    fs::path value_dir = policy_dir;
    if (s.has("reward_model")) {
      const fs::path dir = model_dir_of(ctx, "reward_model");
      const std::string kind = read_model_kind(dir);
      if (kind != "reward")
        throw std::runtime_error(s.where("reward_model") + ": " + dir.string() + " holds a model of kind '" +
                                 kind + "', not a trained reward model (kind reward, the output of a "
                                 "reward_model stage)");
      reward_model_ = load_reward_model(dir, ctx.run.device);
      reward_model_->to(ctx.run.param_dtype());
      reward_model_->eval();
      for (auto& p : reward_model_->parameters()) p.set_requires_grad(false);
      reward_tokenizer_ = Tokenizer::load(dir.string());
      if (reward_tokenizer_->serialized() == tokenizer_->serialized()) {
        value_dir = dir;
      } else {
        log_line(ctx.name, "the reward model has its own tokenizer: it reads replies re-encoded, and "
                           "the value model starts from the policy");
      }
      log_line(ctx.name, "reward model " + dir.string() + ": " + parameter_summary(reward_model_->options) +
                             " (weight " + fixed(options_.reward_model_weight, 2) + ")");
    }
    if (!reward_functions_.empty()) {
      std::string names;
      for (const auto& f : reward_functions_) names += (names.empty() ? "" : ", ") + f.first;
      log_line(ctx.name, "reward functions " + names + " (weight " +
                             fixed(options_.reward_function_weight, 2) + ")");
    }

    value_ = load_value_model(value_dir, ctx.run.device);
    value_->to(ctx.run.param_dtype());
    {
      torch::NoGradGuard no_grad;  // V = 0 everywhere at the start
      value_->value_head->weight.zero_();
      value_->value_head->bias.zero_();
    }
    value_->eval();
    log_line(ctx.name, "reference: frozen copy of the policy; value model: backbone of " +
                           value_dir.string() + " with a zeroed value head");
  }

  // With several ranks both models start from rank 0's weights, and their gradients are summed
  // over the ranks (each rank's loss weighs 1/world_size: the mean over ranks).
  void setup_optimizers() {
    policy_optimizer_ = make_adamw(*policy_, options_.adamw(options_.lr));
    value_optimizer_ = make_adamw(*value_, options_.adamw(options_.value_lr));
    beta_ = options_.kl_coef;
    if (dist::world_size() > 1) {
      dist::broadcast_module(*policy_);
      dist::broadcast_module(*value_);
      policy_sync_ = std::make_unique<dist::GradientSync>(*policy_, ctx_->run.bucket_mb << 20);
      value_sync_ = std::make_unique<dist::GradientSync>(*value_, ctx_->run.bucket_mb << 20);
    }
  }

  void setup_data() {
    const StageContext& ctx = *ctx_;
    const Settings& s = ctx.settings;
    const int64_t block = policy_->options.block_size();
    const int64_t max_prompt = block - options_.max_new_tokens;
    if (max_prompt < 1)
      throw std::runtime_error(s.where("max_new_tokens") + ": " + std::to_string(options_.max_new_tokens) +
                               " leaves no room for a prompt in the model's block_size " +
                               std::to_string(block));
    const bool skip = s.get_bool("skip_bad_lines");
    const std::string prompts_file = s.get_string("prompts");
    prompts_ = load_prompt_set(prompts_file, skip, *tokenizer_, *chat_template_, max_prompt);
    log_prompts("prompts", prompts_file, prompts_);
    order_.emplace(static_cast<uint64_t>(ctx.run.seed), static_cast<int64_t>(prompts_.examples.size()));
    const std::string eval_file = s.get_string("eval_prompts");
    if (!eval_file.empty()) {
      eval_prompts_ = load_prompt_set(eval_file, skip, *tokenizer_, *chat_template_, max_prompt);
      log_prompts("eval prompts", eval_file, *eval_prompts_);
    }
    const int64_t minibatches =
        (options_.rollout_batch_size + options_.minibatch_size - 1) / options_.minibatch_size;
    const std::string kl_rule =
        options_.adaptive_kl ? "adaptive to " + fixed(options_.target_kl, 2) : std::string("fixed");
    log_line(ctx.name, std::to_string(options_.iterations) + " iterations of " +
                           std::to_string(options_.rollout_batch_size) + " prompts, " +
                           std::to_string(options_.ppo_epochs) + " epochs x " + std::to_string(minibatches) +
                           " minibatches; max_new_tokens " + std::to_string(options_.max_new_tokens) +
                           ", temperature " + fixed(options_.temperature, 2) + ", β " +
                           fixed(options_.kl_coef, 4) + " (" + options_.kl_estimator + ", " + kl_rule +
                           "), lr " + scientific(options_.lr) + ", value_lr " + scientific(options_.value_lr));
  }

  void log_prompts(const std::string& what, const std::string& file, const PromptSet& set) const {
    log_line(ctx_->name, what + ": " + std::to_string(set.examples.size()) + " from " + file + " (" +
                             std::to_string(set.stats.skipped) + " bad lines skipped, " +
                             std::to_string(set.too_long) + " too long for max_new_tokens)");
  }

  // ---- checkpoints ----

  NamedModules checkpoint_modules() { return {{"policy", policy_.get()}, {"value", value_.get()}}; }
  NamedOptimizers checkpoint_optimizers() {
    return {{"policy_optimizer", policy_optimizer_.get()}, {"value_optimizer", value_optimizer_.get()}};
  }

  void resume_if_possible() {
    if (!load_checkpoint(ctx_->dir, checkpoint_modules(), checkpoint_optimizers(), state_, ctx_->name)) return;
    nonfinite_->set_skipped(state_.extra.value("skipped_updates", int64_t{0}));
    updates_ = state_.extra.value("updates", int64_t{0});
    iteration_ = state_.extra.value("iteration", int64_t{0});
    beta_ = state_.extra.value("kl_coef", options_.kl_coef);
    last_metrics_ = state_.extra.value("last_metrics", json::object());
    last_eval_ = state_.extra.value("last_eval", json::object());
    last_eval_iteration_ = state_.extra.value("last_eval_iteration", int64_t{-1});
    log_line(ctx_->name, "resuming from the checkpoint at iteration " + std::to_string(iteration_) + "/" +
                             std::to_string(options_.iterations) + " (β " + fixed(beta_, 4) + ")");
    drop_metrics_after(ctx_->dir / "metrics.jsonl", "iteration", iteration_);
  }

  void checkpoint() {
    state_.extra["iteration"] = iteration_;
    state_.extra["kl_coef"] = beta_;
    state_.extra["last_metrics"] = last_metrics_;
    state_.extra["last_eval"] = last_eval_;
    state_.extra["last_eval_iteration"] = last_eval_iteration_;
    state_.extra["skipped_updates"] = nonfinite_->skipped();
    state_.extra["updates"] = updates_;
    state_.step = iteration_;  // checkpoints are named by iteration
    last_checkpoint_ = save_checkpoint(ctx_->dir, checkpoint_modules(), checkpoint_optimizers(), state_,
                                       options_.keep_checkpoints)
                           .string();
  }

  // ---- the loop ----

  void train() {
    MetricsLog metrics(ctx_->dir / "metrics.jsonl");
    Progress progress(ctx_->name, options_.iterations, /*plain_every_s=*/0.0);
    while (iteration_ < options_.iterations) {
      Rollout rollout = collect_rollout(next_prompts());
      const auto training_start = std::chrono::steady_clock::now();
      UpdateStats stats = update(rollout);
      bool stop = false;
      json record = iteration_metrics(rollout, stats, &stop);  // (reads the losses back)
      const double training_s = seconds_since(training_start);
      if (options_.adaptive_kl)
        beta_ = adaptive_kl_update(beta_, record["kl"].get<double>(), options_.target_kl,
                                   options_.rollout_batch_size * dist::world_size(), options_.kl_horizon);
      ++iteration_;
      last_metrics_ = record;
      // Where the iteration's time went, so that users see what to tune (in the log, not in the
      // stage's results, which a resumed run reproduces).
      record["time_generation_s"] = rollout.generation_s;
      record["time_scoring_s"] = rollout.scoring_s;
      record["time_training_s"] = training_s;
      record["iteration"] = iteration_;
      record["split"] = "train";
      record["tokens"] = state_.tokens;
      metrics.write(record);
      progress.update(iteration_, {{"reward", fixed(record["reward_mean"].get<double>(), 3)},
                                   {"score", fixed(record["score_mean"].get<double>(), 3)},
                                   {"kl", fixed(record["kl"].get<double>(), 3)},
                                   {"β", fixed(record["kl_coef"].get<double>(), 4)},
                                   {"len", fixed(record["response_length"].get<double>(), 1)},
                                   {"stop", fixed(record["stopped_fraction"].get<double>(), 2)},
                                   {"gen/score/train", fixed(rollout.generation_s, 1) + "/" +
                                                           fixed(rollout.scoring_s, 1) + "/" +
                                                           fixed(training_s, 1) + "s"}});

      const bool last = iteration_ == options_.iterations;
      // Rank 0 evaluates; the others wait for it in the next iteration's first all-reduce.
      if (eval_prompts_ && is_main_process() &&
          ((options_.eval_every > 0 && iteration_ % options_.eval_every == 0) || last)) {
        progress.finish();
        run_eval(metrics);
      }
      if ((options_.save_every > 0 && iteration_ % options_.save_every == 0) || last) checkpoint();
      if (stop && !last) {
        progress.finish();
        checkpoint();
        throw StageInterrupted("stopped at iteration " + std::to_string(iteration_) + "/" +
                               std::to_string(options_.iterations) + "; the checkpoint " + last_checkpoint_ +
                               " resumes it: run the same command again, without --force");
      }
    }
    progress.finish();
    if (eval_prompts_ && is_main_process() && last_eval_iteration_ != iteration_) run_eval(metrics);  // resumed at the end
  }

  // The next rollout_batch_size prompts of the seeded per-epoch order, at the data cursor.
  // (With several ranks each takes its own rollout_batch_size of the global order.)
  std::vector<int64_t> next_prompts() {
    std::vector<int64_t> rows;
    for (int64_t position : take_positions(state_, options_.rollout_batch_size)) rows.push_back(order_->at(position));
    return rows;
  }

  // This iteration's sampling seed; every rank draws its own replies.
  uint64_t sampling_seed() const {
    const uint64_t seed = static_cast<uint64_t>(ctx_->run.seed) ^ (static_cast<uint64_t>(dist::rank()) * 0xD1B54A32D192ED03ULL);
    return derive_seed(seed, static_cast<uint64_t>(iteration_));
  }

  // Advantages whitened over the whole rollout, on every rank: the masked mean and (unbiased)
  // variance come from sums over the ranks. One rank: masked_whiten itself.
  torch::Tensor whiten_over_ranks(const torch::Tensor& x, const torch::Tensor& mask) const {
    if (dist::world_size() == 1) return masked_whiten(x, mask);
    const auto m = mask.to(x.scalar_type());
    const auto masked = x.masked_fill(mask == 0, 0) * m;
    torch::Tensor sums = torch::stack({masked.sum(), m.sum()});
    dist::all_reduce_sum(sums);
    const auto n = sums[1].clamp_min(1);
    const auto mean = sums[0] / n;
    torch::Tensor square = ((x - mean).pow(2).masked_fill(mask == 0, 0) * m).sum().reshape({1});
    dist::all_reduce_sum(square);
    const auto var = square[0] / n * (sums[1] / (sums[1] - 1).clamp_min(1));
    const auto whitened = (x - mean) * torch::rsqrt(var + 1e-8);
    return torch::where(mask != 0, whitened.to(x.scalar_type()), x);
  }


  // Samples replies to `rows`, scores them and turns the scores into advantages.
  Rollout collect_rollout(const std::vector<int64_t>& rows) {
    torch::NoGradGuard no_grad;
    const auto device = ctx_->run.device;
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::vector<int64_t>> prompt_ids;
    std::vector<const PromptExample*> examples;
    for (int64_t row : rows) {
      prompt_ids.push_back(prompts_.ids[row]);
      examples.push_back(&prompts_.examples[row]);
    }
    Generation gen = generate(policy_, prompt_ids, sampling(options_.temperature),
                              compat::make_generator(sampling_seed(), device));

    Rollout r;
    r.tokens = gen.tokens;
    r.attention_mask = gen.attention_mask;
    r.response_mask = gen.response_mask.to(torch::kFloat);
    r.prompt_length = gen.prompt_length;
    r.response_length = gen.response.size(1);
    r.stopped = gen.stopped;
    const int64_t B = r.tokens.size(0), P = r.prompt_length, N = r.response_length;
    state_.tokens += gen.response_mask.sum().item<int64_t>();  // (waits for the device)
    r.generation_s = seconds_since(start);
    const auto scoring_start = std::chrono::steady_clock::now();

    // π_old, π_ref and V on the sampled sequences, in minibatch-sized chunks. The update passes
    // compute π the same way (not from the sampler's KV-cache log-probs), so the first ratio is 1.
    std::vector<torch::Tensor> logprobs, ref_logprobs, values, entropy;
    for (int64_t start = 0; start < B; start += options_.minibatch_size) {
      const int64_t b = std::min(options_.minibatch_size, B - start);
      auto tokens = r.tokens.narrow(0, start, b);
      auto mask = r.attention_mask.narrow(0, start, b);
      auto logits = response_logits(policy_, tokens, mask, P, N, options_.temperature);
      logprobs.push_back(response_logprobs(logits, tokens, P, N));
      entropy.push_back(entropy_from_logits(logits.narrow(1, 0, N)));
      auto ref_logits = response_logits(reference_, tokens, mask, P, N, options_.temperature);
      ref_logprobs.push_back(response_logprobs(ref_logits, tokens, P, N));
      values.push_back(response_values(value_, tokens, mask, P, N));
    }
    const torch::Tensor& m = r.response_mask;
    r.logprobs = torch::cat(logprobs) * m;
    r.ref_logprobs = torch::cat(ref_logprobs) * m;
    r.values = torch::cat(values) * m;
    r.entropy = torch::cat(entropy) * m;

    // Rewards: the KL penalty on every token, the score added at each reply's last token.
    const auto scores = score(examples, decode_replies(gen), stopped_flags(gen));
    r.scores = torch::tensor(scores, torch::kDouble).to(device, torch::kFloat);
    r.kl = (options_.kl_estimator == "k3" ? kl_k3(r.logprobs, r.ref_logprobs)
                                          : kl_k1(r.logprobs, r.ref_logprobs)) * m;
    auto last = (m.sum(1) - 1).clamp_min(0).to(torch::kLong).unsqueeze(1);  // [B, 1]
    r.rewards = (-beta_ * r.kl).scatter_add(1, last, r.scores.unsqueeze(1));
    Gae g = gae(r.rewards, r.values, m, options_.gamma, options_.lam);
    r.returns = g.returns;
    r.advantages = options_.whiten_advantages ? whiten_over_ranks(g.advantages, m) : g.advantages;
    r.scoring_s = seconds_since(scoring_start);  // the scores came back to the host
    return r;
  }

  // ppo_epochs passes over the rollout in shuffled minibatches; each minibatch steps the policy
  // (clipped surrogate) and the value model (clipped value loss).
  UpdateStats update(const Rollout& r) {
    const auto device = ctx_->run.device;
    const int64_t B = r.tokens.size(0), P = r.prompt_length, N = r.response_length;
    UpdateStats stats;
    for (int64_t epoch = 0; epoch < options_.ppo_epochs; ++epoch) {
      auto order = torch::randperm(
          B, compat::make_generator(derive_seed(ctx_->run.seed, iteration_, epoch + 1), torch::kCPU),
          torch::kLong).to(device);
      for (int64_t start = 0; start < B; start += options_.minibatch_size) {
        auto rows = order.narrow(0, start, std::min(options_.minibatch_size, B - start));
        auto tokens = r.tokens.index_select(0, rows);
        auto attention_mask = r.attention_mask.index_select(0, rows);
        auto mask = r.response_mask.index_select(0, rows);

        auto logits = response_logits(policy_, tokens, attention_mask, P, N, options_.temperature);
        PolicyLoss policy_loss = ppo_policy_loss(response_logprobs(logits, tokens, P, N),
                                                 r.logprobs.index_select(0, rows),
                                                 r.advantages.index_select(0, rows), mask,
                                                 options_.clip_eps);
        optimizer_step(*policy_optimizer_, *policy_, policy_loss.loss, policy_sync_.get());

        auto values = response_values(value_, tokens, attention_mask, P, N);
        ValueLoss value_loss = ppo_value_loss(values, r.values.index_select(0, rows),
                                              r.returns.index_select(0, rows), mask, options_.value_clip);
        optimizer_step(*value_optimizer_, *value_, value_loss.loss, value_sync_.get());

        stats.add(policy_loss, value_loss);
        ++updates_;
      }
    }
    return stats;
  }

  // One update of `model`, unless its loss or gradient norm is not finite (then skipped). With
  // several ranks, `sync` sums the gradients of loss / world_size over them.
  void optimizer_step(torch::optim::Optimizer& optimizer, torch::nn::Module& model, const torch::Tensor& loss,
                      dist::GradientSync* sync) {
    optimizer.zero_grad();
    if (sync) {
      sync->arm();
      (loss / static_cast<double>(dist::world_size())).backward();
      sync->finish();
    } else {
      loss.backward();
    }
    const double max_norm = options_.grad_clip > 0 ? options_.grad_clip : std::numeric_limits<double>::infinity();
    const auto norm = torch::nn::utils::clip_grad_norm_(model.parameters(), max_norm);
    // The norm is of the summed gradients, the same on every rank: they all skip, or none does.
    if (nonfinite_->admit(torch::Tensor(), torch::tensor(norm, torch::kFloat64), updates_, last_checkpoint_))
      optimizer.step();
    else
      optimizer.zero_grad();
  }

  // The iteration's numbers over every rank's replies. reward = score − β·Σ_t KL_t per reply: the
  // objective PPO maximises. *stop: some rank was asked to stop (all then stop together).
  json iteration_metrics(const Rollout& r, const UpdateStats& u, bool* stop) const {
    torch::NoGradGuard no_grad;
    const auto f64 = torch::kFloat64;
    const torch::Tensor m = r.response_mask.to(f64);
    const auto kl = r.kl.sum(1).to(f64);                     // [B] per reply
    const auto scores = r.scores.to(f64);
    const auto reward = scores - beta_ * kl;                 // [B]
    const auto per_reply = torch::stack({reward, scores, kl, m.sum(1), r.stopped.to(f64)});  // [5, B]
    auto token_sum = [&](const torch::Tensor& x) { return (x.to(f64).masked_fill(m == 0, 0) * m).sum(); };
    const auto updates = torch::tensor({u.mean(u.policy_loss), u.mean(u.value_loss), u.mean(u.clip_fraction),
                                        u.mean(u.value_clip_fraction), u.mean(u.approx_kl)}, f64).to(m.device());
    torch::Tensor sums = torch::cat({per_reply.sum(1), torch::full({1}, static_cast<double>(r.tokens.size(0)), m.options()),
                                     torch::stack({token_sum(r.entropy), token_sum(r.values), token_sum(r.returns), m.sum()}),
                                     updates, torch::full({1}, stop_requested() ? 1.0 : 0.0, m.options())});
    dist::note_progress(ctx_->name + " iteration " + std::to_string(iteration_ + 1));
    dist::all_reduce_sum(sums);
    const auto mean = sums.narrow(0, 0, 5) / sums[5];
    torch::Tensor spread = (per_reply.narrow(0, 0, 2) - mean.narrow(0, 0, 2).unsqueeze(1)).pow(2).sum(1);
    dist::all_reduce_sum(spread);
    const auto host = sums.cpu(), host_mean = mean.cpu(), host_std = (spread / sums[5]).sqrt().cpu();
    const double tokens = std::max(host[9].item<double>(), 1.0), ranks = dist::world_size();
    *stop = host[15].item<double>() > 0;
    return {{"reward_mean", host_mean[0].item<double>()},
            {"reward_std", host_std[0].item<double>()},
            {"score_mean", host_mean[1].item<double>()},
            {"score_std", host_std[1].item<double>()},
            {"kl", host_mean[2].item<double>()},
            {"kl_coef", beta_},
            {"entropy", host[6].item<double>() / tokens},
            {"response_length", host_mean[3].item<double>()},
            {"stopped_fraction", host_mean[4].item<double>()},
            {"value_mean", host[7].item<double>() / tokens},
            {"return_mean", host[8].item<double>() / tokens},
            {"policy_loss", host[10].item<double>() / ranks},
            {"value_loss", host[11].item<double>() / ranks},
            {"clip_fraction", host[12].item<double>() / ranks},
            {"value_clip_fraction", host[13].item<double>() / ranks},
            {"approx_kl", host[14].item<double>() / ranks}};
  }

  // ---- scoring ----

  SamplingOptions sampling(double temperature) const {
    return SamplingOptions()
        .max_new_tokens(options_.max_new_tokens)
        .temperature(temperature)
        .top_k(temperature > 0 ? options_.top_k : 0)
        .top_p(temperature > 0 ? options_.top_p : 1.0)
        .stop_ids(chat_template_->stop_ids(*tokenizer_))
        .pad_id(std::max<int64_t>(tokenizer_->pad_id(), 0));
  }

  // Each reply's text, without its stop token.
  std::vector<std::string> decode_replies(const Generation& gen) const {
    const auto tokens = gen.response.cpu().contiguous();
    const auto lengths = gen.response_mask.sum(1).cpu();
    const auto stopped = gen.stopped.cpu();
    std::vector<std::string> replies;
    for (int64_t i = 0; i < tokens.size(0); ++i) {
      const int64_t length = lengths[i].item<int64_t>() - (stopped[i].item<bool>() ? 1 : 0);
      const int64_t* row = tokens[i].data_ptr<int64_t>();
      replies.push_back(tokenizer_->decode(std::vector<int64_t>(row, row + std::max<int64_t>(length, 0))));
    }
    return replies;
  }

  static std::vector<bool> stopped_flags(const Generation& gen) {
    const auto stopped = gen.stopped.cpu();
    std::vector<bool> out;
    for (int64_t i = 0; i < stopped.size(0); ++i) out.push_back(stopped[i].item<bool>());
    return out;
  }

  // The score of each reply: reward_model_weight · RM(prompt + reply)
  // + reward_function_weight · Σ functions(prompt, reply, reference) + missing_eos_penalty if it
  // never stopped.
  std::vector<double> score(const std::vector<const PromptExample*>& examples,
                            const std::vector<std::string>& replies, const std::vector<bool>& stopped) {
    std::vector<double> scores(replies.size(), 0.0);
    if (reward_model_) {
      const auto rm = reward_model_scores(examples, replies);
      for (size_t i = 0; i < replies.size(); ++i) scores[i] += options_.reward_model_weight * rm[i];
    }
    for (size_t i = 0; i < replies.size(); ++i) {
      if (!reward_functions_.empty()) {
        const std::string prompt = last_user_message(examples[i]->prompt);
        double sum = 0.0;
        for (const auto& [name, fn] : reward_functions_)
          sum += fn(RewardInput{prompt, replies[i], examples[i]->reference});
        scores[i] += options_.reward_function_weight * sum;
      }
      if (!stopped[i]) scores[i] += options_.missing_eos_penalty;
    }
    return scores;
  }

  // The reward model's score of each conversation prompt + reply, rendered with the chat template
  // as the reward_model stage renders its pairs (a too-long prompt loses its start). A reply cut
  // off at max_new_tokens is rendered as if it had ended; missing_eos_penalty accounts for that.
  std::vector<double> reward_model_scores(const std::vector<const PromptExample*>& examples,
                                          const std::vector<std::string>& replies) {
    torch::NoGradGuard no_grad;
    const Tokenizer& tokenizer = *reward_tokenizer_;
    const int64_t block = reward_model_->options.block_size();
    const int64_t pad = std::max<int64_t>(tokenizer.pad_id(), 0);
    const size_t chunk = static_cast<size_t>(options_.minibatch_size);
    std::vector<double> out;
    for (size_t start = 0; start < replies.size(); start += chunk) {
      std::vector<std::vector<int64_t>> sequences;
      for (size_t i = start; i < std::min(replies.size(), start + chunk); ++i) {
        std::vector<Message> messages = examples[i]->prompt;
        messages.push_back({"assistant", replies[i]});
        auto ids = chat_template_->render(tokenizer, messages, /*add_generation_prompt=*/false).ids;
        if (static_cast<int64_t>(ids.size()) > block) ids.erase(ids.begin(), ids.end() - block);
        sequences.push_back(std::move(ids));
      }
      torch::Tensor mask;
      const auto ids = left_pad(sequences, pad, &mask);
      const auto device = ctx_->run.device;
      const auto scores = reward_model_->forward(ids.to(device), mask.to(device)).to(torch::kDouble).cpu();
      for (int64_t i = 0; i < scores.size(0); ++i) out.push_back(scores[i].item<double>());
    }
    return out;
  }

  // ---- evaluation and results ----

  void run_eval(MetricsLog& metrics) {
    last_eval_ = evaluate();
    last_eval_iteration_ = iteration_;
    json record = last_eval_;
    record["iteration"] = iteration_;
    record["split"] = "val";
    metrics.write(record);
    std::ostringstream line;
    line << "iteration " << iteration_;
    for (const auto& [k, v] : last_eval_.items()) line << " " << k << " " << fixed(v.get<double>(), 4);
    log_line(ctx_->name, line.str());
  }

  // Greedy replies to every eval prompt: mean score, exact-match accuracy over the prompts with a
  // reference, reply length and the share that stopped.
  json evaluate() {
    torch::NoGradGuard no_grad;
    const PromptSet& set = *eval_prompts_;
    const RewardFunction& exact_match = registries().rewards.get("exact_match");
    const int64_t n = static_cast<int64_t>(set.examples.size());
    double score_sum = 0, correct = 0, length_sum = 0, stopped_sum = 0;
    int64_t with_reference = 0;
    for (int64_t start = 0; start < n; start += options_.rollout_batch_size) {
      std::vector<std::vector<int64_t>> ids;
      std::vector<const PromptExample*> examples;
      for (int64_t i = start; i < std::min(n, start + options_.rollout_batch_size); ++i) {
        ids.push_back(set.ids[i]);
        examples.push_back(&set.examples[i]);
      }
      Generation gen = generate(policy_, ids, sampling(/*temperature=*/0.0));
      const auto replies = decode_replies(gen);
      const auto stopped = stopped_flags(gen);
      for (double s : score(examples, replies, stopped)) score_sum += s;
      length_sum += gen.response_mask.sum().item<double>();
      for (size_t i = 0; i < replies.size(); ++i) {
        stopped_sum += stopped[i] ? 1 : 0;
        if (examples[i]->reference.empty()) continue;
        ++with_reference;
        correct += exact_match(RewardInput{last_user_message(examples[i]->prompt), replies[i],
                                           examples[i]->reference});
      }
    }
    json out = {{"eval_score", score_sum / n},
                {"eval_response_length", length_sum / n},
                {"eval_stopped_fraction", stopped_sum / n}};
    if (with_reference > 0) out["eval_accuracy"] = correct / with_reference;
    return out;
  }

  // The last iteration's numbers and the last evaluation: what summary.json shows.
  json final_metrics() const {
    json out = json::object();
    for (const char* key : {"reward_mean", "reward_std", "score_mean", "kl", "kl_coef", "entropy",
                            "response_length", "stopped_fraction", "policy_loss", "value_loss",
                            "clip_fraction"})
      if (last_metrics_.contains(key)) out[key] = last_metrics_[key];
    for (const auto& [k, v] : last_eval_.items()) out[k] = v;
    out["iterations"] = iteration_;
    out["tokens"] = state_.tokens;
    out["skipped_updates"] = nonfinite_->skipped();
    return out;
  }

  const StageContext* ctx_ = nullptr;
  PpoOptions options_;
  std::optional<Tokenizer> tokenizer_, reward_tokenizer_;
  std::shared_ptr<const ChatTemplate> chat_template_;
  std::vector<std::pair<std::string, RewardFunction>> reward_functions_;
  Transformer policy_{nullptr}, reference_{nullptr};
  RewardModel reward_model_{nullptr};
  ValueModel value_{nullptr};
  std::unique_ptr<torch::optim::AdamW> policy_optimizer_, value_optimizer_;
  PromptSet prompts_;
  std::optional<ShuffledOrder> order_;
  std::optional<PromptSet> eval_prompts_;
  TrainingState state_;
  int64_t iteration_ = 0;
  double beta_ = 0.0;
  json last_metrics_ = json::object(), last_eval_ = json::object();
  int64_t last_eval_iteration_ = -1;
  int64_t updates_ = 0;  // minibatch updates done (each steps both models)
  std::unique_ptr<dist::GradientSync> policy_sync_, value_sync_;  // with several ranks
  std::optional<NonFiniteGuard> nonfinite_;
  std::string last_checkpoint_ = "none yet";
};

}  // namespace

PipelineEntry ppo_pipeline_entry() {
  return {"RLHF with PPO: improve a policy against a reward model and/or reward functions, with a "
          "KL penalty to its frozen starting point",
          ppo_schema, [] { return std::make_unique<PpoPipeline>(); }, /*data_parallel=*/true};
}

}  // namespace nurture
