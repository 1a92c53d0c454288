// The `grpo` stage: critic-free reinforcement learning, usually against rewards that check the
// answer (RLVR): GRPO (Shao et al. 2024, DeepSeekMath) and its variants, as TRL's GRPOTrainer
// defines them — RLOO's and REINFORCE++'s baselines, DAPO's clip-higher, token-level loss, dynamic
// sampling and soft overlong penalty, Dr. GRPO's unscaled advantages and constant divisor.
//
// The policy starts from `init_from` (an sft stage, usually). Every iteration:
//   1. sample    prompts_per_iteration prompts on each rank and group_size replies to each, every
//                reply drawn from a generator seeded by its prompt's place in the global prompt
//                order (so that 2 ranks sample what 1 rank sampling both shares would);
//   2. score     the weighted sum of the reward functions (math_answer, format, length, ...) and
//                the reward model, plus DAPO's soft overlong penalty; with dynamic_sampling, groups
//                whose replies all scored the same teach nothing and are replaced by new prompts'
//                groups, for up to max_sampling_rounds rounds;
//   3. advantage each reply's score against the others of its group (`advantage`: grpo, rloo,
//                reinforce_baseline — pipelines/rl/advantages.h);
//   4. update    num_iterations passes over the rollout, minibatch_size replies per step: the
//                clipped ratio to the log-probs the tokens had when they were sampled (π_old),
//                plus β·k3 KL to the frozen reference when beta > 0 (with beta 0, as TRL's default,
//                no reference is loaded at all) — modules/objectives/losses.h group_policy_loss.
// Before the update, one forward pass without gradients measures the entropy and how far the
// training forward's log-probs are from the sampler's: logprob_gap_max, which is tiny here since
// one process samples and trains with one model (a vLLM sampler beside a training engine is not).
// Dropout is off throughout, as in ppo.
//
// Letters: B rollout rows (prompts × G), G group size, P prompt positions, N response positions.
// The toolkit in pipelines/rl/ does the work; this file is GRPO's recipe over it.
#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "modules/objectives/losses.h"
#include "pipelines/rl/advantages.h"
#include "pipelines/rl/cross_rank_sums.h"
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

void add_reward_fields(Schema& s) {
  s.add_stage_ref("reward_model", "a trained reward model (a reward_model stage or a model directory of kind "
                                  "reward) whose score of each rendered conversation joins the rewards")
      .or_path()
      .producing(Kind::reward);
  s.add_float("reward_model_weight", 1.0, "weight of the reward model's score");
  rl::add_reward_functions_field(s, "rewards that check each reply: names or {name, weight, parameters}, e.g. "
                                    "[math_answer, {name: format, pattern: \"...\", weight: 0.2}]; plugins "
                                    "register more. At least one of reward_model and reward_functions is needed");
  s.add_int("overlong_buffer", 0, "DAPO's soft overlong penalty: a reply longer than max_new_tokens − this "
                                  "many tokens loses up to overlong_penalty, linearly (0 = off)")
      .at_least(0);
  s.add_float("overlong_penalty", 1.0, "the most the overlong penalty takes (at max_new_tokens)").at_least(0);
}

void add_sampling_fields(Schema& s) {
  s.add_int("iterations", 100, "sample + update rounds").at_least(1);
  s.add_int("prompts_per_iteration", 8, "prompts sampled per iteration on each rank (a seeded order, "
                                        "reshuffled every pass over the prompts)")
      .at_least(1);
  s.add_int("group_size", 8, "G: replies sampled to each prompt, compared with each other").at_least(2);
  s.add_int("max_new_tokens", 64, "longest reply; prompts that leave less room in the model's block_size "
                                  "are left out")
      .at_least(1);
  s.add_float("temperature", 1.0, "sampling temperature; log-probs are those of logits / temperature")
      .greater_than(0);
  s.add_int("top_k", 0, "sample from the k most likely tokens only (0 = off)").at_least(0);
  s.add_float("top_p", 1.0, "nucleus sampling threshold (1 = off)").greater_than(0).at_most(1);
  s.add_bool("dynamic_sampling", false, "DAPO: drop groups whose rewards are all equal (their advantages "
                                        "are 0) and sample more prompts in their place");
  s.add_int("max_sampling_rounds", 3, "with dynamic_sampling: rounds of prompts_per_iteration prompts at "
                                      "most; groups still missing are filled with dropped ones")
      .at_least(1);
}

