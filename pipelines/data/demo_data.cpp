// The quickstart world generator (see demo_data.h).
#include "pipelines/data/demo_data.h"

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

struct Country {
  const char* name;
  const char* capital;
  const char* continent;
};

const std::vector<Country> kCountries = {
    {"France", "Paris", "Europe"},          {"Japan", "Tokyo", "Asia"},
    {"Korea", "Seoul", "Asia"},             {"Italy", "Rome", "Europe"},
    {"Spain", "Madrid", "Europe"},          {"Germany", "Berlin", "Europe"},
    {"Egypt", "Cairo", "Africa"},           {"Kenya", "Nairobi", "Africa"},
    {"Peru", "Lima", "South America"},      {"Chile", "Santiago", "South America"},
    {"Canada", "Ottawa", "North America"},  {"Mexico", "Mexico City", "North America"},
    {"Brazil", "Brasilia", "South America"}, {"Argentina", "Buenos Aires", "South America"},
    {"China", "Beijing", "Asia"},           {"India", "New Delhi", "Asia"},
    {"Russia", "Moscow", "Europe"},         {"Norway", "Oslo", "Europe"},
    {"Sweden", "Stockholm", "Europe"},      {"Finland", "Helsinki", "Europe"},
    {"Poland", "Warsaw", "Europe"},         {"Greece", "Athens", "Europe"},
    {"Turkey", "Ankara", "Asia"},           {"Iran", "Tehran", "Asia"},
    {"Iraq", "Baghdad", "Asia"},            {"Cuba", "Havana", "North America"},
    {"Ireland", "Dublin", "Europe"},        {"Portugal", "Lisbon", "Europe"},
    {"Austria", "Vienna", "Europe"},        {"Hungary", "Budapest", "Europe"},
    {"Thailand", "Bangkok", "Asia"},        {"Vietnam", "Hanoi", "Asia"},
    {"Nepal", "Kathmandu", "Asia"},         {"Ghana", "Accra", "Africa"},
    {"Morocco", "Rabat", "Africa"},         {"Australia", "Canberra", "Oceania"},
    {"USA", "Washington", "North America"}, {"England", "London", "Europe"},
    {"Belgium", "Brussels", "Europe"},      {"Denmark", "Copenhagen", "Europe"},
    {"Mongolia", "Ulaanbaatar", "Asia"},    {"Ethiopia", "Addis Ababa", "Africa"},
    {"Netherlands", "Amsterdam", "Europe"}, {"Switzerland", "Bern", "Europe"},
    {"Ukraine", "Kyiv", "Europe"},          {"Romania", "Bucharest", "Europe"},
    {"Czechia", "Prague", "Europe"},        {"Croatia", "Zagreb", "Europe"},
    {"Serbia", "Belgrade", "Europe"},       {"Bulgaria", "Sofia", "Europe"},
    {"Iceland", "Reykjavik", "Europe"},     {"Pakistan", "Islamabad", "Asia"},
    {"Indonesia", "Jakarta", "Asia"},       {"Philippines", "Manila", "Asia"},
    {"Malaysia", "Kuala Lumpur", "Asia"},   {"Syria", "Damascus", "Asia"},
    {"Lebanon", "Beirut", "Asia"},          {"Jordan", "Amman", "Asia"},
    {"Afghanistan", "Kabul", "Asia"},       {"Bangladesh", "Dhaka", "Asia"},
    {"Nigeria", "Abuja", "Africa"},         {"Senegal", "Dakar", "Africa"},
    {"Uganda", "Kampala", "Africa"},        {"Tanzania", "Dodoma", "Africa"},
    {"Algeria", "Algiers", "Africa"},       {"Tunisia", "Tunis", "Africa"},
    {"Libya", "Tripoli", "Africa"},         {"Sudan", "Khartoum", "Africa"},
    {"Angola", "Luanda", "Africa"},         {"Zambia", "Lusaka", "Africa"},
    {"Colombia", "Bogota", "South America"}, {"Venezuela", "Caracas", "South America"},
    {"Ecuador", "Quito", "South America"},  {"Uruguay", "Montevideo", "South America"},
    {"Paraguay", "Asuncion", "South America"}, {"Jamaica", "Kingston", "North America"},
    {"Panama", "Panama City", "North America"}, {"Guatemala", "Guatemala City", "North America"},
    {"Honduras", "Tegucigalpa", "North America"}, {"Fiji", "Suva", "Oceania"},
    {"Samoa", "Apia", "Oceania"},           {"New Zealand", "Wellington", "Oceania"},
    {"Papua New Guinea", "Port Moresby", "Oceania"}, {"Tonga", "Nuku'alofa", "Oceania"},
};

