// The tiny world the tests train on, built one way everywhere: a BPE tokenizer trained on a small
// corpus, and a randomly initialised model saved with it as a model directory (what a pretrain
// stage would have written). Each suite keeps its own corpus: what it asserts depends on it.
#pragma once
#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "modules/model/model_dir.h"
#include "modules/model/transformer.h"
#include "modules/text/tokenizer.h"
#include "tests/test_util.h"

namespace nurture::testing {

struct TinyTokenizer {
  int64_t vocab_size = 300;
  double character_coverage = 1.0;  // every character of the corpus gets a piece
  int num_threads = 2;
  std::string file = "tok.model";   // written into the corpus's directory
};

// Writes `corpus` to dir/corpus.txt and trains a BPE tokenizer on it (dir/<t.file>).
inline Tokenizer train_tiny_tokenizer(const std::filesystem::path& dir, const std::string& corpus,
                                      const TinyTokenizer& t = {}) {
  TokenizerTrainOptions o;
  o.inputs = {write_file(dir / "corpus.txt", corpus).string()};
  o.output = (dir / t.file).string();
  o.vocab_size = t.vocab_size;
  o.character_coverage = t.character_coverage;
  o.num_threads = t.num_threads;
  return Tokenizer::train(o);
}

// A Transformer of `options` (its vocabulary the tokenizer's) with weights drawn after
// manual_seed(seed), every matrix scaled by `scale` (> 1 sharpens a random model's replies), saved
// with the tokenizer as the lm model directory `dir`. Returns `dir`.
inline std::filesystem::path save_random_lm(const std::filesystem::path& dir, TransformerOptions options,
                                            const Tokenizer& tokenizer, uint64_t seed, double scale = 1.0) {
  options.vocab_size(tokenizer.vocab_size());
  torch::manual_seed(seed);
  Transformer model(options);
  if (scale != 1.0) {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters())
      if (p.dim() >= 2) p.mul_(scale);
  }
  save_model(dir, *model, options, "lm");
  tokenizer.save((dir / kTokenizerFileName).string());
  return dir;
}

// The preference task the reward-model and DPO tests learn, over these words: `n` pairs (prompt, chosen, rejected)
// whose chosen reply says "thanks" somewhere and whose rejected reply has an ordinary word in that
// place instead (same length, same other words). The same pairs for the same seed.
inline const std::vector<std::string>& preference_words() {
  static const std::vector<std::string> words = {"red",  "blue", "green", "cat",  "dog",  "sun",
                                                 "moon", "tree", "rock",  "fish", "bird", "star"};
  return words;
}

inline std::vector<nlohmann::json> preference_pairs(int n, uint32_t seed) {
  const std::vector<std::string>& words = preference_words();
  std::mt19937 rng(seed);
  auto word = [&] { return words[rng() % words.size()]; };
  auto join = [](const std::vector<std::string>& ws) {
    std::string out;
    for (const auto& w : ws) out += (out.empty() ? "" : " ") + w;
    return out;
  };
  std::vector<nlohmann::json> pairs;
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> reply;
    for (int k = 0, len = 3 + static_cast<int>(rng() % 4); k < len; ++k) reply.push_back(word());
    const auto at = static_cast<std::ptrdiff_t>(rng() % (reply.size() + 1));
    auto chosen = reply, rejected = reply;
    chosen.insert(chosen.begin() + at, "thanks");
    rejected.insert(rejected.begin() + at, word());
    const std::string a = word(), b = word();
    pairs.push_back({{"prompt", "Tell me about the " + a + " " + b + "."},
                     {"chosen", join(chosen)},
                     {"rejected", join(rejected)}});
  }
  return pairs;
}

// A BPE tokenizer trained on the prompts and replies of preference_pairs(300, 7) in `dir`, and a
// random llama_micro model (block size 96, seed 0) saved with it as the model directory dir/<name>.
inline std::filesystem::path preference_model_dir(const std::filesystem::path& dir, const std::string& name) {
  std::string corpus;
  for (const auto& p : preference_pairs(300, 7))
    corpus += p["prompt"].get<std::string>() + " " + p["chosen"].get<std::string>() + " " +
              p["rejected"].get<std::string>() + "\n";
  const Tokenizer tokenizer = train_tiny_tokenizer(dir, corpus, {/*vocab_size=*/300});
  return save_random_lm(dir / name, preset("llama_micro").block_size(96), tokenizer, /*seed=*/0);
}

// The on-policy stages' world (ppo, grpo): every sentence "subject verb object." over six of each,
// the last object `last_object` (what a suite's reward looks for), a BPE tokenizer (vocab 320)
// trained on them in `dir`, and a random llama_micro policy (seed 7) saved as dir/policy.
struct OnPolicyWorld {
  std::vector<std::string> subjects, verbs, objects;
  std::filesystem::path policy;
};
inline OnPolicyWorld on_policy_world(const std::filesystem::path& dir, const std::string& last_object) {
  OnPolicyWorld w;
  w.subjects = {"the cat", "a dog", "my friend", "the river", "some people", "every tree"};
  w.verbs = {"sees", "likes", "remembers", "follows", "answers", "greets"};
  w.objects = {"the sea", "a green field", "seven trees", "the evening", "her sister", last_object};
  std::string corpus;
  for (const auto& s : w.subjects)
    for (const auto& v : w.verbs)
      for (const auto& o : w.objects) corpus += s + " " + v + " " + o + ".\n";
  TinyTokenizer t;
  t.vocab_size = 320;
  t.num_threads = 1;
  t.file = "tokenizer.model";
  const Tokenizer tokenizer = train_tiny_tokenizer(dir, corpus, t);
  w.policy = save_random_lm(dir / "policy", preset("llama_micro"), tokenizer, /*seed=*/7);
  return w;
}

// Records as JSONL text, one per line.
inline std::string jsonl(const std::vector<nlohmann::json>& records) {
  std::string out;
  for (const auto& r : records) out += r.dump() + "\n";
  return out;
}

}  // namespace nurture::testing