void add_update_fields(Schema& s) {
  s.add_string("advantage", "grpo", "grpo (r − group mean, divided per scale_rewards), rloo (r − mean of "
                                    "the group's others) or reinforce_baseline (r − group mean, whitened "
                                    "over the batch); plugins register more")
      .checked([](const ConfigNode& n) {
        const auto& registry = rl::advantage_estimator_registry();
        if (n.text() == "gae") return std::string("gae needs a critic, which grpo has not: use ppo");
        return registry.contains(n.text()) ? std::string() : registry.unknown(n.text());
      });
  s.add_enum("scale_rewards", "group", {"group", "batch", "none"},
             "grpo: divide by each group's reward std, the whole batch's, or none (Dr. GRPO)");
  s.add_enum("loss_type", "dapo", {"grpo", "bnpo", "dapo", "dr_grpo"},
             "how token losses become one: grpo (per reply, then over replies), bnpo (this rank's tokens), "
             "dapo (every rank's tokens), dr_grpo (replies × max_new_tokens)");
  s.add_float("epsilon_low", 0.2, "the ratio is clipped below at 1 − epsilon_low").greater_than(0).at_most(0.99);
  s.add_float("epsilon_high", 0.2, "and above at 1 + epsilon_high (DAPO's clip-higher: 0.28)").greater_than(0);
  s.add_float("beta", 0.0, "weight of the k3 KL to the frozen reference in the loss (0: no reference loaded)")
      .at_least(0);
  s.add_int("num_iterations", 1, "μ: optimisation passes over each rollout; π_old stays the sampling-time "
                                 "log-probs")
      .at_least(1);
  s.add_int("minibatch_size", 0, "replies per optimizer step on each rank (0 = the whole rollout)").at_least(0);
  s.add_bool("mask_truncated_completions", false, "replies cut off at max_new_tokens take no part in the "
                                                  "loss (they still count in their group's statistics)");
  s.add_float("lr", 1e-6, "learning rate (AdamW, constant); tiny models need more (1e-4..1e-3)").greater_than(0);
  s.add_float("weight_decay", 0.0, "AdamW decay on matrices and embeddings").at_least(0);
  s.add_float("grad_clip", 1.0, "clip the global gradient norm to this (0 = off)").at_least(0);
  s.add_int("max_nonfinite_steps", 5, "an update with a non-finite loss or gradient norm is skipped; this "
                                      "many in a row stop the stage")
      .at_least(1);
}

std::shared_ptr<const Schema> grpo_schema() {
  auto s = std::make_shared<Schema>();
  add_init_from_field(*s, "init_from", "the policy to improve: an sft stage (usually) or a model directory; "
                                       "with beta > 0 a frozen copy of it is the reference");
  add_reward_fields(*s);
  rl::add_prompt_fields(*s, "feeds math_answer and exact_match");
  add_sampling_fields(*s);
  add_update_fields(*s);
  s->add_int("eval_every", 10, "evaluate on eval_prompts every N iterations (0 = only at the end)").at_least(0);
  s->add_bool("eval_on_start", true, "also evaluate before the first iteration: the starting point");
  s->add_int("save_every", 10, "checkpoint every N iterations (0 = only at the end)").at_least(0);
  s->add_int("keep_checkpoints", 2, "keep the newest N checkpoints").at_least(1);
  s->add_check([](const Settings& t, ValidationContext& ctx) {
    const int64_t rows = t.get_int("prompts_per_iteration") * t.get_int("group_size");
    if (t.get_int("minibatch_size") > rows)
      ctx.errors.push_back(t.where("minibatch_size") + ": " + std::to_string(t.get_int("minibatch_size")) +
                           " exceeds the " + std::to_string(rows) + " replies of a rank's rollout "
                           "(prompts_per_iteration × group_size)");
    if (t.get_int("overlong_buffer") >= t.get_int("max_new_tokens"))
      ctx.errors.push_back(t.where("overlong_buffer") + ": " + std::to_string(t.get_int("overlong_buffer")) +
                           " must be less than max_new_tokens " + std::to_string(t.get_int("max_new_tokens")));
  });
  return s;
}

