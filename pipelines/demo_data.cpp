// The quickstart world generator (see demo_data.h).
#include "pipelines/demo_data.h"

#include "pipelines/builtin_pipelines.h"
#include "pipelines/log.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <random>
#include <stdexcept>
#include <vector>

namespace nurture {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct Fact {
  std::string question;   // "What is the capital of France?"
  std::string answer;     // "Paris"
  std::string subject;    // "France" (ICL input)
  std::vector<std::string> prose;  // ways the fact is told in pre-training text
  std::string kind;       // "capital" | "sum"
};

const std::vector<std::pair<const char*, const char*>> kCapitals = {
    {"France", "Paris"},       {"Japan", "Tokyo"},          {"Korea", "Seoul"},
    {"Italy", "Rome"},         {"Spain", "Madrid"},         {"Germany", "Berlin"},
    {"Egypt", "Cairo"},        {"Kenya", "Nairobi"},        {"Peru", "Lima"},
    {"Chile", "Santiago"},     {"Canada", "Ottawa"},        {"Mexico", "Mexico City"},
    {"Brazil", "Brasilia"},    {"Argentina", "Buenos Aires"}, {"China", "Beijing"},
    {"India", "New Delhi"},    {"Russia", "Moscow"},        {"Norway", "Oslo"},
    {"Sweden", "Stockholm"},   {"Finland", "Helsinki"},     {"Poland", "Warsaw"},
    {"Greece", "Athens"},      {"Turkey", "Ankara"},        {"Iran", "Tehran"},
    {"Iraq", "Baghdad"},       {"Cuba", "Havana"},          {"Ireland", "Dublin"},
    {"Portugal", "Lisbon"},    {"Austria", "Vienna"},       {"Hungary", "Budapest"},
    {"Thailand", "Bangkok"},   {"Vietnam", "Hanoi"},        {"Nepal", "Kathmandu"},
    {"Ghana", "Accra"},        {"Morocco", "Rabat"},        {"Australia", "Canberra"},
    {"USA", "Washington"},     {"England", "London"},       {"Belgium", "Brussels"},
    {"Denmark", "Copenhagen"}, {"Mongolia", "Ulaanbaatar"}, {"Ethiopia", "Addis Ababa"},
};

std::vector<Fact> make_facts(const DemoDataOptions& o) {
  std::vector<Fact> facts;
  for (const auto& [country, capital] : kCapitals) {
    const std::string c = country, k = capital;
    facts.push_back({"What is the capital of " + c + "?", k, c,
                     {"The capital of " + c + " is " + k + ".", k + " is the capital of " + c + ".",
                      "In " + c + ", the capital city is " + k + ".",
                      "People in " + c + " govern from " + k + ", the capital."},
                     "capital"});
  }
  for (int64_t a = 0; a <= o.max_operand; ++a) {
    for (int64_t b = 0; b <= o.max_operand; ++b) {
      const std::string s = std::to_string(a) + " + " + std::to_string(b);
      const std::string r = std::to_string(a + b);
      facts.push_back({"What is " + s + "?", r, s,
                       {s + " = " + r + ".", std::to_string(a) + " plus " + std::to_string(b) +
                                                 " is " + r + "."},
                       "sum"});
    }
  }
  return facts;
}

// A wrong answer of the same kind (another capital, a sum off by a little).
std::string wrong_answer(const Fact& f, const std::vector<Fact>& facts, std::mt19937_64& rng) {
  if (f.kind == "sum") {
    const int64_t right = std::stoll(f.answer);
    std::uniform_int_distribution<int> off(1, 3);
    const int64_t delta = off(rng) * (rng() % 2 ? 1 : -1);
    return std::to_string(right + delta < 0 ? right + 1 : right + delta);
  }
  for (;;) {
    const Fact& other = facts[rng() % facts.size()];
    if (other.kind == f.kind && other.answer != f.answer) return other.answer;
  }
}

json chat(const Fact& f, const std::string& answer) {
  return json::array({{{"role", "user"}, {"content", f.question}},
                      {{"role", "assistant"}, {"content", answer}}});
}

class Writer {
 public:
  Writer(const fs::path& path) : path_(path), out_(path) {
    if (!out_) throw std::runtime_error(path.string() + ": cannot write");
  }
  void line(const std::string& s) { out_ << s << "\n", ++count_; }
  int64_t count() const { return count_; }

 private:
  fs::path path_;
  std::ofstream out_;
  int64_t count_ = 0;
};

}  // namespace

