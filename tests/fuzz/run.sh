#!/usr/bin/env bash
# Builds the fuzz targets (clang, libFuzzer + ASan + UBSan) and runs each for a few seconds from
# its seed corpus; any crash, sanitizer report or leak fails. New inputs go to a scratch copy, so
# the committed corpus stays as it is.
#   tests/fuzz/run.sh [SECONDS_PER_TARGET]     (default 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
build=${NURTURE_FUZZ_BUILD_DIR:-build-fuzz}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
[ -f "$build/CMakeCache.txt" ] || cmake -S tests/fuzz -B "$build" "${generator[@]}" -DCMAKE_CXX_COMPILER=clang++ >/dev/null
cmake --build "$build"
for target in recipe jsonl manifest tokenizer_json; do
  work="$build/corpus-$target"
  rm -rf "$work" && mkdir -p "$work"
  cp tests/fuzz/corpus/$target/* "$work/"
  echo "[fuzz] $target: ${seconds}s from $(ls tests/fuzz/corpus/$target | wc -l) seed inputs"
  status=0
  (cd "$build" && ./${target}_fuzz -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 \
      "corpus-$target" >"fuzz-$target.log" 2>&1) || status=$?
  grep -E "^stat::(number_of_executed_units|new_units_added)" "$build/fuzz-$target.log" | sed "s/^/[fuzz] $target: /"
  # libFuzzer exits non-zero, and writes crash-*/leak-*/timeout-* beside it, when an input fails.
  if [ "$status" -ne 0 ]; then
    grep -E "^(==|SUMMARY|ERROR|.*runtime error)" "$build/fuzz-$target.log" | head -20
    echo "[fuzz] $target: failed (exit $status); the input and the whole log are in $build"
    exit 1
  fi
done
echo "[fuzz] all targets ran clean"