struct GrpoOptions {
  rl::OnPolicyOptions loop;
  int64_t prompts = 8, group_size = 8;
  rl::ReplySampling sampling;
  bool dynamic_sampling = false;
  int64_t max_sampling_rounds = 3, overlong_buffer = 0;
  double overlong_penalty = 1.0, reward_model_weight = 1.0;
  std::string advantage = "grpo";
  rl::RewardScaling scale = rl::RewardScaling::group;
  GroupPolicyLossOptions loss;
  int64_t num_iterations = 1, minibatch_size = 0;
  bool mask_truncated = false;
  TrainingOptions adamw;

  static GrpoOptions from(const Settings& s) {
    GrpoOptions o;
    o.loop = {s.get_int("iterations"), s.get_int("eval_every"), s.get_int("save_every"),
              s.get_int("keep_checkpoints"), s.get_int("max_nonfinite_steps"), s.get_bool("eval_on_start")};
    o.prompts = s.get_int("prompts_per_iteration");
    o.group_size = s.get_int("group_size");
    o.sampling = {s.get_int("max_new_tokens"), s.get_float("temperature"), s.get_int("top_k"), s.get_float("top_p")};
    o.dynamic_sampling = s.get_bool("dynamic_sampling");
    o.max_sampling_rounds = o.dynamic_sampling ? s.get_int("max_sampling_rounds") : 1;
    o.overlong_buffer = s.get_int("overlong_buffer");
    o.overlong_penalty = s.get_float("overlong_penalty");
    o.reward_model_weight = s.get_float("reward_model_weight");
    o.advantage = s.get_string("advantage");
    o.scale = rl::parse_reward_scaling(s.get_string("scale_rewards"));
    o.loss.epsilon_low = s.get_float("epsilon_low");
    o.loss.epsilon_high = s.get_float("epsilon_high");
    o.loss.beta = s.get_float("beta");
    o.loss.type = parse_policy_loss_type(s.get_string("loss_type"));
    o.loss.max_new_tokens = o.sampling.max_new_tokens;
    o.num_iterations = s.get_int("num_iterations");
    o.minibatch_size = s.get_int("minibatch_size");
    o.mask_truncated = s.get_bool("mask_truncated_completions");
    o.adamw.lr = s.get_float("lr");
    o.adamw.weight_decay = s.get_float("weight_decay");
    o.adamw.grad_clip = s.get_float("grad_clip");
    return o;
  }
};

// Rows per forward pass without gradients (the reward model's, the reference's, the entropy's).
constexpr int64_t kForwardRows = 16;

// DAPO's soft overlong punishment of a reply of `tokens` tokens: 0 up to max − buffer, then
// falling linearly to −penalty at max.
double overlong_penalty(int64_t tokens, int64_t max_new_tokens, int64_t buffer, double penalty) {
  const int64_t free = max_new_tokens - buffer;
  if (buffer <= 0 || tokens <= free) return 0.0;
  return -penalty * static_cast<double>(std::min(tokens, max_new_tokens) - free) / static_cast<double>(buffer);
}

// The replies one rank trains on in an iteration, with their scores.
struct GroupRollout {
  rl::Rollout rollout;
  std::vector<double> scores;                                                  // one per row
  std::vector<std::pair<std::string, std::vector<double>>> function_scores;  // unweighted
  int64_t groups_sampled = 0, zero_std_groups = 0, rounds = 0;
};

// ---- the stage --------------------------------------------------------------------------------------

class GrpoStage : public Stage {
 public:
  json run(const StageContext& ctx) override {
    ctx_ = &ctx;
    options_ = GrpoOptions::from(ctx.settings);
    loop_.emplace(ctx, options_.loop);
    setup_rewards();
    setup_models();
    setup_optimizer();
    setup_data();
    const rl::OnPolicyStep step = on_policy_step();
    loop_->resume_if_possible(step);
    loop_->run(step);
    save_model_dir(ctx.dir / "model", *policy_, policy_->options, "lm", *tokenizer_);
    log_line(ctx.name, "policy -> " + (ctx.dir / "model").string());
    std::vector<std::string> keys = {"reward_mean", "reward_std", "zero_std_fraction", "entropy",
                                     "response_length", "stopped_fraction", "logprob_gap_max", "policy_loss",
                                     "clip_low_fraction", "clip_high_fraction", "kl"};
    for (const auto& name : function_names_) keys.push_back("reward_" + name);
    return loop_->final_metrics(keys);
  }

