// The tiny world the tests train on, built one way everywhere: a BPE tokenizer trained on a small
// corpus, and a randomly initialised model saved with it as a model directory (what a pretrain
// stage would have written). Each suite keeps its own corpus: what it asserts depends on it.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <string>

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

}  // namespace nurture::testing
