#!/usr/bin/env bash
# The round trip: nurture writes Hugging Face directories, transformers (Debian unstable's, in the
# root tools/hf_reference.sh builds) loads them and compares log-probs with nurture's.
#
#   tools/hf_round_trip.sh [build/nurture]        # needs root (chroot); writes build/hf_round_trip/
#
# What it exports, each into <work>/<name>/model/:
#   <arch>_via_nurture  every fixture of tests/fixtures/hf/models/ converted to nurture's format and
#                       back (nurture export twice), in fp32
#   <arch>_bf16         the same fixtures exported once with --dtype bf16
#   from_hf_sft         the model recipes/from_hf.yaml fine-tunes (a stage's own model/ directory,
#                       with its tokenizer.json, which AutoTokenizer must read as nurture does)
# and scores fixed id sequences with `nurture score --per-token` (rewards for the reward model).
# tools/hf/check_round_trip.py then prints, per directory, the worst difference (transformers and
# nurture both computing in fp32 from the same files; bf16 weights widened) and fails above 1e-4.
set -euo pipefail
cd "$(dirname "$0")/.."
nurture=$(realpath "${1:-build/nurture}")
work=build/hf_round_trip
rm -rf "$work" && mkdir -p "$work"
fixtures=tests/fixtures/hf/models

# Fixed sequences of ids below every fixture's vocabulary (the smallest has 96 rows).
python3 - "$work/ids.json" <<'PY'
import json, random, sys
rng = random.Random(11)
json.dump([[rng.randrange(96) for _ in range(n)] for n in (5, 17, 32)], open(sys.argv[1], "w"))
PY

score() {  # score <name>: nurture's figures for ids.json with <name>/model, computed in fp32
  local dir=$work/$1
  cp "$work/ids.json" "$dir/ids.json"
  python3 -c 'import json,sys; [print(json.dumps({"ids": s})) for s in json.load(open(sys.argv[1]))]' \
    "$dir/ids.json" > "$dir/input.jsonl"
  "$nurture" score --model "$dir/model" --input "$dir/input.jsonl" --per-token --dtype fp32 > "$dir/nurture.jsonl"
}

for arch in gpt2 llama mistral qwen2 qwen3 llama_reward qwen2_chat; do
  mkdir -p "$work/${arch}_via_nurture" "$work/${arch}_bf16"
  "$nurture" export --model "$fixtures/$arch" --output "$work/${arch}_via_nurture/nurture" --format nurture --dtype fp32
  "$nurture" export --model "$work/${arch}_via_nurture/nurture" --output "$work/${arch}_via_nurture/model" --format hf
  "$nurture" export --model "$fixtures/$arch" --output "$work/${arch}_bf16/model" --format hf --dtype bf16
  score "${arch}_via_nurture"
  score "${arch}_bf16"
done

# A model nurture trained: recipes/from_hf.yaml's fine-tune of the Qwen2 chat fixture.
"$nurture" run recipes/from_hf.yaml --output "$work/from_hf_run" > "$work/from_hf_run.log" 2>&1 ||
  { tail -20 "$work/from_hf_run.log"; exit 1; }
mkdir -p "$work/from_hf_sft"
cp -r "$work/from_hf_run/sft/model" "$work/from_hf_sft/model"
score from_hf_sft
texts=("Hello, how are you?" "안녕하세요, 세계! 12345" $'def f(x):\n    return x  # 😀' $'<|im_start|>user\nhi<|im_end|>')
python3 - "$work/from_hf_sft/encoded.json" "$nurture" "$work/from_hf_sft/model" "${texts[@]}" <<'PY'
import json, subprocess, sys
out, nurture, model, texts = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
ids = [[int(i) for i in subprocess.run([nurture, "tokenizer", "encode", "--model", model, "--special", "--text", t],
                                       check=True, capture_output=True, text=True).stdout.split()] for t in texts]
json.dump({"texts": texts, "ids": ids}, open(out, "w"), ensure_ascii=False)
PY

tools/hf_reference.sh check_round_trip.py "$work"
