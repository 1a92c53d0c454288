"""Writes tests/fixtures/hf/tokenizers/ with the real Hugging Face `tokenizers` library (run through
tools/hf_reference.sh: `tools/hf_reference.sh make_tokenizer_fixtures.py`).

Each <name>/tokenizer.json is a small byte-level BPE tokenizer trained here on CORPUS (the Hub is
out of reach, so nothing is downloaded), and <name>/cases.json what the library makes of TEXTS with
it, for tests/modules/text/byte_level_bpe_test.cpp to compare ByteLevelBpe against:

  gpt2     GPT-2: ByteLevel pre-tokenizer with its regex, <|endoftext|>; merges written in the old
           "a b" string format; a few extra vocab entries no merge reaches (ignore_merges false, so
           they never come out whole); non-special added tokens with lstrip/rstrip/single_word.
  llama3   Llama-3: Split(regex, isolated) + ByteLevel(use_regex=false), ignore_merges true (the
           same extra entries do come out whole), TemplateProcessing adding <|begin_of_text|>.
  qwen2    Qwen2: NFC, Split(regex with \\p{N} single digits) + ByteLevel, ChatML specials, a
           normalized added token whose content is not NFC.
  variants the gpt2 model under the other supported pieces: Sequence of NFC, WhitespaceSplit,
           Digits, Split with every behaviour and invert, ByteLevel(add_prefix_space=true).

cases.json: {"vocab_size", "prefix_ids" (what the post-processor adds before a single sequence),
"suffix_ids", "cases": [{"text", "ids", "ids_no_special", "decoded", "decoded_skip_special"}]}.
  ids                   tokenizer.encode(text, add_special_tokens=False).ids (special tokens in the
                        text match: ByteLevelBpe::encode(text, allow_special=true))
  ids_no_special        the same with tokenizer.encode_special_tokens = True, the library's switch
                        (0.23) that leaves added tokens with special=true unmatched, as ordinary text
                        (ByteLevelBpe::encode(text, allow_special=false)); non-special ones still match
  decoded               tokenizer.decode(ids, skip_special_tokens=False)
  decoded_skip_special  tokenizer.decode(ids, skip_special_tokens=True)
It also writes modules/text/unicode_nfc_data.h, the Unicode tables of ByteLevelBpe's NFC (canonical
decompositions, which of them compose back, combining classes), from this Python's unicodedata.
Everything is seeded and the trainer is deterministic: the output is the same on every run.
"""
import json
import os
import random

import unicodedata

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

OUT = os.path.join("tests", "fixtures", "hf", "tokenizers")

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = """\
The quick brown fox jumps over the lazy dog. The dog didn't care; it's a lazy dog, isn't it?
I'm sure they'll say we've done it, and you'd agree. THE QUICK BROWN FOX! Don't panic.
Tokenization splits text into pieces: words, numbers like 1234567890 and 3.14159, and symbols.
In 2024 there were 365 days... or was it 366? Call 555-0100 or +1 (800) 123-4567.
안녕하세요, 세계! 한국어 텍스트를 토큰화합니다. 서울은 대한민국의 수도입니다.
오늘 날씨가 정말 좋네요. 우리는 함께 공부합니다.
你好，世界！这是一个中文句子。我们正在学习分词。北京是中国的首都。
今天天气很好。机器学习和自然语言处理。
こんにちは世界。日本語のテキストです。
Emoji: 😀 😃 😄 👍🏽 👨‍👩‍👧‍👦 🇰🇷 ❤️ 🎉🎉🎉 ✨
def encode(self, text: str) -> list[int]:
    return [self.vocab[t] for t in text.split()]

for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }
if x == 42 and y != 0:\n\treturn x // y
    indented    with    spaces\t\ttabs
Windows line\r\nendings\r\n and trailing spaces   \n\n\n
café naïve résumé coöperate Ångström façade
Здравствуй, мир! Привет. Ελληνικά κείμενα. مرحبا بالعالم
<html><body class="main">Hello &amp; welcome</body></html>
{"key": "value", "list": [1, 2, 3], "nested": {"a": null}}
"""


def corpus_lines():
    lines = CORPUS.splitlines(keepends=True)
    rng = random.Random(1234)
    out = []
    for _ in range(40):
        shuffled = lines[:]
        rng.shuffle(shuffled)
        out.append("".join(shuffled))
    return out


