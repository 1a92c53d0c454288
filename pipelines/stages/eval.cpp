// The `eval` stage: how the models of a run compare. For each model (e.g. base, sft, ppo):
// exact-match accuracy and the reward model's mean score on held-out prompts (greedy answers),
// KL to a reference model on sampled answers, perplexity on held-out text, and in-context
// learning — zero-shot against k-shot accuracy on "input -> target" tasks. Prints a comparison
// table, a few answers side by side, and hands the table to summary.json as `comparison`.
#include <cmath>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "modules/core/compat.h"
#include "modules/generation/sampling.h"
#include "modules/model/model_dir.h"
#include "modules/objectives/losses.h"
#include "pipelines/data/data.h"
#include "pipelines/rl/reward_functions.h"
#include "pipelines/rl/rewards.h"
#include "pipelines/runtime/log.h"
#include "pipelines/stages/stages.h"
#include "pipelines/train/model_setup.h"

namespace nurture {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::shared_ptr<const Schema> eval_schema() {
  auto s = std::make_shared<Schema>();
  s->add_stage_ref("models", "the models to compare, by stage (or model directory)")
      .or_path().as_list().producing(Kind::lm).must_be_required();
  s->add_string("prompts", "", "held-out JSONL prompts {prompt, reference} for answers, exact match "
                               "and reward");
  s->add_stage_ref("reward_model", "score answers with this reward model (optional)")
      .or_path().producing(Kind::reward);
  s->add_stage_ref("reference", "measure each model's KL to this one on sampled answers (optional)")
      .or_path().producing(Kind::lm);
  s->add_string_list("text", "held-out text files (one document per line) for perplexity");
  s->add_string("icl_tasks", "", "JSONL {input, target, task} for in-context learning (optional)");
  s->add_stage_ref("icl_models", "models to test in context (default: the first of `models`)")
      .or_path().as_list().producing(Kind::lm);
  s->add_int("shots", 3, "examples shown before each in-context question").at_least(1);
  s->add_int("max_new_tokens", 16, "answer length limit").at_least(1);
  s->add_int("batch_size", 32, "prompts per generation batch").at_least(1);
  s->add_int("samples", 4, "answers printed side by side").at_least(0);
  s->add_string("chat_template", "auto", "how prompts become tokens: auto (the model's own template, recognised), chatml, qwen3, llama3, llama3.1, transcript (base models) or a plugin's");
  s->add_bool("skip_bad_lines", false, "skip (and count) malformed lines instead of stopping");
  return s;
}

// A model and the name it has in the table: the stage name, or the directory's name.
struct NamedModel {
  std::string name;
  fs::path dir;
};

const std::string kStderrSuffix = "_stderr";

// Mean and standard error of the mean (sample standard deviation / sqrt(n); 0 for one value) of
// per-prompt figures: every average over prompts in the table carries its uncertainty.
struct MeanWithError {
  double mean = 0, stderr_ = 0;
};

MeanWithError mean_with_error(const std::vector<double>& values) {
  MeanWithError m;
  if (values.empty()) return m;
  const double n = static_cast<double>(values.size());
  for (double v : values) m.mean += v / n;
  if (values.size() < 2) return m;
  double squares = 0;
  for (double v : values) squares += (v - m.mean) * (v - m.mean);
  m.stderr_ = std::sqrt(squares / (n - 1) / n);
  return m;
}

// row[key] = the mean of `values`, row[key + "_stderr"] = its standard error.
void put_mean(json& row, const std::string& key, const std::vector<double>& values) {
  const MeanWithError m = mean_with_error(values);
  row[key] = m.mean;
  row[key + kStderrSuffix] = m.stderr_;
}

// "0.356 ± 0.071" for a figure with a standard error in `row`, "4.210" for one without.
std::string format_cell(const json& row, const std::string& key) {
  if (!row.contains(key)) return "-";
  std::string cell = fixed(row[key].get<double>(), 3);
  if (row.contains(key + kStderrSuffix)) cell += " ± " + fixed(row[key + kStderrSuffix].get<double>(), 3);
  return cell;
}

// Appends the values of a 1-d tensor (per-example figures of one batch) to `out`.
void append_values(std::vector<double>& out, const torch::Tensor& values) {
  auto v = values.detach().to(torch::kCPU, torch::kDouble).contiguous();
  out.insert(out.end(), v.data_ptr<double>(), v.data_ptr<double>() + v.numel());
}

bool is_stderr_key(const std::string& key) {
  return key.size() > kStderrSuffix.size() &&
         key.compare(key.size() - kStderrSuffix.size(), kStderrSuffix.size(), kStderrSuffix) == 0;
}

// Right-aligns `cell` in `width` columns on the terminal (UTF-8: "±" is two bytes, one column).
std::string right_aligned(const std::string& cell, size_t width) {
  size_t columns = 0;
  for (unsigned char c : cell) columns += (c & 0xC0) != 0x80;
  return std::string(width > columns ? width - columns : 0, ' ') + cell;
}

std::string first_line(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  const auto b = line.find_first_not_of(" \t");
  const auto e = line.find_last_not_of(" \t\r");
  return b == std::string::npos ? "" : line.substr(b, e - b + 1);
}

class EvalStage : public Stage {
 public:
  json run(const StageContext& ctx) override {
    const Settings& s = ctx.settings;
    device_ = ctx.run.device;
    seed_ = static_cast<uint64_t>(ctx.run.seed);
    template_name_ = s.get_string("chat_template");
    template_where_ = s.where("chat_template");
    max_new_tokens_ = s.get_int("max_new_tokens");
    batch_size_ = s.get_int("batch_size");

    std::vector<NamedModel> models = named_models(ctx, "models");
    std::vector<NamedModel> icl_models =
        s.has("icl_models") ? named_models(ctx, "icl_models") : std::vector<NamedModel>{models.front()};
    load_data(ctx);
    if (s.has("reward_model")) reward_dir_ = model_dir_of(ctx, "reward_model");
    if (s.has("reference")) reference_dir_ = model_dir_of(ctx, "reference");

    json comparison = json::object();
    std::map<std::string, std::vector<std::string>> answers;  // model -> greedy answers
    for (const auto& m : models) {
      log_line(ctx.name, "evaluating " + m.name + " (" + m.dir.string() + ")");
      comparison[m.name] = evaluate_model(ctx, m, &answers[m.name]);
    }
    for (const auto& m : icl_models) {
      json icl = evaluate_in_context(ctx, m);
      for (const auto& [k, v] : icl.items()) comparison[m.name][k] = v;
    }

    print_table(ctx, models, comparison);
    print_samples(ctx, models, answers);
    json metrics = {{"summary", {{"comparison", comparison}}}};
    for (const auto& [model, row] : comparison.items())
      for (const auto& [k, v] : row.items()) metrics[model + "." + k] = v;
    return metrics;
  }

