#!/usr/bin/env bash
# Builds nurture and runs its test suite against the LibTorch of another Debian release, on this
# machine, inside a minimal root of that release (debootstrap + chroot; needs root):
#
#   tools/check_debian_suite.sh trixie          # LibTorch 2.6, gcc 14, SentencePiece 0.2.0
#   tools/check_debian_suite.sh sid             # LibTorch 2.14 (C++20), gcc 16, SentencePiece 0.2.2
#   tools/check_debian_suite.sh trixie -R Ppo   # arguments after the suite go to ctest
#
# Debian 12's own LibTorch is 1.13; this is how code meant for 2.x is built and tested without a
# GPU machine (CUDA and NCCL paths excepted). The root lives in $NURTURE_SUITE_ROOT (default
# /var/tmp/nurture-<suite>) and is kept: a second run only builds what changed. The source tree is
# bind-mounted at its own path, so the build lands in build-<suite>/ beside build/. The
# sanitizer and fuzz tests are left out (they build with the host's toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."
source_dir=$(pwd)

suite=${1:?usage: tools/check_debian_suite.sh trixie|sid|<suite> [ctest arguments]}
shift
root=${NURTURE_SUITE_ROOT:-/var/tmp/nurture-$suite}
mirror=${NURTURE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" -eq 0 ] || { echo "error: needs root (debootstrap, chroot, mount)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "error: needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }

packages=(build-essential cmake ninja-build pkg-config procps
          libtorch-dev libgloo-dev libopenblas-dev
          libsentencepiece-dev sentencepiece libabsl-dev
          libyaml-cpp-dev libboost-program-options-dev nlohmann-json3-dev libssl-dev
          libgtest-dev libgmock-dev)

if [ ! -x "$root/usr/bin/apt-get" ]; then
  echo "[suite] debootstrap $suite into $root"
  debootstrap --variant=minbase "$suite" "$root" "$mirror" > "$root.debootstrap.log" 2>&1 ||
    { tail -5 "$root.debootstrap.log" >&2; exit 1; }
fi

mounted() { grep -q " $1 " /proc/mounts; }
mounted "$root/proc" || mount -t proc proc "$root/proc"
mounted "$root/dev" || mount --bind /dev "$root/dev"
mkdir -p "$root$source_dir"
mounted "$root$source_dir" || mount --bind "$source_dir" "$root$source_dir"
cp /etc/resolv.conf "$root/etc/resolv.conf"

in_root() { chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 bash -c "$1"; }
# A development suite's Release file can be past its Valid-Until on a mirror snapshot.
in_root "dpkg-query -W -f='\${Status}\n' ${packages[*]} 2>/dev/null | grep -c 'install ok installed' | grep -qx ${#packages[@]}" || {
  echo "[suite] installing the build dependencies from $suite"
  in_root "apt-get -o Acquire::Check-Valid-Until=false update -qq &&
           apt-get install -y -qq --no-install-recommends ${packages[*]} > /tmp/nurture-apt.log 2>&1 ||
           { tail -20 /tmp/nurture-apt.log; exit 1; }"
}
in_root "echo \"[suite] \$(dpkg-query -W -f='libtorch-dev \${Version}' libtorch-dev), \$(g++ --version | head -1)\""

build_dir=build-$suite
in_root "cd '$source_dir' && { [ -f $build_dir/CMakeCache.txt ] || cmake -S . -B $build_dir -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null; } &&
         cmake --build $build_dir"
ctest_args=("$@")
[ ${#ctest_args[@]} -gt 0 ] || ctest_args=(-j "$(nproc)" -E 'Sanitizers|Fuzz')
quoted=$(printf "'%s' " "${ctest_args[@]}")
in_root "cd '$source_dir/$build_dir' && ctest --output-on-failure $quoted"