def texts():
    """The strings every tokenizer encodes: the hard cases by hand, then seeded random mixtures."""
    fixed = [
        "", " ", "  ", "\t", "\n", "\r\n", " \n ", "hello", " hello", "hello ", "  hello  world  ",
        "Hello, world!", "The quick brown fox jumps over the lazy dog.",
        "I'M don't you'll WE'VE she'd it's THEY'RE 'S 's ' s",
        "안녕하세요, 세계! 한국어 텍스트", "你好，世界！机器学习", "こんにちは世界",
        "mixed 한국어 and 中文 and English123abc",
        "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇰🇷🇯🇵", "❤️‍🔥", "a😀b", "emoji 👍🏽👍🏿 run 🎉🎉🎉",
        "1234567890123", "3.14159", "12 345 6789", "٣٤٥ ١٢", "x1y22z333w4444",
        "tabs\t\tand\tspaces    and\nnewlines\n\n\nend", "a\r\nb\r\n\r\nc", "\n\n\n", "   \n\t  \n",
        "trailing spaces   ", "   leading spaces", "line one\n  line two\n\tline three",
        "e\u0301", "cafe\u0301 na\u0131\u0308ve", "\u00e9", "A\u030a", "\u1100\u1161\u11a8",
        "\u212b", "ﬁ ligature", "\uff21\uff22 fullwidth",
        "<|endoftext|>", "a<|endoftext|>b", "text <|endoftext|> more", "<|im_start|>user\nhi<|im_end|>\n",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
        "<|endoftext|><|endoftext|>", "<|im_start|", "<|endoftext", "|>", "<||>",
        "<tool> call <tool>x", "  <tool>  spaced  ", "wordy", "a wordy b", "wordyx", "xwordy", "_wordy",
        "Naïve Cafe\u0301 cafe\u0301", "extraword", " extraword", "supercalifragilistic", "1234",
        "\u0000\u0001\u001f\u007f", "\u0085\u00a0\u1680\u180e\u2000\u2028\u2029\u202f\u205f\u3000",
        "\u200b\u200c\u200d\ufeff", "a\u00a0b", "x\u2003y", "\ud7ff\ue000\uffff", "\U0001f600\U0010ffff",
        "\u0300 starts with a combining mark", "Ωmega ſ 'ſ 'K 'k", "ÀÉÎÕÜ àéîõü",
        "def f(x):\n    return x ** 2  # square\n", "if (a && b) { return c; } // done",
        "https://example.com/path?q=1&r=two#frag", "user@example.com", "$100.00 -> €85,50",
        "--==**!!??..,,;;", "...", "'''", "\"quoted\"", "a-b_c.d,e;f:g!h?i",
        "Ｔｈｅ　ｅｎｄ", "end.",
    ]
    long_text = ("The quick brown fox 한국어 1234567 😀 jumps\n\t over  " * 30)[:1500]
    fixed.append(long_text)
    fixed.append(" " * 1200 + "x")
    fixed.append("ab" * 600)
    rng = random.Random(20240611)
    pieces = ["a", "b", "the", " ", "  ", "\t", "\n", "\r\n", "1", "22", "333", "한", "국", "中", "😀",
              "👍🏽", "\u200d", "e\u0301", "'s", "'T", "<|endoftext|>", "<|im_start|>", "<|eot_id|>",
              "<tool>", "wordy", ",", ".", "!", "-", "_", "Ω", "ſ", "\u00a0", "\u3000", "extraword", "x"]
    for _ in range(60):
        fixed.append("".join(rng.choice(pieces) for _ in range(rng.randint(1, 25))))
    return fixed


def train(pre_tokenizer, specials, normalizer=None, vocab_size=900, ignore_merges=False):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    return tok


EXTRA_VOCAB = ["extraword", "Ġextraword", "supercalifragilistic", "1234"]


def add_extra_vocab(tok):
    """Model vocab entries that no merge builds: only ignore_merges emits them whole."""
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    next_id = max(max(vocab.values()), max((t["id"] for t in data["added_tokens"]), default=0)) + 1
    for word in EXTRA_VOCAB:
        if word not in vocab:
            vocab[word] = next_id
            next_id += 1
    return Tokenizer.from_str(json.dumps(data))


def save(name, tok, rewrite=None):
    out = os.path.join(OUT, name)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "tokenizer.json")
    data = json.loads(tok.to_str())
    if rewrite is not None:
        rewrite(data)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    tok = Tokenizer.from_file(path)  # what the cases come from is exactly the file written
    write_cases(out, tok)


def write_cases(out, tok):
    bos = tok.encode("", add_special_tokens=True).ids
    cases = []
    for text in texts():
        tok.encode_special_tokens = False
        ids = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = True
        ids_no_special = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        cases.append({"text": text, "ids": ids, "ids_no_special": ids_no_special,
                      "decoded": tok.decode(ids, skip_special_tokens=False),
                      "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)})
    # With an empty input the template is all there is: its specials are the prefix (none of the
    # templates here put anything after $A).
    reference = {"tokenizers_version": tokenizers.__version__,
                 "vocab_size": tok.get_vocab_size(with_added_tokens=True),
                 "prefix_ids": bos, "suffix_ids": [], "cases": cases}
    with open(os.path.join(out, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(reference, f, ensure_ascii=False, indent=0)
        f.write("\n")


def merges_as_strings(data):
    data["model"]["merges"] = [" ".join(pair) for pair in data["model"]["merges"]]


def gpt2():
    tok = train(pre_tokenizers.ByteLevel(add_prefix_space=False), ["<|endoftext|>"])
    tok = add_extra_vocab(tok)
    tok.add_tokens([AddedToken("<tool>", lstrip=True, rstrip=True, normalized=False),
                    AddedToken("wordy", single_word=True)])
    save("gpt2", tok, rewrite=merges_as_strings)
    return tok


def llama3():
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = train(pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_PATTERN), "isolated", invert=False),
                                         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
                specials, ignore_merges=True)
    tok = add_extra_vocab(tok)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    save("llama3", tok)


def qwen2():
    tok = train(pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_PATTERN), "isolated", invert=False),
                                         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
                ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], normalizer=normalizers.NFC())
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # Normalized (matched after NFC): the content "Cafe\u0301" matches the text's "Café".
    tok.add_tokens([AddedToken("Cafe\u0301", normalized=True), AddedToken("<tool>", normalized=False)])
    save("qwen2", tok)


