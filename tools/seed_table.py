#!/usr/bin/env python3
"""The seed table of a tools/seed_sweep.sh run: one row per seed of the quickstart's figures, then
the smallest margin each of the lifecycle's directions had over the seeds, beside what
tests/integration/quickstart_test.cpp asserts of it.

    python3 tools/seed_table.py runs/sweep-small
"""
import json
import pathlib
import sys

# (column, how to read it from a summary.json) in the order of the lifecycle.
COLUMNS = [
    ("val_loss", lambda s: s["stages"]["pretrain"]["val_loss"]),
    ("unigram", lambda s: s["stages"]["pretrain"]["unigram_entropy"]),
    ("rm_acc", lambda s: s["stages"]["rm"]["val_accuracy"]),
    ("em_pre", lambda s: s["cmp"]["pretrain"]["exact_match"]),
    ("em_sft", lambda s: s["cmp"]["sft"]["exact_match"]),
    ("em_ppo", lambda s: s["cmp"]["ppo"]["exact_match"]),
    ("r_pre", lambda s: s["cmp"]["pretrain"]["mean_reward"]),
    ("r_sft", lambda s: s["cmp"]["sft"]["mean_reward"]),
    ("r_ppo", lambda s: s["cmp"]["ppo"]["mean_reward"]),
    ("stop_pre", lambda s: s["cmp"]["pretrain"]["stopped_fraction"]),
    ("stop_sft", lambda s: s["cmp"]["sft"]["stopped_fraction"]),
    ("kl_ppo", lambda s: s["cmp"]["ppo"]["kl_to_reference"]),
    ("icl0", lambda s: s["cmp"]["pretrain"]["icl_0shot"]),
    ("icl3", lambda s: s["cmp"]["pretrain"]["icl_3shot"]),
]

# The lifecycle's directions, each as a margin (positive = the direction holds), and the threshold
# tests/integration/quickstart_test.cpp asserts for it (None: not asserted, because some seed had it
# near or below zero). A threshold sits well inside the smallest margin of the seeds
# (docs/lifecycle_seeds.md).
MARGINS = [
    ("1 - val_loss / unigram", 0.75, lambda s: 1 - s["stages"]["pretrain"]["val_loss"] /
     s["stages"]["pretrain"]["unigram_entropy"]),
    ("rm_acc - 0.5", 0.3, lambda s: s["stages"]["rm"]["val_accuracy"] - 0.5),
    ("em sft - pretrain", 0.1, lambda s: s["cmp"]["sft"]["exact_match"] - s["cmp"]["pretrain"]["exact_match"]),
    ("stopped_fraction sft - pretrain", None,
     lambda s: s["cmp"]["sft"]["stopped_fraction"] - s["cmp"]["pretrain"]["stopped_fraction"]),
    ("reward sft - pretrain", None, lambda s: s["cmp"]["sft"]["mean_reward"] - s["cmp"]["pretrain"]["mean_reward"]),
    ("reward ppo - sft", 1.0, lambda s: s["cmp"]["ppo"]["mean_reward"] - s["cmp"]["sft"]["mean_reward"]),
    ("em ppo - sft", 0.04, lambda s: s["cmp"]["ppo"]["exact_match"] - s["cmp"]["sft"]["exact_match"]),
    ("icl 3-shot - 0-shot", 0.3, lambda s: s["cmp"]["pretrain"]["icl_3shot"] - s["cmp"]["pretrain"]["icl_0shot"]),
]


def load(path):
    raw = json.loads(path.read_text())
    return {"stages": {st["name"]: st.get("metrics", {}) for st in raw["stages"]}, "cmp": raw["comparison"],
            "raw": raw}


def stderr_of(summary, model, metric):
    value = summary["cmp"][model].get(metric + "_stderr")
    return "" if value is None else f" ± {value:.2f}"


def main(out):
    runs = sorted(pathlib.Path(out).glob("seed-*/summary.json"), key=lambda p: int(p.parent.name[5:]))
    if not runs:
        sys.exit(f"{out}: no seed-*/summary.json")
    summaries = [(int(p.parent.name[5:]), load(p)) for p in runs]
    print("| seed | " + " | ".join(c for c, _ in COLUMNS) + " |")
    print("|---:|" + "---:|" * len(COLUMNS))
    for seed, s in summaries:
        cells = []
        for _, get in COLUMNS:
            try:
                cells.append(f"{get(s):.3f}")
            except KeyError:
                cells.append("-")
        print(f"| {seed} | " + " | ".join(cells) + " |")
    print()
    print("Standard errors over the held-out prompts (seed 0): exact match pretrain/sft/ppo"
          + "".join(stderr_of(summaries[0][1], m, "exact_match") for m in ("pretrain", "sft", "ppo"))
          + ", mean reward" + "".join(stderr_of(summaries[0][1], m, "mean_reward") for m in ("pretrain", "sft", "ppo")))
    print()
    print("| direction | smallest margin | seed | mean margin | the test asserts |")
    print("|---|---:|---:|---:|---:|")
    for name, threshold, get in MARGINS:
        values = []
        for seed, s in summaries:
            try:
                values.append((get(s), seed))
            except KeyError:
                pass
        if not values:
            continue
        low, seed = min(values)
        mean = sum(v for v, _ in values) / len(values)
        asserted = "not asserted" if threshold is None else f"> {threshold:g}"
        print(f"| {name} | {low:.3f} | {seed} | {mean:.3f} | {asserted} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
