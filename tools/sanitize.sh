#!/usr/bin/env bash
# Builds nurture and its test suite with AddressSanitizer and UndefinedBehaviorSanitizer (into
# build/sanitize, or $NURTURE_SANITIZE_BUILD_DIR) and runs the suite there. Any report, from the
# test binary or from a `nurture` it starts, fails; ASan's are written to reports/ in the build
# directory and printed. Leaks are checked at the exit of the test binary's processes (which run
# most pipelines in-process), not of each `nurture` (see tools/nurture.cpp).
#
#   tools/sanitize.sh                                # build, then every unit test
#   tools/sanitize.sh --gtest_filter='Tokenizer*'    # extra arguments go to the test binary
#
# The suite runs as one process per core, each taking a share of the tests (GoogleTest's
# sharding), not one process per test as under ctest: a sanitized process takes about two seconds
# to start and to check for leaks at exit, which over the whole suite costs more than the tests.
#
# The integration suites (tests/integration/: whole runs of `nurture`, the quickstarts among them)
# are left out: they are minutes of LibTorch kernels, which are not instrumented, in processes that
# do not check for leaks, and every stage they run also runs in-process in its own unit tests.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${NURTURE_SANITIZE_BUILD_DIR:-build/sanitize}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f "$build/CMakeCache.txt" ]; then
  # Built against what the main tree found (another LibTorch, unpacked dependencies), when
  # $NURTURE_SANITIZE_LIKE names it (the ctest test does), plus $NURTURE_CMAKE_ARGS.
  like=()
  if [ -n "${NURTURE_SANITIZE_LIKE:-}" ] && [ -f "$NURTURE_SANITIZE_LIKE/CMakeCache.txt" ]; then
    for key in Torch_DIR CMAKE_PREFIX_PATH NURTURE_DEPS_PREFIX; do
      value=$(sed -n "s/^$key:[A-Z]*=//p" "$NURTURE_SANITIZE_LIKE/CMakeCache.txt")
      if [ -n "$value" ]; then like+=("-D$key=$value"); fi
    done
  fi
  # shellcheck disable=SC2086
  cmake -S . -B "$build" "${generator[@]}" "${like[@]}" -DNURTURE_SANITIZE=address,undefined \
        -DCMAKE_BUILD_TYPE=Sanitize -DCMAKE_CXX_FLAGS_SANITIZE="-O1 -g1" ${NURTURE_CMAKE_ARGS:-} >/dev/null
fi
cmake --build "$build"
build=$(cd "$build" && pwd)

reports=$build/reports
rm -rf "$reports" "$build"/shard-*.log && mkdir -p "$reports"
# exitcode=86: a process that a sanitizer stopped exits with a status no test expects. (gcc's
# UBSan runtime, beside ASan's, prints its reports on stderr whatever log_path says: a test
# binary's end up in its shard's log, searched below; a nurture's make it exit 86.)
# protect_shadow_gap=0: the CUDA driver maps memory where ASan would otherwise forbid it.
export ASAN_OPTIONS="log_path=$reports/asan:exitcode=86:protect_shadow_gap=0:check_initialization_order=1:strict_init_order=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="log_path=$reports/ubsan:exitcode=86:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# What ctest gives each test (tests/CMakeLists.txt).
export NURTURE_BIN=$build/nurture OMP_WAIT_POLICY=passive

# The integration suites, as tests/CMakeLists.txt names them for ctest's labels.
integration=$(sed -n 's/^set(NURTURE_INTEGRATION_SUITES "\(.*\)")$/\1/p' tests/CMakeLists.txt)
[ -n "$integration" ] || { echo "[sanitize] no NURTURE_INTEGRATION_SUITES in tests/CMakeLists.txt" >&2; exit 1; }
shards=$(nproc)
pids=()
for ((i = 0; i < shards; i++)); do
  GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i timeout 1500 "$build/nurture_tests" \
      --gtest_filter="-$integration" "$@" >"$build/shard-$((i + 1)).log" 2>&1 &
  pids+=($!)
done
failed=0
for ((i = 0; i < shards; i++)); do
  status=0
  wait "${pids[$i]}" || status=$?
  log=$build/shard-$((i + 1)).log
  summary=$(grep -E "^\[==========\] .* ran\." "$log" || true)
  echo "[sanitize] shard $((i + 1))/$shards: exit $status; ${summary#\[==========\] }"
  if [ "$status" -ne 0 ]; then
    failed=1
    tail -n 40 "$log"
    echo "[sanitize] shard $((i + 1)): the whole log is $log"
  fi
done
if grep -q "runtime error:" "$build"/shard-*.log; then
  grep -h -A8 "runtime error:" "$build"/shard-*.log | head -n 60
  echo "[sanitize] UndefinedBehaviorSanitizer reports in the shards' logs, above"
  failed=1
fi
if compgen -G "$reports/*" >/dev/null; then
  for report in "$reports"/*; do
    echo "[sanitize] ---- $report"
    head -n 60 "$report"
  done
  echo "[sanitize] $(ls "$reports" | wc -l) sanitizer report(s), above"
  exit 1
fi
[ "$failed" -eq 0 ] || exit 1
echo "[sanitize] the suite ran clean under ASan and UBSan"