 private:
  // ---- setup --------------------------------------------------------------------------------------

  std::vector<NamedModel> named_models(const StageContext& ctx, const std::string& key) {
    std::vector<NamedModel> out;
    for (const auto& ref : ctx.settings.get_string_list(key)) {
      const std::string name = ctx.stage_dirs.count(ref) ? ref : fs::path(ref).filename().string();
      out.push_back({name, model_dir_of(ctx, key, ref)});
    }
    return out;
  }

  void load_data(const StageContext& ctx) {
    const Settings& s = ctx.settings;
    const bool skip = s.get_bool("skip_bad_lines");
    if (!s.get_string("prompts").empty()) prompts_ = load_prompts(s.get_string("prompts"), skip);
    if (!s.get_string("icl_tasks").empty()) icl_ = load_icl_tasks(s.get_string("icl_tasks"), skip);
    for (const auto& file : s.get_string_list("text")) {
      std::ifstream in(file);
      if (!in) throw std::runtime_error(s.where("text") + ": cannot read '" + file + "'");
      for (std::string line; std::getline(in, line);)
        if (!line.empty()) text_.push_back(line);
    }
    shots_ = s.get_int("shots");
    samples_ = s.get_int("samples");
  }

  // ---- one model ----------------------------------------------------------------------------------