// One fact of the world, e.g. kind "capital", subject "Korea", value "Seoul". Every kind says how
// it is asked and answered in chat, and how it is told in pre-training prose.
struct Fact {
  std::string kind;     // "capital" | "continent" | "sum"
  std::string subject;  // "Korea", "3 + 4"
  std::string value;    // "Seoul", "7" (the in-context target)
};

std::string question(const Fact& f) {
  if (f.kind == "capital") return "What is the capital of " + f.subject + "?";
  if (f.kind == "continent") return "Which continent is " + f.subject + " in?";
  return "What is " + f.subject + "?";
}

// The assistant's answer: a whole sentence that restates the question, so that what the model read
// in pre-training ("The capital of Korea is Seoul.") is what it is taught to say.
std::string answer(const Fact& f, const std::string& value) {
  if (f.kind == "capital") return "The capital of " + f.subject + " is " + value + ".";
  if (f.kind == "continent") return f.subject + " is in " + value + ".";
  return f.subject + " = " + value + ".";
}

// The same fact as a bare value ("Seoul."): right, but not what the graders prefer. Half the SFT
// answers are like this, as crowd-written data mixes careful and hasty answers.
std::string terse_answer(const Fact& f) { return f.value + "."; }

// One sentence of pre-training text telling the fact. Half are the question with its answer (as
// FAQ pages and quizzes have them), with gaps of different lengths between the two (a chat template
// puts a few tokens there): reading those, the model learns to answer what is asked, and SFT then
// only has to teach it the chat format. The rest tell the fact in other words.
std::string tell(const Fact& f, std::mt19937_64& rng) {
  static const std::vector<std::string> kGaps = {" ", " Answer: ", " A: ", " Let me think. ", " Easy. "};
  if (rng() % 2 == 0) return question(f) + kGaps[rng() % kGaps.size()] + answer(f, f.value);
  std::vector<std::string> told;
  if (f.kind == "capital") {
    told = {answer(f, f.value), f.value + " is the capital of " + f.subject + ".",
            "In " + f.subject + ", the capital city is " + f.value + ".",
            "People in " + f.subject + " govern from " + f.value + ", the capital."};
  } else if (f.kind == "continent") {
    told = {answer(f, f.value), f.subject + " lies in " + f.value + ".",
            "The country of " + f.subject + " is part of " + f.value + "."};
  } else {
    const auto plus = f.subject.find(" + ");
    told = {answer(f, f.value),
            f.subject.substr(0, plus) + " plus " + f.subject.substr(plus + 3) + " is " + f.value + "."};
  }
  return told[rng() % told.size()];
}

std::vector<Fact> make_facts(const DemoDataOptions& o) {
  std::vector<Fact> facts;
  for (const auto& c : kCountries) facts.push_back({"capital", c.name, c.capital});
  for (const auto& c : kCountries) facts.push_back({"continent", c.name, c.continent});
  for (int64_t a = 0; a <= o.max_operand; ++a)
    for (int64_t b = 0; b <= o.max_operand; ++b)
      facts.push_back({"sum", std::to_string(a) + " + " + std::to_string(b), std::to_string(a + b)});
  return facts;
}

