"""Loads nurture's exported Hugging Face directories with transformers and compares log-probs with
nurture's own (run through tools/hf_round_trip.sh, which writes them first).

DIR holds <name>/model/ (what `nurture export --format hf` or a training stage wrote),
<name>/ids.json (fixed token id sequences) and <name>/nurture.jsonl (`nurture score --per-token`
of those ids: one {"token_logprobs"} per sequence; for a reward model {"reward"}). For each name this
loads model/ with AutoModelForCausalLM (AutoModelForSequenceClassification for a reward model) in
fp32, computes the same figures and prints the worst absolute difference; with tokenizer files in
model/ it also loads AutoTokenizer and checks that it gives back the ids nurture encoded
(<name>/encoded.json: {"texts", "ids"}). Exits 1 when a difference exceeds 1e-4.
"""
import json
import os
import sys

import torch
import transformers

TOLERANCE = 1e-4


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def check(root, name):
    base = os.path.join(root, name)
    model_dir = os.path.join(base, "model")
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    reward = any(a.endswith("ForSequenceClassification") for a in config.get("architectures", []))
    cls = transformers.AutoModelForSequenceClassification if reward else transformers.AutoModelForCausalLM
    model = cls.from_pretrained(model_dir, dtype=torch.float32).eval()
    with open(os.path.join(base, "ids.json")) as f:
        sequences = json.load(f)
    ours = read_jsonl(os.path.join(base, "nurture.jsonl"))
    worst = 0.0
    with torch.no_grad():
        for ids, row in zip(sequences, ours):
            x = torch.tensor([ids])
            if reward:
                theirs = model(input_ids=x).logits[0, 0].item()
                worst = max(worst, abs(theirs - row["reward"]))
                continue
            logprobs = torch.log_softmax(model(input_ids=x).logits[0, :-1], -1).gather(-1, x[0, 1:, None])[:, 0]
            worst = max(worst, (logprobs - torch.tensor(row["token_logprobs"])).abs().max().item())
    line = f"{name}: {config['model_type']} {'reward' if reward else 'lm'} {config.get('dtype') or config.get('torch_dtype')}, " \
           f"{len(sequences)} sequences, worst {'reward' if reward else 'log-prob'} difference {worst:.2e}"
    ok = worst <= TOLERANCE and len(ours) == len(sequences)
    encoded = os.path.join(base, "encoded.json")
    if os.path.exists(encoded) and os.path.exists(os.path.join(model_dir, "tokenizer.json")):
        with open(encoded) as f:
            cases = json.load(f)
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
        same = sum(tokenizer.encode(t, add_special_tokens=False) == i for t, i in zip(cases["texts"], cases["ids"]))
        line += f"; AutoTokenizer: {same}/{len(cases['texts'])} texts give nurture's ids"
        ok = ok and same == len(cases["texts"])
    print(("ok    " if ok else "FAIL  ") + line, flush=True)
    return ok


def main():
    root = sys.argv[1]
    print("[round trip] transformers", transformers.__version__, "torch", torch.__version__)
    results = [check(root, name) for name in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, name, "model"))]
    print(f"[round trip] {sum(results)}/{len(results)} directories within {TOLERANCE:g}")
    sys.exit(0 if results and all(results) else 1)


if __name__ == "__main__":
    main()
