#!/usr/bin/env bash
# Makes this machine ready to run meshlet (Debian/Ubuntu, as root). Idempotent:
# installs only what is missing, so `npm start` and `npm test` can always call it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "meshlet setup: run as root (it installs packages, loads BPF programs and builds network namespaces)" >&2
  exit 1
fi

# command → Debian package that provides it
declare -A packages=(
  [clang]=clang [llc]=llvm [bpftool]=bpftool [ip]=iproute2 [nft]=nftables [nsenter]=util-linux [setpriv]=util-linux [stdbuf]=coreutils [tini]=tini
  [curl]=curl [socat]=socat [tcpdump]=tcpdump [redis-server]=redis-server
  [redis-benchmark]=redis-tools [wrk]=wrk [hey]=hey [h2load]=nghttp2-client [haproxy]=haproxy [python3]=python3 [nginx]=nginx
)
missing=()
for cmd in "${!packages[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}")
done
[ -f /usr/include/bpf/bpf_helpers.h ] || missing+=(libbpf-dev)
# The e2e suites' gRPC client: a library for Debian's python3 (no command to
# look for; a python3 earlier on the PATH, e.g. pyenv's, does not see it).
/usr/bin/python3 -c 'import grpc' >/dev/null 2>&1 || missing+=(python3-grpcio)
if [ ${#missing[@]} -gt 0 ]; then
  echo "meshlet setup: installing ${missing[*]}"
  apt-get update -qq
  # Ubuntu ships bpftool in linux-tools, Debian as its own package.
  if [[ " ${missing[*]} " == *" bpftool "* ]] && ! apt-cache show bpftool >/dev/null 2>&1; then
    missing=("${missing[@]/bpftool/linux-tools-generic}")
  fi
  # Servers (redis, haproxy, nginx) are for sandbox pods and benchmarks only:
  # keep their packages from starting system-wide services while installing.
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' > "$guard" && chmod +x "$guard"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -z "$guard" ] || rm -f "$guard"
fi

# Node 24 comes from the `node` dev dependency; npm scripts put it first on PATH.
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

if ! grep -q ' /sys/fs/bpf bpf ' /proc/self/mounts; then
  mount -t bpf bpf /sys/fs/bpf
fi

bash scripts/build-bpf.sh

# The sandbox's Kubernetes control plane, built once from the official Go
# modules into a cache outside the repository (the first build takes about 12
# minutes on two cores and says so; later runs check the cache in a second).
bash scripts/controlplane/build.sh >/dev/null

# `meshlet` on the PATH, as istioctl, linkerd and cilium are: the package's bin
# (bin/meshlet, which runs this checkout with its own Node 24). A link to
# another checkout that still exists is left alone (a throwaway clone run by
# CI must not take it over and leave it dangling once the clone is gone).
link=/usr/local/bin/meshlet
target="$PWD/bin/meshlet"
current="$(readlink "$link" 2>/dev/null || true)"
if [ ! -e "$link" ]; then
  ln -sfn "$target" "$link"
elif [ "$current" != "$target" ]; then
  echo "meshlet setup: $link runs ${current:-another meshlet}; to run this checkout's instead: ln -sfn $target $link"
fi