// A wrong reply to `f`: the right answer to another question of the same kind ("The capital of
// Iran is Tehran." to "What is the capital of Italy?"), the mistake small chat models make most.
// It is some other question's chosen reply, so a reward model cannot score the reply alone: it
// has to check it against the question. Drawn from `pool` (the same split), or from every fact
// when the split holds no other of the kind.
const Fact& other_fact(const Fact& f, const std::vector<const Fact*>& pool, const std::vector<Fact>& facts,
                       std::mt19937_64& rng) {
  auto differs = [&](const Fact& other) {
    return other.kind == f.kind && other.subject != f.subject && other.value != f.value;
  };
  std::vector<const Fact*> candidates;
  for (const Fact* other : pool)
    if (differs(*other)) candidates.push_back(other);
  if (candidates.empty())
    for (const Fact& other : facts)
      if (differs(other)) candidates.push_back(&other);
  if (candidates.empty()) throw std::runtime_error("the demo world has no second " + f.kind + " fact");
  return *candidates[rng() % candidates.size()];
}

// Speaker names of the pre-training dialogues (the one who asks, the one who answers).
const std::vector<std::pair<std::string, std::string>> kSpeakers = {
    {"User", "Assistant"}, {"Q", "A"}, {"Student", "Teacher"}, {"Human", "AI"}, {"Guest", "Host"}};

// What graders rank below the full, right answer to `f`, one kind per `flaw`:
//   0  the bare value ("Seoul.");
//   1  the right answer with an unrelated fact after it (rambling);
//   2  the right answer as a line of a transcript that goes on to the next question
//      ("A: The capital of Korea is Seoul.\nUser: What is 3 + 4?"), as a model that has only
//      read dialogues writes it;
//   3  the answer to the other question about the same subject ("Korea is in Asia." to "What is
//      the capital of Korea?"), or to another question of the kind where there is none (sums);
//   4+ the answer to another question of the same kind (wrong).
// The first three are style, which transfers to any question; the last two need the facts.
std::string worse_answer(const Fact& f, int flaw, const std::vector<const Fact*>& pool,
                         const std::vector<Fact>& facts, std::mt19937_64& rng) {
  if (flaw == 0) return terse_answer(f);
  const Fact& other = other_fact(f, pool, facts, rng);
  if (flaw == 1) return answer(f, f.value) + " " + answer(other, other.value);
  if (flaw == 2) {
    const auto& [asks, answers] = kSpeakers[rng() % kSpeakers.size()];
    return answers + ": " + answer(f, f.value) + "\n" + asks + ": " + question(other);
  }
  if (flaw == 3)
    for (const Fact& same_subject : facts)
      if (same_subject.subject == f.subject && same_subject.kind != f.kind)
        return answer(same_subject, same_subject.value);
  return answer(other, other.value);
}

json chat(const Fact& f, const std::string& reply) {
  return json::array({{{"role", "user"}, {"content", question(f)}}, {{"role", "assistant"}, {"content", reply}}});
}

class Writer {
 public:
  explicit Writer(const fs::path& path) : out_(path) {
    if (!out_) throw std::runtime_error(path.string() + ": cannot write");
  }
  void line(const std::string& s) { out_ << s << "\n", ++count_; }
  int64_t count() const { return count_; }

 private:
  std::ofstream out_;
  int64_t count_ = 0;
};

// Separators of the pre-training lists (" -> " is the in-context tasks' own).
const std::vector<std::string> kListSeparators = {" -> ", ": ", " = ", " - ", " | "};

// The facts, and which of them SFT, the reward model and PPO may train on.
struct World {
  std::vector<Fact> facts;
  std::vector<const Fact*> train, heldout;
};

