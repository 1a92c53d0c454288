#!/usr/bin/env bash
# Runs a lifecycle recipe over several seeds and prints one row per seed of the figures the
# quickstart test asserts, then the smallest margin each assertion had over the seeds
# (docs/lifecycle_seeds.md holds the tables this made, and says why each of the test's thresholds
# is what it is).
#
#   tools/seed_sweep.sh recipes/quickstart_small.yaml 5 runs/sweep-small
#   JOBS=2 tools/seed_sweep.sh recipes/quickstart.yaml 5 runs/sweep-default [--set KEY=VALUE ...]
#   tools/seed_sweep.sh --table runs/sweep-small      # the table again, from finished runs
#
# JOBS runs that many seeds at once, each on nproc / JOBS threads (default 1 job on every core).
# A seed whose summary.json exists is not run again. Needs python3 for the table.
set -euo pipefail
cd "$(dirname "$0")/.."
nurture_bin=${NURTURE:-build/nurture}
if [ "${1:-}" = "--table" ]; then
  exec python3 tools/seed_table.py "$2"
fi
if [ $# -lt 3 ]; then
  sed -n '2,12p' "$0" >&2
  exit 2
fi
recipe=$1
seeds=$2
out=$3
shift 3
jobs=${JOBS:-1}
threads=$(( $(nproc) / jobs > 0 ? $(nproc) / jobs : 1 ))
mkdir -p "$out"

run_seed() {
  local seed=$1 start
  shift
  [ -f "$out/seed-$seed/summary.json" ] && return 0
  start=$(date +%s)
  if ! "$nurture_bin" run "$recipe" --set seed="$seed" --set threads="$threads" --output "$out/seed-$seed" "$@" \
      > "$out/seed-$seed.log" 2>&1; then
    echo "[sweep] seed $seed failed: see $out/seed-$seed.log" >&2
    return 1
  fi
  echo "[sweep] seed $seed: $(( $(date +%s) - start )) s"
}

status=0
for ((first = 0; first < seeds; first += jobs)); do
  pids=()
  for ((seed = first; seed < seeds && seed < first + jobs; seed++)); do
    run_seed "$seed" "$@" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
done
[ "$status" -eq 0 ] || exit 1
python3 tools/seed_table.py "$out"