def variants(base):
    tok = Tokenizer.from_str(base.to_str())
    tok.normalizer = normalizers.Sequence([normalizers.NFC()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(r"[,;]"), "removed"),
        pre_tokenizers.Split("-", "merged_with_next"),
        pre_tokenizers.Split(Regex(r"[!?]"), "merged_with_previous"),
        pre_tokenizers.Split(Regex(r"\p{L}"), "contiguous"),
        pre_tokenizers.Split(Regex(r"_"), "isolated", invert=True),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
    ])
    tok.add_special_tokens([AddedToken("<|im_start|>", lstrip=True, rstrip=False)])
    save("variants", tok)


def nfc_tables():
    """modules/text/unicode_nfc_data.h: what NFC needs, Hangul syllables aside (they are computed)."""
    decompositions, classes = [], []
    for cp in range(0x110000):
        ch = chr(cp)
        ccc = unicodedata.combining(ch)
        if ccc:
            if classes and classes[-1][1] == cp - 1 and classes[-1][2] == ccc:
                classes[-1][1] = cp
            else:
                classes.append([cp, cp, ccc])
        d = unicodedata.decomposition(ch)
        if not d or d.startswith("<") or 0xAC00 <= cp <= 0xD7A3:
            continue
        parts = [int(x, 16) for x in d.split()]
        assert len(parts) in (1, 2), (hex(cp), d)
        composes = len(parts) == 2 and unicodedata.normalize("NFC", ch) == ch
        decompositions.append((cp, parts[0], parts[1] if len(parts) == 2 else 0, int(composes)))
    # The fast path of nfc(): below U+0300 nothing changes and nothing combines.
    assert all(unicodedata.normalize("NFC", chr(c)) == chr(c) and not unicodedata.combining(chr(c)) for c in range(0x300))
    assert all(d[2] >= 0x300 for d in decompositions if d[3])
    lines = [
        "// Generated by tools/hf/make_tokenizer_fixtures.py from Python's unicodedata",
        f"// (Unicode {unicodedata.unidata_version}); do not edit.",
        "// The data of NFC (modules/text/byte_level_bpe.cpp): every canonical decomposition {code point,",
        "// first, second (0: a singleton), composes (1: a primary composite, which NFC composes back)},",
        "// sorted by code point, and the canonical combining classes as runs {first, last, class}.",
        "// Hangul syllables are left out: they are decomposed and composed arithmetically.",
        "#pragma once",
        "#include <cstdint>",
        "",
        "namespace nurture::unicode_data {",
        "",
        "struct Decomposition {",
        "  uint32_t code_point, first, second;",
        "  uint8_t composes;",
        "};",
        "struct CombiningClassRun {",
        "  uint32_t first, last;",
        "  uint8_t combining_class;",
        "};",
        "",
        f"inline constexpr const char* kUnicodeVersion = \"{unicodedata.unidata_version}\";",
        "",
        "inline constexpr Decomposition kDecompositions[] = {",
    ]
    row = []
    for d in decompositions:
        row.append("{0x%X, 0x%X, 0x%X, %d}," % d)
        if len(row) == 3:
            lines.append("    " + " ".join(row))
            row = []
    if row:
        lines.append("    " + " ".join(row))
    lines += ["};", "", "inline constexpr CombiningClassRun kCombiningClasses[] = {"]
    row = []
    for c in classes:
        row.append("{0x%X, 0x%X, %d}," % tuple(c))
        if len(row) == 3:
            lines.append("    " + " ".join(row))
            row = []
    if row:
        lines.append("    " + " ".join(row))
    lines += ["};", "", "}  // namespace nurture::unicode_data", ""]
    with open(os.path.join("modules", "text", "unicode_nfc_data.h"), "w") as f:
        f.write("\n".join(lines))


def main():
    os.makedirs(OUT, exist_ok=True)
    nfc_tables()
    base = gpt2()
    llama3()
    qwen2()
    variants(base)
    print(f"[hf] wrote {OUT} with tokenizers {tokenizers.__version__}")


if __name__ == "__main__":
    main()