// Held-out split, per kind, so every kind is evaluated.
void split_heldout(World& w, double heldout_fraction, std::mt19937_64& rng) {
  std::vector<size_t> order(w.facts.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  std::map<std::string, std::pair<size_t, size_t>> seen;  // kind -> (taken heldout, total)
  for (const auto& f : w.facts) seen[f.kind].second++;
  for (size_t i : order) {
    auto& [taken, total] = seen[w.facts[i].kind];
    if (taken < static_cast<size_t>(heldout_fraction * total)) {
      w.heldout.push_back(&w.facts[i]);
      ++taken;
    } else {
      w.train.push_back(&w.facts[i]);
    }
  }
}

// Pre-training tells every fact, held-out ones included: that is the model's knowledge, which the
// later stages must draw out for questions they were never trained on. Prose sentences, one per
// line; a validation file holds fresh sentences of the same kind.
void write_prose(const fs::path& dir, const World& w, int64_t repeats, std::mt19937_64& rng, json& counts) {
  std::vector<std::string> sentences;
  for (const auto& f : w.facts) {
    for (int64_t r = 0; r < repeats; ++r) sentences.push_back(tell(f, rng));
  }
  std::shuffle(sentences.begin(), sentences.end(), rng);
  Writer pt(dir / "pretrain.txt"), pt_val(dir / "pretrain_val.txt");
  const size_t n_val = std::max<size_t>(1, sentences.size() / 20);
  for (size_t i = 0; i < sentences.size(); ++i) (i < n_val ? pt_val : pt).line(sentences[i]);
  counts["pretrain_lines"] = pt.count();
  counts["pretrain_val_lines"] = pt_val.count();
}

// And lists, one per document: a few countries with their capitals or their continents, one entry
// per line, each list with its own separator. A model that reads them learns to continue a list in
// the format and relation its first lines show: in-context learning.
void write_lists(const fs::path& dir, int64_t repeats, std::mt19937_64& rng, json& counts) {
  Writer lists(dir / "pretrain_lists.jsonl");
  const int64_t n_countries = static_cast<int64_t>(kCountries.size());
  for (int64_t i = 0; i < repeats * n_countries / 2; ++i) {
    const std::string kind = rng() % 2 ? "capital" : "continent";
    const std::string& sep = kListSeparators[rng() % kListSeparators.size()];
    std::vector<const Country*> picked;
    for (const auto& c : kCountries) picked.push_back(&c);
    std::shuffle(picked.begin(), picked.end(), rng);
    std::string text;
    for (int64_t n = 0, length = 4 + static_cast<int64_t>(rng() % 4); n < length; ++n)
      text += std::string(picked[n]->name) + sep + (kind == "capital" ? picked[n]->capital : picked[n]->continent) + "\n";
    lists.line(json{{"text", text}}.dump());
  }
  counts["pretrain_lists"] = lists.count();
}

// And dialogues, one per document: a few questions and their answers in a plain transcript
// ("User: What is the capital of Korea?\nAssistant: The capital of Korea is Seoul.\n"), as
// forums, interviews and FAQ pages have them, under speaker names that vary. Reading them, the
// model learns that in a conversation the reply answers the question just asked; SFT then only
// has to teach it ChatML's markers for the same turns. Every fact, held-out ones included.
void write_dialogues(const fs::path& dir, const World& w, int64_t repeats, std::mt19937_64& rng, json& counts) {
  Writer dialogues(dir / "pretrain_dialogues.jsonl");
  for (int64_t i = 0; i < repeats * static_cast<int64_t>(w.facts.size()) / 4; ++i) {
    const auto& [asks, answers] = kSpeakers[rng() % kSpeakers.size()];
    std::string text;
    for (int64_t turn = 0, turns = 2 + static_cast<int64_t>(rng() % 3); turn < turns; ++turn) {
      const Fact& f = w.facts[rng() % w.facts.size()];
      text += asks + ": " + question(f) + "\n" + answers + ": " + answer(f, f.value) + "\n";
    }
    dialogues.line(json{{"text", text}}.dump());
  }
  counts["pretrain_dialogues"] = dialogues.count();
}

// SFT: chat Q&A on training facts, in both record forms; half the answers are full sentences,
// half bare values. The held-out conversations (validation) have the full sentences.
void write_sft(const fs::path& dir, const World& w, std::mt19937_64& rng, json& counts) {
  Writer sft(dir / "sft.jsonl"), sft_val(dir / "sft_val.jsonl");
  for (const Fact* f : w.train) {
    const std::string reply = rng() % 2 ? answer(*f, f->value) : terse_answer(*f);
    if (rng() % 4 == 0)
      sft.line(json{{"prompt", question(*f)}, {"response", reply}}.dump());
    else
      sft.line(json{{"messages", chat(*f, reply)}}.dump());
  }
  for (const Fact* f : w.heldout) sft_val.line(json{{"messages", chat(*f, answer(*f, f->value))}}.dump());
  counts["sft_examples"] = sft.count();
  counts["sft_val_examples"] = sft_val.count();
}

// Preferences: the full, right answer against a worse one drawn from the same split: for each
// training fact one bare, one rambling, one transcript, one about the other relation and four
// wrong (a reward model learns to check an answer against its question only from many different
// wrong ones); for each held-out fact one of each.
void write_preferences(const fs::path& dir, const World& w, std::mt19937_64& rng, json& counts) {
  Writer prefs(dir / "prefs.jsonl"), prefs_val(dir / "prefs_val.jsonl");
  for (const Fact* f : w.train)
    for (int flaw = 0; flaw < 8; ++flaw)
      prefs.line(json{{"prompt", question(*f)}, {"chosen", answer(*f, f->value)},
                      {"rejected", worse_answer(*f, flaw, w.train, w.facts, rng)}}.dump());
  for (const Fact* f : w.heldout)
    for (int flaw = 0; flaw < 5; ++flaw)
      prefs_val.line(json{{"prompt", question(*f)}, {"chosen", answer(*f, f->value)},
                          {"rejected", worse_answer(*f, flaw, w.heldout, w.facts, rng)}}.dump());
  counts["pref_pairs"] = prefs.count();
  counts["pref_val_pairs"] = prefs_val.count();
}

// PPO prompts (training facts) and held-out evaluation prompts, with reference answers; and the
// in-context tasks: "Korea -> Seoul" (capital) and "Korea -> Asia" (continent) for every country.
// The input alone does not say which relation is asked; the examples do.
void write_prompts_and_tasks(const fs::path& dir, const World& w, json& counts) {
  Writer prompts(dir / "prompts.jsonl"), eval(dir / "eval_prompts.jsonl");
  for (const Fact* f : w.train)
    prompts.line(json{{"prompt", question(*f)}, {"reference", answer(*f, f->value)}}.dump());
  for (const Fact* f : w.heldout)
    eval.line(json{{"prompt", question(*f)}, {"reference", answer(*f, f->value)}}.dump());
  Writer icl(dir / "icl.jsonl");
  for (const auto& f : w.facts)
    if (f.kind != "sum") icl.line(json{{"input", f.subject}, {"target", f.value}, {"task", f.kind}}.dump());
  counts["ppo_prompts"] = prompts.count();
  counts["eval_prompts"] = eval.count();
  counts["icl_examples"] = icl.count();
}

// The sums alone, answered with a number (what math_answer checks): training and held-out.
void write_sums(const fs::path& dir, const World& w, json& counts) {
  Writer train(dir / "sums_prompts.jsonl"), eval(dir / "sums_eval_prompts.jsonl");
  for (const auto& [split, out] : {std::pair{&w.train, &train}, std::pair{&w.heldout, &eval}})
    for (const Fact* f : *split)
      if (f->kind == "sum") out->line(json{{"prompt", question(*f)}, {"answer", f->value}}.dump());
  counts["sums_prompts"] = train.count();
  counts["sums_eval_prompts"] = eval.count();
}

}  // namespace

// One random stream, drawn from in this order: the same seed writes the same files.
json write_demo_data(const fs::path& dir, const DemoDataOptions& o) {
  fs::create_directories(dir);
  std::mt19937_64 rng(o.seed);
  World world;
  world.facts = make_facts(o);
  split_heldout(world, o.heldout_fraction, rng);
  json counts = json::object();
  write_prose(dir, world, o.prose_repeats, rng, counts);
  write_lists(dir, o.prose_repeats, rng, counts);
  write_dialogues(dir, world, o.prose_repeats, rng, counts);
  write_sft(dir, world, rng, counts);
  write_preferences(dir, world, rng, counts);
  write_prompts_and_tasks(dir, world, counts);
  write_sums(dir, world, counts);
  return counts;
}

}  // namespace nurture