 private:
  // ---- setup ----

  // Which scores make the reward, and how they become advantages; checked before any model loads.
  void setup_rewards() {
    const Settings& s = ctx_->settings;
    const ConfigNode* list = s.node().find("reward_functions");
    auto functions = std::make_unique<rl::RewardFunctions>(list ? *list : ConfigNode(), s.path() + ".reward_functions");
    if (!s.has("reward_model") && functions->empty())
      throw std::runtime_error(s.node().where().str() + ": " + s.path() +
                               ": GRPO needs a reward: set reward_functions (e.g. [math_answer]) and/or "
                               "reward_model (a reward_model stage or model directory)");
    function_names_ = functions->function_names();
    if (!functions->empty()) {
      log_line(ctx_->name, "reward functions " + functions->names());
      functions_ = functions.get();
      score_.add(1.0, std::move(functions));
    }
    advantage_ = rl::advantage_estimator_registry().get(options_.advantage);
  }

  // The policy from init_from; its frozen reference only when beta > 0; the reward model if named.
  void setup_models() {
    const StageContext& ctx = *ctx_;
    tokenizer_ = stage_tokenizer(ctx);
    chat_template_ = stage_chat_template(ctx, *tokenizer_);
    policy_ = build_language_model(ctx, *tokenizer_);
    policy_->eval();  // no dropout: the training forward sees what the sampler saw
    if (options_.loss.beta > 0) {
      reference_ = frozen_copy(policy_);
      log_line(ctx.name, "reference: frozen copy of the policy (beta " + fixed(options_.loss.beta, 4) + ")");
    }
    if (!ctx.settings.has("reward_model")) return;
    const fs::path dir = model_dir_of(ctx, "reward_model");
    auto scorer = rl::load_reward_scorer(dir, ctx.settings.get_string("chat_template"),
                                         ctx.settings.where("chat_template"), kForwardRows, ctx.run.device,
                                         ctx.run.param_dtype());
    log_line(ctx.name, "reward model " + dir.string() + ": " + parameter_summary(scorer->model()->options) +
                           " (weight " + fixed(options_.reward_model_weight, 2) + ")");
    score_.add(options_.reward_model_weight, std::move(scorer));
  }

  // With several ranks the policy starts from rank 0's weights; gradients are summed over them.
  void setup_optimizer() {
    trainer_ = std::make_unique<rl::TrainedModel>(*policy_, options_.adamw);
    trainer_->broadcast();
    trainer_->sync_gradients(ctx_->run.bucket_mb << 20);
  }

  void setup_data() {
    const StageContext& ctx = *ctx_;
    const Settings& s = ctx.settings;
    rl::StagePrompts sets = rl::load_stage_prompts(s, ctx.name, *tokenizer_, *chat_template_,
                                                   policy_->options.block_size(), options_.sampling.max_new_tokens);
    prompts_ = std::move(sets.train);
    eval_prompts_ = std::move(sets.eval);
    order_.emplace(static_cast<uint64_t>(ctx.run.seed), static_cast<int64_t>(prompts_.examples.size()));
    log_line(ctx.name, std::to_string(options_.loop.iterations) + " iterations of " + std::to_string(options_.prompts) +
                           " prompts x " + std::to_string(options_.group_size) + " replies; advantage " +
                           options_.advantage + ", loss " + s.get_string("loss_type") + ", clip [1 - " +
                           fixed(options_.loss.epsilon_low, 2) + ", 1 + " + fixed(options_.loss.epsilon_high, 2) +
                           "], " + std::to_string(options_.num_iterations) + " pass(es), lr " +
                           scientific(options_.adamw.lr, 1));
  }

  rl::OnPolicyStep on_policy_step() {
    rl::OnPolicyStep step;
    step.iterate = [this](int64_t iteration) { return iterate(iteration); };
    if (eval_prompts_) step.evaluate = [this] { return evaluate(); };
    step.modules = [this]() -> NamedModules { return {{"policy", policy_.get()}}; };
    step.optimizers = [this]() -> NamedOptimizers { return {{"policy_optimizer", &trainer_->optimizer()}}; };
    step.save_state = [this](json& extra) { extra["updates"] = updates_; };
    step.load_state = [this](const json& extra) {
      updates_ = extra.value("updates", int64_t{0});
      return std::string();
    };
    return step;
  }