  json evaluate_model(const StageContext& ctx, const NamedModel& m, std::vector<std::string>* answers) {
    Transformer model = load_transformer(m.dir, device_);
    model->eval();
    const Tokenizer tokenizer = Tokenizer::load(m.dir.string());
    template_ = resolve_chat_template(template_name_, tokenizer, template_where_);
    json row = json::object();
    if (!prompts_.empty()) {
      const std::vector<Reply> replies = greedy_answers(model, tokenizer);
      std::vector<double> correct, stopped;
      for (size_t i = 0; i < prompts_.size(); ++i) {
        answers->push_back(replies[i].text);
        stopped.push_back(replies[i].stopped ? 1.0 : 0.0);
        if (prompts_[i].reference.empty()) continue;
        correct.push_back(rl::exact_match_score(replies[i].text, prompts_[i].reference));
      }
      if (!correct.empty()) put_mean(row, "exact_match", correct);
      put_mean(row, "stopped_fraction", stopped);
      if (!reward_dir_.empty()) put_mean(row, "mean_reward", rewards(replies));
      if (!reference_dir_.empty()) put_mean(row, "kl_to_reference", kl_to_reference(model, tokenizer));
    }
    if (!text_.empty()) row["perplexity"] = perplexity(model, tokenizer);
    std::ostringstream line;
    for (const auto& [k, v] : row.items())
      if (!is_stderr_key(k)) line << " " << k << " " << format_cell(row, k);
    log_line(ctx.name, m.name + ":" + line.str());
    return row;
  }

  std::vector<std::vector<int64_t>> chat_prompts(const Tokenizer& tokenizer) const {
    std::vector<std::vector<int64_t>> out;
    for (const auto& p : prompts_) out.push_back(template_->render(tokenizer, p.prompt, true).ids);
    return out;
  }

  // Batches of batch_size_.
  std::vector<Reply> generate_texts(Transformer& model, const Tokenizer& tokenizer,
                                          const std::vector<std::vector<int64_t>>& prompts,
                                          const SamplingOptions& options) const {
    std::vector<Reply> out;
    for (size_t first = 0; first < prompts.size(); first += batch_size_) {
      std::vector<std::vector<int64_t>> batch(
          prompts.begin() + first, prompts.begin() + std::min(prompts.size(), first + batch_size_));
      Generation g = generate(model, batch, options, compat::make_generator(seed_ + first, device_));
      for (auto& reply : decode_replies(g, tokenizer)) out.push_back(std::move(reply));
    }
    return out;
  }

  std::vector<Reply> greedy_answers(Transformer& model, const Tokenizer& tokenizer) const {
    SamplingOptions o;
    o.max_new_tokens(max_new_tokens_).temperature(0).stop_ids(template_->stop_ids(tokenizer)).pad_id(std::max<int64_t>(tokenizer.pad_id(), 0)).vocab_limit(tokenizer.vocab_size());
    return generate_texts(model, tokenizer, chat_prompts(tokenizer), o);
  }

  // The reward model's score of each (prompt, answer) conversation (the scoring PPO uses).
  std::vector<double> rewards(const std::vector<Reply>& answers) const {
    std::vector<const PromptExample*> examples;
    for (const auto& p : prompts_) examples.push_back(&p);
    return rl::load_reward_scorer(reward_dir_, template_name_, template_where_, batch_size_, device_, c10::nullopt, rl::Padding::right)
        ->score(examples, answers);
  }

