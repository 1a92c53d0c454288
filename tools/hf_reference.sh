#!/usr/bin/env bash
# Runs a script of tools/hf/ with the real Hugging Face libraries: Debian unstable's
# python3-transformers, -tokenizers, -safetensors, -sentencepiece and -torch, CPU only, inside a
# minimal root of that suite (debootstrap + chroot; needs root and Debian's archive):
#
#   tools/hf_reference.sh make_fixtures.py      # rewrites tests/fixtures/hf/ (committed: CI needs no Python)
#
# The root lives in $NURTURE_SUITE_ROOT (default /var/tmp/nurture-sid, the one
# tools/check_debian_suite.sh sid builds) and is kept. The source tree is bind-mounted at its own
# path; the script runs from the tree's root with its arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
source_dir=$(pwd)
script=${1:?usage: tools/hf_reference.sh <script in tools/hf/> [arguments]}
shift
[ -f "tools/hf/$script" ] || { echo "error: no tools/hf/$script" >&2; exit 2; }
root=${NURTURE_SUITE_ROOT:-/var/tmp/nurture-sid}
mirror=${NURTURE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" -eq 0 ] || { echo "error: needs root (debootstrap, chroot, mount)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "error: needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }

packages=(python3-transformers python3-tokenizers python3-safetensors python3-sentencepiece python3-torch
          python3-numpy python3-protobuf)  # protobuf: transformers reads a tokenizer.model with it
if [ ! -x "$root/usr/bin/apt-get" ]; then
  echo "[hf] debootstrap sid into $root"
  debootstrap --variant=minbase sid "$root" "$mirror" > "$root.debootstrap.log" 2>&1 ||
    { tail -5 "$root.debootstrap.log" >&2; exit 1; }
fi
mounted() { grep -q " $1 " /proc/mounts; }
mounted "$root/proc" || mount -t proc proc "$root/proc"
mounted "$root/dev" || mount --bind /dev "$root/dev"
mkdir -p "$root$source_dir"
mounted "$root$source_dir" || mount --bind "$source_dir" "$root$source_dir"
cp /etc/resolv.conf "$root/etc/resolv.conf"

in_root() { chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 HF_HUB_OFFLINE=1 bash -c "$1"; }
in_root "dpkg-query -W -f='\${Status}\n' ${packages[*]} 2>/dev/null | grep -c 'install ok installed' | grep -qx ${#packages[@]}" || {
  echo "[hf] installing the Hugging Face libraries from sid"
  # A development suite's Release file can be past its Valid-Until on a mirror snapshot.
  in_root "apt-get -o Acquire::Check-Valid-Until=false update -qq &&
           apt-get -o Acquire::Check-Valid-Until=false install -y -qq --no-install-recommends ${packages[*]} \
             > /tmp/nurture-apt.log 2>&1 || { tail -20 /tmp/nurture-apt.log; exit 1; }"
}
in_root "python3 -c 'import transformers, tokenizers, torch; print(\"[hf] transformers\", transformers.__version__, \"tokenizers\", tokenizers.__version__, \"torch\", torch.__version__)'"
quoted=$(printf "'%s' " "$@")
in_root "cd '$source_dir' && python3 tools/hf/$script $quoted"