  // ---- one iteration ----

  rl::IterationResult iterate(int64_t iteration) {
    GroupRollout g = sample_groups();
    rl::Rollout& r = g.rollout;
    const auto scoring_start = std::chrono::steady_clock::now();
    rl::GroupIteration report = prepare_update(g);
    const double scoring_s = rl::seconds_since(scoring_start);
    const auto training_start = std::chrono::steady_clock::now();
    update(r, iteration, report);
    rl::IterationMetrics metrics =
        rl::group_iteration_metrics(r, report, ctx_->name + " iteration " + std::to_string(iteration + 1));
    const double training_s = rl::seconds_since(training_start);
    rl::IterationResult out;
    out.metrics = std::move(metrics.metrics);
    out.stop = metrics.stop;
    out.timings = {{"time_generation_s", r.generation_s},
                   {"time_scoring_s", r.scoring_s + scoring_s},
                   {"time_training_s", training_s}};
    const json& m = out.metrics;
    out.progress = {{"reward", fixed(m["reward_mean"].get<double>(), 3)},
                    {"std0", fixed(m["zero_std_fraction"].get<double>(), 2)},
                    {"len", fixed(m["response_length"].get<double>(), 1)},
                    {"gap", scientific(m["logprob_gap_max"].get<double>(), 1)},
                    {"gen/score/train", fixed(r.generation_s, 1) + "/" + fixed(r.scoring_s + scoring_s, 1) + "/" +
                                            fixed(training_s, 1) + "s"}};
    return out;
  }

  // This rank's groups of the iteration: one round of prompts_per_iteration prompts, or with
  // dynamic_sampling more rounds until every rank has that many groups whose scores differ (every
  // rank draws each round's prompts, so that the data cursor stays the same on all of them).
  GroupRollout sample_groups() {
    const int64_t G = options_.group_size;
    std::vector<rl::Rollout> parts;
    std::vector<std::vector<double>> part_scores;
    std::vector<std::vector<std::vector<double>>> part_functions;  // [part][function][row]
    std::vector<std::vector<int64_t>> keep, dropped;               // [part] rows
    int64_t kept_groups = 0;
    GroupRollout out;
    for (out.rounds = 1;; ++out.rounds) {
      std::vector<int64_t> positions;
      const std::vector<int64_t> rows = order_->next(loop_->state(), options_.prompts, &positions);
      if (kept_groups < options_.prompts) {
        parts.push_back(sample_part(rows, positions));
        part_scores.push_back(score_part(parts.back(), &part_functions.emplace_back()));
        keep.emplace_back();
        dropped.emplace_back();
        for (int64_t first = 0; first < static_cast<int64_t>(rows.size()) * G; first += G) {
          const auto& sc = part_scores.back();
          const auto [lo, hi] = std::minmax_element(sc.begin() + first, sc.begin() + first + G);
          const bool informative = *lo != *hi;
          ++out.groups_sampled;
          out.zero_std_groups += informative ? 0 : 1;
          auto& into = (!options_.dynamic_sampling || informative) && kept_groups < options_.prompts ? keep : dropped;
          if (&into == &keep) ++kept_groups;
          for (int64_t k = 0; k < G; ++k) into.back().push_back(first + k);
        }
      }
      if (!options_.dynamic_sampling || out.rounds >= options_.max_sampling_rounds || !any_rank_short(kept_groups))
        break;
    }
    fill_with_dropped(keep, dropped, kept_groups);
    assemble(out, parts, keep, part_scores, part_functions);
    return out;
  }

  // Whether some rank still has fewer than prompts_per_iteration informative groups.
  bool any_rank_short(int64_t kept_groups) const {
    rl::CrossRankSums sums(ctx_->run.device);
    sums.add("short", kept_groups < options_.prompts ? 1.0 : 0.0);
    sums.reduce();
    return sums["short"] > 0;
  }

  // After the last round, groups still missing are taken from the dropped ones, in order, so that
  // every rank trains on the same number of replies (their advantages are 0).
  void fill_with_dropped(std::vector<std::vector<int64_t>>& keep, const std::vector<std::vector<int64_t>>& dropped,
                         int64_t kept_groups) const {
    const size_t G = static_cast<size_t>(options_.group_size);
    for (size_t p = 0; p < dropped.size() && kept_groups < options_.prompts; ++p)
      for (size_t first = 0; first < dropped[p].size() && kept_groups < options_.prompts; first += G, ++kept_groups)
        keep[p].insert(keep[p].end(), dropped[p].begin() + static_cast<int64_t>(first),
                       dropped[p].begin() + static_cast<int64_t>(first + G));
  }