  // Per prompt, Σ_t log π(y_t) − log π_ref(y_t) on an answer sampled from π (temperature 1): its
  // mean over prompts is the KL estimate RLHF papers report.
  std::vector<double> kl_to_reference(Transformer& model, const Tokenizer& tokenizer) const {
    Transformer reference = load_transformer(reference_dir_, device_);
    reference->eval();
    SamplingOptions o;
    o.max_new_tokens(max_new_tokens_).temperature(1.0).stop_ids(template_->stop_ids(tokenizer)).pad_id(std::max<int64_t>(tokenizer.pad_id(), 0)).vocab_limit(tokenizer.vocab_size());
    const auto prompts = chat_prompts(tokenizer);
    torch::NoGradGuard no_grad;
    std::vector<double> out;
    for (size_t first = 0; first < prompts.size(); first += batch_size_) {
      std::vector<std::vector<int64_t>> batch(
          prompts.begin() + first, prompts.begin() + std::min(prompts.size(), first + batch_size_));
      Generation g = generate(model, batch, o, compat::make_generator(seed_ + 7919 + first, device_));
      const int64_t p = g.prompt_length;
      // tokens: [B, P + N] -> log-probs of tokens[:, 1:], of which the last N are the answer
      auto lp = token_logprobs(model->forward(g.tokens, g.attention_mask), g.tokens).slice(1, p - 1);
      auto lp_ref = token_logprobs(reference->forward(g.tokens, g.attention_mask), g.tokens).slice(1, p - 1);
      append_values(out, ((lp - lp_ref) * g.response_mask.to(lp.scalar_type())).sum(1));
    }
    return out;
  }

  // exp(mean next-token loss) over the documents, each with <|endoftext|>, in windows of the
  // model's block_size.
  double perplexity(Transformer& model, const Tokenizer& tokenizer) const {
    std::vector<int64_t> stream;
    for (const auto& line : text_) {
      auto ids = tokenizer.encode(line);
      stream.insert(stream.end(), ids.begin(), ids.end());
      stream.push_back(tokenizer.eot_id());
    }
    const int64_t block = model->options.block_size();
    torch::NoGradGuard no_grad;
    double sum = 0, count = 0;
    for (size_t first = 0; first + 1 < stream.size(); first += block - 1) {  // windows overlap by one
      const size_t last = std::min(stream.size(), first + block);
      std::vector<int64_t> window(stream.begin() + first, stream.begin() + last);
      auto tokens = torch::tensor(window, torch::kInt64).unsqueeze(0).to(device_);
      LMLoss loss = lm_loss(model->forward(tokens), tokens);
      sum += loss.sum.item<double>();
      count += loss.count.item<double>();
      if (last == stream.size()) break;
    }
    return std::exp(sum / std::max(count, 1.0));
  }

  // ---- in-context learning ------------------------------------------------------------------------

  // Zero-shot ("Korea ->") against k-shot ("USA -> Washington\n... Korea ->") greedy accuracy; the
  // answer is the first line of the continuation. Shots are the next k examples of the same task.
  json evaluate_in_context(const StageContext& ctx, const NamedModel& m) {
    if (icl_.empty()) return json::object();
    Transformer model = load_transformer(m.dir, device_);
    model->eval();
    const Tokenizer tokenizer = Tokenizer::load(m.dir.string());
    std::vector<std::vector<int64_t>> zero, few;
    for (size_t i = 0; i < icl_.size(); ++i) {
      std::string shots;
      int64_t taken = 0;
      for (size_t j = (i + 1) % icl_.size(); j != i && taken < shots_; j = (j + 1) % icl_.size()) {
        if (icl_[j].task != icl_[i].task) continue;
        shots += icl_[j].input + " -> " + icl_[j].target + "\n";
        ++taken;
      }
      zero.push_back(tokenizer.encode(icl_[i].input + " ->"));
      few.push_back(tokenizer.encode(shots + icl_[i].input + " ->"));
    }
    SamplingOptions o;
    o.max_new_tokens(max_new_tokens_).temperature(0).stop_ids({tokenizer.eot_id()}).pad_id(std::max<int64_t>(tokenizer.pad_id(), 0)).vocab_limit(tokenizer.vocab_size());
    auto correct = [&](const std::vector<std::vector<int64_t>>& prompts) {
      auto answers = generate_texts(model, tokenizer, prompts, o);
      std::vector<double> out;
      for (size_t i = 0; i < icl_.size(); ++i) out.push_back(first_line(answers[i].text) == icl_[i].target ? 1.0 : 0.0);
      return out;
    };
    const std::string few_key = "icl_" + std::to_string(shots_) + "shot";
    json row = json::object();
    put_mean(row, "icl_0shot", correct(zero));
    put_mean(row, few_key, correct(few));
    log_line(ctx.name, m.name + " in context: zero-shot " + format_cell(row, "icl_0shot") + ", " +
                           std::to_string(shots_) + "-shot " + format_cell(row, few_key) + " (" +
                           std::to_string(icl_.size()) + " questions)");
    return row;
  }

