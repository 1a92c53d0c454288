#!/usr/bin/env bash
# Sets nurture up on Debian 12: installs the dependencies from Debian's packages (only those
# missing; needs root or sudo for that) and builds everything into build/. Safe to run again.
#
#   tools/setup.sh                  # deps + Release build into build/
#   NURTURE_BUILD_DIR=out tools/setup.sh
#   NURTURE_CMAKE_ARGS="-DNURTURE_DEPS_PREFIX=/opt/deps/usr" tools/setup.sh   # no apt (air-gapped)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libgloo-dev            # LibTorch 1.13 (CPU); c10d's headers include gloo's
  libopenblas-dev                     # without it LibTorch falls back to reference BLAS (~10x slower)
  libsentencepiece-dev sentencepiece  # tokenizer (isolated behind third_party/sentencepiece_shim)
  libyaml-cpp-dev                     # recipes
  libboost-program-options-dev        # the CLI
  nlohmann-json3-dev                  # JSON / JSONL
  libpcre2-dev                        # tokenizer.json's pre-tokenizer regexes (\p{L}, \p{N})
  libssl-dev                          # SHA-256 of checkpoint files (libcrypto)
  libgtest-dev libgmock-dev           # tests (GoogleTest and its matchers)
  clang libclang-rt-dev               # the fuzz targets (libFuzzer, ASan, UBSan)
)

if command -v dpkg-query >/dev/null && [ -z "${NURTURE_SKIP_APT:-}" ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "[setup] installing: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    echo "[setup] dependencies already installed"
  fi
fi

build_dir=${NURTURE_BUILD_DIR:-build}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  # shellcheck disable=SC2086
  cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release ${NURTURE_CMAKE_ARGS:-}
fi
cmake --build "$build_dir"
echo "[setup] built $build_dir/nurture"