  // group_size replies to each of `rows`; reply k to the prompt at global position p is drawn from
  // a generator seeded by (seed, p, k).
  rl::Rollout sample_part(const std::vector<int64_t>& rows, const std::vector<int64_t>& positions) {
    std::vector<uint64_t> seeds;
    for (int64_t position : positions)
      for (int64_t k = 0; k < options_.group_size; ++k)
        seeds.push_back(rl::derive_seed(ctx_->run.seed, static_cast<uint64_t>(position), static_cast<uint64_t>(k)));
    rl::Rollout r = rl::sample_rollout(policy_, rl::prompt_batch(prompts_, rows, options_.group_size),
                                       options_.sampling.options(*tokenizer_, *chat_template_), *tokenizer_, seeds,
                                       ctx_->run.device);
    loop_->state().tokens += r.new_tokens;
    return r;
  }

  // Every reply's score: the reward sources' weighted sum plus the overlong penalty; `functions`
  // gets each reward function's unweighted scores.
  std::vector<double> score_part(rl::Rollout& r, std::vector<std::vector<double>>* functions) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<double> scores = score_.score(r.examples, r.replies);
    for (size_t i = 0; i < scores.size(); ++i)
      scores[i] += overlong_penalty(r.replies[i].tokens, options_.sampling.max_new_tokens, options_.overlong_buffer,
                                    options_.overlong_penalty);
    if (functions_)
      for (const auto& f : functions_->last_scores()) functions->push_back(f.second);
    r.scoring_s = rl::seconds_since(start);
    return scores;
  }

  // The kept rows of every part as one rollout, with their scores in the same order.
  void assemble(GroupRollout& out, std::vector<rl::Rollout>& parts, const std::vector<std::vector<int64_t>>& keep,
                const std::vector<std::vector<double>>& part_scores,
                const std::vector<std::vector<std::vector<double>>>& part_functions) const {
    double generation_s = 0, scoring_s = 0;
    std::vector<const rl::Rollout*> views;
    for (const auto& part : parts) {
      generation_s += part.generation_s;
      scoring_s += part.scoring_s;
      views.push_back(&part);
    }
    const bool whole = parts.size() == 1 && keep[0].size() == part_scores[0].size();
    out.rollout = whole ? std::move(parts[0]) : rl::concat_rollout_rows(views, keep);
    out.rollout.generation_s = generation_s;
    out.rollout.scoring_s = scoring_s;
    for (size_t f = 0; f < function_names_.size(); ++f) out.function_scores.emplace_back(function_names_[f], std::vector<double>());
    for (size_t p = 0; p < parts.size(); ++p)
      for (int64_t row : keep[p]) {
        out.scores.push_back(part_scores[p][static_cast<size_t>(row)]);
        for (size_t f = 0; f < function_names_.size(); ++f)
          out.function_scores[f].second.push_back(part_functions[p][f][static_cast<size_t>(row)]);
      }
  }

  // Advantages, the reference's log-probs (beta > 0), and one forward pass without gradients for
  // the entropy and the sampling/training log-prob gap.
  rl::GroupIteration prepare_update(GroupRollout& g) {
    rl::Rollout& r = g.rollout;
    torch::NoGradGuard no_grad;
    const auto device = ctx_->run.device;
    const int64_t chunk = options_.minibatch_size > 0 ? options_.minibatch_size : kForwardRows;
    const double temperature = options_.sampling.temperature;
    r.scores = torch::tensor(g.scores, torch::kDouble).to(device);
    loss_mask_ = options_.mask_truncated ? r.response_mask * r.stopped.to(r.response_mask.scalar_type()).unsqueeze(1)
                                         : r.response_mask;
    rl::AdvantageInput in;
    in.mask = loss_mask_;
    in.scores = r.scores;
    in.group_size = options_.group_size;
    in.scale = options_.scale;
    r.advantages = advantage_(in).advantages;
    if (reference_) r.ref_logprobs = rl::rollout_logprobs(reference_, r, chunk, temperature);
    const auto trained = rl::rollout_logprobs(policy_, r, chunk, temperature, &r.entropy);
    rl::GroupIteration report;
    report.scores = r.scores;
    report.function_scores = std::move(g.function_scores);
    report.groups_sampled = g.groups_sampled;
    report.zero_std_groups = g.zero_std_groups;
    report.sampling_rounds = g.rounds;
    const auto gap = ((trained - r.sample_logprobs.to(trained.scalar_type())).abs() * r.response_mask).max();
    report.logprob_gap = r.response_mask.numel() > 0 ? gap.item<double>() : 0.0;
    return report;
  }

  // num_iterations passes over the rollout in shuffled minibatches, each an optimizer step of the
  // clipped objective against the sampling-time log-probs.
  void update(const rl::Rollout& r, int64_t iteration, rl::GroupIteration& report) {
    const int64_t rows = r.tokens.size(0);
    const int64_t minibatch = options_.minibatch_size > 0 ? options_.minibatch_size : rows;
    rl::for_each_minibatch(rows, minibatch, options_.num_iterations, ctx_->run.seed, iteration, ctx_->run.device,
                           [&](const torch::Tensor& idx) {
                             GroupPolicyLoss loss = minibatch_loss(r, idx);
                             trainer_->step(loss.loss, loop_->nonfinite(), updates_, loop_->last_checkpoint());
                             report.add(loss);
                             ++updates_;
                           });
  }

  // The loss of rows `idx` of the rollout, with gradients; dapo divides by the minibatch's tokens
  // of every rank.
  GroupPolicyLoss minibatch_loss(const rl::Rollout& r, const torch::Tensor& idx) {
    const rl::RolloutRows mb = rl::select_rows(r, idx);
    const auto logits = rl::response_logits(policy_, mb.tokens, mb.attention_mask, r.prompt_length,
                                            r.response_length, options_.sampling.temperature);
    const auto logprobs = rl::response_logprobs(logits, mb.tokens, r.prompt_length, r.response_length);
    const auto mask = loss_mask_.index_select(0, idx);
    GroupPolicyLossOptions o = options_.loss;
    if (o.type == PolicyLossType::dapo) {
      rl::CrossRankSums tokens(ctx_->run.device);
      tokens.add("tokens", mask.sum());
      tokens.reduce();
      o.tokens_per_rank = std::max(tokens["tokens"], 1.0) / dist::world_size();
    }
    const auto ref = r.ref_logprobs.defined() ? r.ref_logprobs.index_select(0, idx) : torch::Tensor();
    return group_policy_loss(logprobs, r.sample_logprobs.index_select(0, idx), r.advantages.index_select(0, idx),
                             mask, ref, o);
  }

  // ---- evaluation ----

  json evaluate() {
    return rl::evaluate_on_prompts(policy_, *eval_prompts_,
                                   options_.sampling.greedy().options(*tokenizer_, *chat_template_), *tokenizer_,
                                   score_, options_.prompts * options_.group_size, functions_, ctx_->name);
  }

  const StageContext* ctx_ = nullptr;
  GrpoOptions options_;
  std::optional<rl::OnPolicyLoop> loop_;
  std::optional<Tokenizer> tokenizer_;
  std::shared_ptr<const ChatTemplate> chat_template_;
  rl::WeightedRewards score_;
  rl::RewardFunctions* functions_ = nullptr;  // inside score_: each function's scores for the logs
  std::vector<std::string> function_names_;
  rl::AdvantageEstimator advantage_;
  Transformer policy_{nullptr}, reference_{nullptr};
  std::unique_ptr<rl::TrainedModel> trainer_;
  rl::PromptSet prompts_;
  std::optional<rl::PromptOrder> order_;
  std::optional<rl::PromptSet> eval_prompts_;
  torch::Tensor loss_mask_;  // [B, N] the iteration's response tokens that take part in the loss
  int64_t updates_ = 0;      // optimizer steps done
};

}  // namespace

StageEntry grpo_stage_entry() {
  return {"critic-free RL (GRPO, RLOO, REINFORCE++; DAPO, Dr. GRPO): improve a policy against rewards that "
          "check its answers, each reply compared with the others to its prompt",
          grpo_schema, [] { return std::make_unique<GrpoStage>(); }, /*data_parallel=*/true,
          /*produces=*/{Kind::lm}};
}

}  // namespace nurture