  // ---- output -------------------------------------------------------------------------------------

  // Rows in the order the recipe lists the models (the JSON object sorts its keys).
  void print_table(const StageContext& ctx, const std::vector<NamedModel>& models, const json& comparison) const {
    std::vector<std::string> columns;
    for (const auto& [model, row] : comparison.items())
      for (const auto& [k, v] : row.items())
        if (!is_stderr_key(k) && std::find(columns.begin(), columns.end(), k) == columns.end()) columns.push_back(k);
    auto width = [&](const std::string& column) {
      const bool with_error = std::any_of(comparison.begin(), comparison.end(),
                                          [&](const json& row) { return row.contains(column + kStderrSuffix); });
      return std::max<size_t>(with_error ? 16 : 10, column.size() + 2);
    };
    std::ostringstream out;
    out << std::left << std::setw(12) << "model";
    for (const auto& c : columns) out << right_aligned(c, width(c));
    log_line(ctx.name, "comparison");
    log_line(ctx.name, out.str());
    for (const auto& m : models) {
      const std::string& model = m.name;
      const json& row = comparison[model];
      std::ostringstream line;
      line << std::left << std::setw(12) << model;
      for (const auto& c : columns) line << right_aligned(format_cell(row, c), width(c));
      log_line(ctx.name, line.str());
    }
  }

  void print_samples(const StageContext& ctx, const std::vector<NamedModel>& models,
                     const std::map<std::string, std::vector<std::string>>& answers) const {
    std::ofstream out(ctx.dir / "samples.jsonl");
    for (size_t i = 0; i < prompts_.size(); ++i) {
      json record = {{"prompt", prompts_[i].prompt.back().content}, {"reference", prompts_[i].reference}};
      for (const auto& m : models) record[m.name] = answers.at(m.name)[i];
      out << record.dump() << "\n";
      if (static_cast<int64_t>(i) >= samples_) continue;
      log_line(ctx.name, "Q: " + prompts_[i].prompt.back().content +
                             (prompts_[i].reference.empty() ? "" : "  (reference: " + prompts_[i].reference + ")"));
      for (const auto& m : models) log_line(ctx.name, "   " + m.name + ": " + answers.at(m.name)[i]);
    }
  }

  torch::Device device_ = torch::kCPU;
  uint64_t seed_ = 0;
  std::string template_name_, template_where_;  // the chat_template setting, resolved per model
  std::shared_ptr<const ChatTemplate> template_;  // the current model's
  int64_t max_new_tokens_ = 16, batch_size_ = 32, shots_ = 3, samples_ = 4;
  std::vector<PromptExample> prompts_;
  std::vector<IclExample> icl_;
  std::vector<std::string> text_;
  fs::path reward_dir_, reference_dir_;
};

}  // namespace

StageEntry eval_stage_entry() {
  return {"compare models: exact match, reward, KL, perplexity, zero- vs few-shot in context",
          eval_schema, [] { return std::make_unique<EvalStage>(); }};
}

}  // namespace nurture
