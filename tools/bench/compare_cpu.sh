#!/usr/bin/env bash
# nurture against its PyTorch peer on CPU, in one run: the same GPT-2-shaped model (4 layers,
# 4 heads, width 256, context 256, vocab 4096, batch 8, fp32), the same optimizer and threads.
# Runs each `rounds` times, alternating, and prints the median tokens/s of each and the ratio.
# The peer runs twice: as users run it, and with OMP_WAIT_POLICY=PASSIVE (what nurture sets for
# itself; it matters on small machines where LibTorch's and OpenBLAS's thread pools share cores).
#
#   tools/bench/compare_cpu.sh [rounds=3] [threads=2]
# Needs Debian's python3-torch (the same LibTorch as libtorch-dev) and build/nurture ($NURTURE
# names another build, e.g. build-trixie/nurture inside tools/check_debian_suite.sh's root).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
threads=${2:-2}
shape=(--layers 4 --heads 4 --width 256 --ctx 256 --vocab 4096 --batch 8)
steps=(--steps 12 --warmup 3)
nurture_args=(--preset gpt2_tiny --set n_layer=4 --set n_head=4 --set n_embd=256 --set vocab_size=4096
              --set block_size=256 --batch 8 --ctx 256 "${steps[@]}" --threads "$threads" --json)
python=${PYTHON:-/usr/bin/python3}
nurture_bin=${NURTURE:-build/nurture}
field() { "$python" -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }

declare -a nurture peer peer_passive
for ((r = 0; r < rounds; r++)); do
  nurture+=("$("$nurture_bin" bench "${nurture_args[@]}" | field tokens_per_s)")
  peer+=("$(env -u OMP_WAIT_POLICY "$python" tools/bench/peer_train.py "${shape[@]}" "${steps[@]}" --threads "$threads" | field tokens_per_s)")
  peer_passive+=("$(OMP_WAIT_POLICY=PASSIVE "$python" tools/bench/peer_train.py "${shape[@]}" "${steps[@]}" --threads "$threads" | field tokens_per_s)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }
n=$(median "${nurture[@]}"); p=$(median "${peer[@]}"); q=$(median "${peer_passive[@]}")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); threads $threads; $rounds rounds"
printf '%-44s %10s %8s\n' "" "tokens/s" "ratio"
printf '%-44s %10.0f %8s\n' "nurture bench" "$n" "1.00"
printf '%-44s %10.0f %8.2f\n' "PyTorch peer (eager, default environment)" "$p" "$(echo "$n / $p" | bc -l)"
printf '%-44s %10.0f %8.2f\n' "PyTorch peer (eager, OMP_WAIT_POLICY=PASSIVE)" "$q" "$(echo "$n / $q" | bc -l)"
echo "(ratio = nurture's tokens/s over the peer's; each row the median of $rounds runs: ${nurture[*]} | ${peer[*]} | ${peer_passive[*]})"
