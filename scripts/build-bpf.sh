#!/usr/bin/env bash
# Builds the eBPF capture programs: each bpf/*.bpf.c is compiled on its own,
# then statically linked into build/bpf/meshlet.bpf.o so every program shares
# one set of maps (the maps are __weak in their headers; the linker keeps one).
# Each bpf/iter/*.bpf.c becomes an object of its own, build/bpf/<name>.bpf.o:
# `bpftool iter pin` loads a whole object and attaches its first program.
# Skips the work when the sources, this script and the toolchain are unchanged.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/bpf"
out="${MESHLET_BPF_OUT:-$root/build/bpf}"
clang="${CLANG:-clang}"
bpftool="${BPFTOOL:-bpftool}"

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "build-bpf: '$1' not found; install $2 (Debian/Ubuntu: apt-get install $2)" >&2
    exit 1
  fi
}
need "$clang" clang
need "$bpftool" bpftool
need flock util-linux
if [ ! -f /usr/include/bpf/bpf_helpers.h ]; then
  echo "build-bpf: libbpf headers not found; install libbpf-dev" >&2
  exit 1
fi

# asm/types.h lives in the multiarch include dir, which -target bpf does not search.
multiarch="$(uname -m)-linux-gnu"
[ "$multiarch" = "arm64-linux-gnu" ] && multiarch="aarch64-linux-gnu"

mkdir -p "$out"
# Concurrent builds (parallel test files) take turns.
exec 9>"$out/.lock"
flock 9

stamp="$out/.stamp"
hash="$( { cat "$src"/*.h "$src"/*.bpf.c "$src"/iter/*.bpf.c "${BASH_SOURCE[0]}"; "$clang" --version; "$bpftool" version; } | sha256sum | cut -d' ' -f1)"
if [ -f "$out/meshlet.bpf.o" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$hash" ]; then
  echo "build-bpf: up to date ($out/meshlet.bpf.o)"
  exit 0
fi

mkdir -p "$out/parts"
rm -f "$out"/parts/*.o "$stamp"
for file in "$src"/*.bpf.c; do
  name="$(basename "$file" .c)"
  "$clang" -target bpf -O2 -g -Wall -Werror \
    -idirafter "/usr/include/$multiarch" \
    -c "$file" -o "$out/parts/$name.o"
done
# Link into a temporary name so a failed link never leaves a stale object behind.
"$bpftool" gen object "$out/meshlet.bpf.o.tmp" "$out"/parts/*.o
mv "$out/meshlet.bpf.o.tmp" "$out/meshlet.bpf.o"
for file in "$src"/iter/*.bpf.c; do
  name="$(basename "$file" .c)"
  "$clang" -target bpf -O2 -g -Wall -Werror \
    -idirafter "/usr/include/$multiarch" \
    -c "$file" -o "$out/$name.o.tmp"
  mv "$out/$name.o.tmp" "$out/$name.o"
done
echo "$hash" > "$stamp"
echo "build-bpf: built $out/meshlet.bpf.o"