json write_demo_data(const fs::path& dir, const DemoDataOptions& o) {
  fs::create_directories(dir);
  std::mt19937_64 rng(o.seed);
  std::vector<Fact> facts = make_facts(o);

  // Held-out split, per kind, so both kinds are evaluated.
  std::vector<size_t> order(facts.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<const Fact*> train, heldout;
  std::map<std::string, std::pair<size_t, size_t>> seen;  // kind -> (taken heldout, total)
  for (const auto& f : facts) seen[f.kind].second++;
  for (size_t i : order) {
    auto& [taken, total] = seen[facts[i].kind];
    if (taken < static_cast<size_t>(o.heldout_fraction * total)) {
      heldout.push_back(&facts[i]);
      ++taken;
    } else {
      train.push_back(&facts[i]);
    }
  }

  // Pre-training prose tells every fact (the model's knowledge), shuffled; a validation file
  // holds fresh sentences of the same kind.
  std::vector<std::string> prose;
  for (const auto& f : facts)
    for (int64_t r = 0; r < o.prose_repeats; ++r) prose.push_back(f.prose[(r + rng()) % f.prose.size()]);
  std::shuffle(prose.begin(), prose.end(), rng);
  Writer pt(dir / "pretrain.txt"), pt_val(dir / "pretrain_val.txt");
  const size_t n_val = std::max<size_t>(1, prose.size() / 20);
  for (size_t i = 0; i < prose.size(); ++i) (i < n_val ? pt_val : pt).line(prose[i]);

  // SFT: chat Q&A on training facts (short answers, so exact match is meaningful).
  Writer sft(dir / "sft.jsonl"), sft_val(dir / "sft_val.jsonl");
  for (const Fact* f : train) {
    sft.line(json{{"messages", chat(*f, f->answer)}}.dump());
    if (rng() % 4 == 0)
      sft.line(json{{"prompt", f->question}, {"response", f->answer}}.dump());
  }
  for (const Fact* f : heldout) sft_val.line(json{{"messages", chat(*f, f->answer)}}.dump());

  // Preferences: the right answer against a wrong one.
  Writer prefs(dir / "prefs.jsonl"), prefs_val(dir / "prefs_val.jsonl");
  for (const Fact* f : train)
    for (int r = 0; r < 2; ++r)
      prefs.line(json{{"prompt", f->question}, {"chosen", f->answer},
                      {"rejected", wrong_answer(*f, facts, rng)}}.dump());
  for (const Fact* f : heldout)
    prefs_val.line(json{{"prompt", f->question}, {"chosen", f->answer},
                        {"rejected", wrong_answer(*f, facts, rng)}}.dump());

  // PPO prompts (training facts) and held-out evaluation prompts, with references.
  Writer prompts(dir / "prompts.jsonl"), eval(dir / "eval_prompts.jsonl");
  for (const Fact* f : train) prompts.line(json{{"prompt", f->question}, {"reference", f->answer}}.dump());
  for (const Fact* f : heldout) eval.line(json{{"prompt", f->question}, {"reference", f->answer}}.dump());

  // In-context learning: "France -> Paris" style tasks, never written this way in pre-training.
  Writer icl(dir / "icl.jsonl");
  for (const Fact* f : heldout)
    icl.line(json{{"input", f->subject}, {"target", f->answer}, {"task", f->kind}}.dump());
  for (const Fact* f : train)
    icl.line(json{{"input", f->subject}, {"target", f->answer}, {"task", f->kind}}.dump());

  return json{{"pretrain_lines", pt.count()},   {"pretrain_val_lines", pt_val.count()},
              {"sft_examples", sft.count()},    {"sft_val_examples", sft_val.count()},
              {"pref_pairs", prefs.count()},    {"pref_val_pairs", prefs_val.count()},
              {"ppo_prompts", prompts.count()}, {"eval_prompts", eval.count()},
              {"icl_examples", icl.count()}};
}

}  // namespace nurture

// ---- the `demo_data` stage ---------------------------------------------------------------------------

namespace nurture {

namespace {

class DemoDataPipeline : public Pipeline {
 public:
  nlohmann::json run(const StageContext& ctx) override {
    DemoDataOptions o;
    o.seed = static_cast<uint64_t>(ctx.run.seed);
    o.prose_repeats = ctx.settings.get_int("prose_repeats");
    o.max_operand = ctx.settings.get_int("max_operand");
    o.heldout_fraction = ctx.settings.get_float("heldout_fraction");
    json counts = write_demo_data(ctx.dir, o);
    log_line(ctx.name, "wrote the demo world into " + ctx.dir.string() + ": " + counts.dump());
    return counts;
  }
};

std::shared_ptr<const Schema> demo_data_schema() {
  auto s = std::make_shared<Schema>();
  s->add_int("prose_repeats", 8, "how often each fact is told in the pre-training prose").at_least(1);
  s->add_int("max_operand", 9, "sums a + b use 0 <= a, b <= this").at_least(1).at_most(99);
  s->add_float("heldout_fraction", 0.25, "facts kept out of SFT/RM/PPO training, for evaluation")
      .greater_than(0).at_most(0.9);
  return s;
}

}  // namespace

PipelineEntry demo_data_pipeline_entry() {
  return {"generate the quickstart's small world (capitals and sums) in every data format",
          demo_data_schema, [] { return std::make_unique<DemoDataPipeline>(); }};
}

}  // namespace nurture
