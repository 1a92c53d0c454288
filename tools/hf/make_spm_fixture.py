"""Writes tests/fixtures/hf/tokenizers/llama2_spm/ (run through tools/hf_reference.sh:
`tools/hf_reference.sh make_spm_fixture.py`): a Llama 2-style SentencePiece tokenizer trained here
with the `sentencepiece` library (BPE, byte fallback, a dummy prefix, digits split, <unk>/<s>/</s> at
0/1/2 as Llama 2 has them), its tokenizer_config.json (LlamaTokenizer, add_bos_token), and
cases.json: what transformers' AutoTokenizer makes of the texts of make_tokenizer_fixtures.py
with it — ids with add_special_tokens (the BOS the config asks for) and without, and the decoded
text — for the C++ tests to compare nurture's SentencePiece tokenizer against.
"""
import io
import json
import os
import sys

import sentencepiece as spm
import transformers

sys.path.insert(0, os.path.dirname(__file__))
from make_tokenizer_fixtures import CORPUS, corpus_lines, texts  # noqa: E402

OUT = os.path.join("tests", "fixtures", "hf", "tokenizers", "llama2_spm")


def main():
    os.makedirs(OUT, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_lines()), model_writer=model, vocab_size=600, model_type="bpe",
        byte_fallback=True, split_digits=True, add_dummy_prefix=True, remove_extra_whitespaces=False,
        normalization_rule_name="identity", character_coverage=0.9995, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        allow_whitespace_only_pieces=True, num_threads=1, seed_sentencepiece_size=100000, minloglevel=2)
    with open(os.path.join(OUT, "tokenizer.model"), "wb") as f:
        f.write(model.getvalue())
    config = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
              "pad_token": None, "add_bos_token": True, "add_eos_token": False, "legacy": False,
              "model_max_length": 4096}
    with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    tok = transformers.AutoTokenizer.from_pretrained(OUT)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(OUT, "tokenizer.model"))
    cases, same_as_spm = [], 0
    for text in texts():
        ids = tok.encode(text, add_special_tokens=False)
        same_as_spm += ids == sp.encode(text)
        cases.append({"text": text, "ids": ids, "ids_with_bos": tok.encode(text, add_special_tokens=True),
                      "decoded": tok.decode(ids)})
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"tokenizer_class": type(tok).__name__, "vocab_size": len(tok), "cases": cases}, f,
                  indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"[hf] wrote {OUT}: {type(tok).__name__}, {len(cases)} texts, "
          f"{same_as_spm} tokenized as sentencepiece itself does")


if __name__ == "__main__":
    main()
