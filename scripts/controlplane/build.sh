#!/usr/bin/env bash
# Builds the sandbox's Kubernetes control plane (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, and each node's
# kube-proxy, from k8s.io/kubernetes; etcd
# from go.etcd.io/etcd/server/v3) and fetches the Istio and Gateway API CRDs,
# all from the Go module proxy, once, into a cache outside the repository:
#
#   ${MESHLET_CACHE:-/root/.cache/meshlet}/controlplane/k8s-<ver>-etcd-<ver>/
#     bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy,kubectl,etcd}
#     crds/istio.yaml  crds/gateway-api/*.yaml
#     versions         the pins (scripts/controlplane/versions.env) it was built from
#     manifest.sha256  written last; a cache whose manifest is missing or does not
#                      verify is rebuilt
#     work/            generated Go modules and build logs
#
# Usage: bin=$(scripts/controlplane/build.sh)
# Progress goes to stderr; stdout is only the bin directory. Idempotent.
# Flags that run the built binaries: scripts/controlplane/README.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

key=k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION
root=${MESHLET_CACHE:-/root/.cache/meshlet}/controlplane
dir=$root/$key
bin=$dir/bin
work=$dir/work
logs=$work/logs
kube_binaries=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl)
binaries=("${kube_binaries[@]}" etcd)
# Upstream's release build tags (hack/lib/golang.sh).
kube_tags=selinux,notest,grpcnotrace

say() { printf 'meshlet control plane: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

pins() {
  printf 'kubernetes %s\netcd %s\nistio %s\ngateway-api %s\n' \
    "$KUBERNETES_VERSION" "$ETCD_VERSION" "$ISTIO_VERSION" "$GATEWAY_API_VERSION"
}

# Why the cache is unusable, or nothing when it is complete and intact.
cache_problem() {
  if [ ! -d "$dir" ]; then
    echo "nothing built in $dir yet"
    return 0
  fi
  if [ ! -f "$dir/manifest.sha256" ]; then
    echo "no manifest in $dir (a build did not finish)"
    return 0
  fi
  if ! (cd "$dir" && sha256sum --check --strict --quiet manifest.sha256 >/dev/null 2>&1); then
    echo "$dir is corrupt: a file differs from manifest.sha256"
    return 0
  fi
  local f
  for f in "${binaries[@]/#/bin/}" crds/istio.yaml versions; do
    grep -q "  $f\$" "$dir/manifest.sha256" || { echo "$dir is incomplete: manifest.sha256 lacks $f"; return 0; }
  done
  grep -q '  crds/gateway-api/' "$dir/manifest.sha256" || { echo "$dir is incomplete: no Gateway API CRDs"; return 0; }
  [ "$(cat "$dir/versions")" = "$(pins)" ] || echo "$dir was built from other pins than scripts/controlplane/versions.env"
}

# The Go environment is pinned so that a user's GOFLAGS, GOOS or go.work cannot
# change what gets built, and Go never downloads a toolchain behind our back.
command -v go >/dev/null 2>&1 || die "Go is not on PATH: building Kubernetes $KUBERNETES_VERSION needs Go 1.26 or newer"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off GOFLAGS=-buildvcs=false
unset GOOS GOARCH

mkdir -p "$root"
exec 9>"$root/$key.lock"
if ! flock -n 9; then
  say "another build of $key is running; waiting for it to finish"
  flock 9
fi

problem=$(cache_problem)
if [ -z "$problem" ]; then
  say "using the cached build in $dir"
  printf '%s\n' "$bin"
  exit 0
fi
[ ! -d "$dir" ] || say "$problem; rebuilding"

# The build in flight, as a process group, so an interrupted run leaves no compiler behind.
job=""
stop_job() { [ -z "$job" ] || kill -TERM -- "-$job" 2>/dev/null || true; }
trap stop_job EXIT
trap 'exit 130' INT TERM

# Runs a long step in its own process group at the lowest CPU priority (the
# machine is shared), logging to a file and printing its elapsed time every 30 s.
run_step() {
  local label=$1 cwd=$2 log=$3 start=$SECONDS next=30 rc=0
  shift 3
  say "$label: started"
  (cd "$cwd" && exec setsid nice -n 19 "$@") >"$log" 2>&1 </dev/null &
  job=$!
  while kill -0 "$job" 2>/dev/null; do
    sleep 1
    if ((SECONDS - start >= next)); then
      say "$label: still running, $(elapsed $((SECONDS - start)))"
      next=$((next + 30))
    fi
  done
  wait "$job" || rc=$?
  job=""
  if [ "$rc" -ne 0 ]; then
    say "$label failed after $(elapsed $((SECONDS - start))) (exit $rc); the end of $log:"
    tail -n 40 "$log" >&2
    exit 1
  fi
  say "$label: done in $(elapsed $((SECONDS - start)))"
}

# `go mod download -json` of one module version; prints the named field (Dir, GoMod, Info).
module_file() {
  local module=$1 version=$2 field=$3 out
  if ! out=$(cd "$work" && go mod download -json "$module@$version"); then
    die "cannot download $module@$version from the Go module proxy ($(go env GOPROXY)): $out"
  fi
  sed -n "s/^[[:space:]]*\"$field\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p" <<<"$out"
}

started=$SECONDS
say "building Kubernetes $KUBERNETES_VERSION and etcd $ETCD_VERSION into $dir"
say "a first build takes about 12 minutes on two cores (under a minute when Go's build cache is warm); later runs reuse this cache"

rm -rf "$bin" "$dir/crds" "$dir/versions" "$dir/manifest.sha256"
mkdir -p "$bin" "$dir/crds/gateway-api" "$work/kubernetes" "$work/etcd" "$logs"

# CRDs: read from the module zips the proxy serves, so they match the pins exactly.
say "fetching the Istio $ISTIO_VERSION and Gateway API $GATEWAY_API_VERSION modules for their CRDs"
istio_dir=$(module_file istio.io/istio "$ISTIO_VERSION" Dir)
install -m 0644 "$istio_dir/manifests/charts/base/files/crd-all.gen.yaml" "$dir/crds/istio.yaml"
gateway_dir=$(module_file sigs.k8s.io/gateway-api "$GATEWAY_API_VERSION" Dir)
install -m 0644 "$gateway_dir"/config/crd/standard/*.yaml "$dir/crds/gateway-api/"
say "CRDs: $(grep -c '^kind: CustomResourceDefinition' "$dir/crds/istio.yaml") from Istio, $(cat "$dir"/crds/gateway-api/*.yaml | grep -c '^kind: CustomResourceDefinition') from Gateway API $GATEWAY_API_VERSION"

# Kubernetes: k8s.io/kubernetes replaces every staging module with a directory
# of its own repository; a module that requires it must replace each with the
# release of the same number instead (v1.37.2 → v0.37.2). Only required ones
# are replaced: the proxy does not serve every staging module (sample-controller).
kube_gomod=$(module_file k8s.io/kubernetes "$KUBERNETES_VERSION" GoMod)
kube_info=$(module_file k8s.io/kubernetes "$KUBERNETES_VERSION" Info)
staging_version=v0.${KUBERNETES_VERSION#v1.}
staged=$(grep -E '=>[[:space:]]+\./staging/src/' "$kube_gomod" | sed -E 's/^[[:space:]]*(replace[[:space:]]+)?//' | awk '{print $1}' | sort || true)
required=$(grep -E '^[[:space:]]*(require[[:space:]]+)?k8s\.io/[^[:space:]]+[[:space:]]+v0\.0\.0([[:space:]]|$)' "$kube_gomod" |
  sed -E 's/^[[:space:]]*(require[[:space:]]+)?//' | awk '{print $1}' | sort || true)
replaced=$(comm -12 <(printf '%s\n' "$staged") <(printf '%s\n' "$required"))
[ -n "$replaced" ] || die "found no staging modules to replace in $kube_gomod: has k8s.io/kubernetes changed its go.mod layout?"
{
  echo "module meshlet.invalid/controlplane/kubernetes"
  echo
  echo "go $(awk '$1 == "go" {print $2; exit}' "$kube_gomod")"
  echo
  echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
  echo
  echo "replace ("
  for m in $replaced; do printf '\t%s => %s %s\n' "$m" "$m" "$staging_version"; done
  echo ")"
  echo
  echo "tool ("
  for b in "${kube_binaries[@]}"; do printf '\tk8s.io/kubernetes/cmd/%s\n' "$b"; done
  echo ")"
} >"$work/kubernetes/go.mod"

# etcd: the server module's own main cannot be `go install`ed (its go.mod has
# replace directives), so a module of ours wraps etcdmain.
etcd_gomod=$(module_file go.etcd.io/etcd/server/v3 "$ETCD_VERSION" GoMod)
printf 'module meshlet.invalid/controlplane/etcd\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
  "$(awk '$1 == "go" {print $2; exit}' "$etcd_gomod")" "$ETCD_VERSION" >"$work/etcd/go.mod"
cat >"$work/etcd/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF

run_step "resolving Kubernetes' Go modules" "$work/kubernetes" "$logs/tidy-kubernetes.log" go mod tidy
run_step "resolving etcd's Go modules" "$work/etcd" "$logs/tidy-etcd.log" go mod tidy

# Version stamps as upstream's hack/lib/version.sh sets them, so --version
# reports the release; the build date is the release's commit time (reproducible).
major=${KUBERNETES_VERSION#v}
major=${major%%.*}
minor=${KUBERNETES_VERSION#v*.}
minor=${minor%%.*}
build_date=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$kube_info")
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

for b in "${kube_binaries[@]}"; do
  run_step "$b" "$work/kubernetes" "$logs/$b.log" \
    go build -trimpath -tags="$kube_tags" -ldflags="$kube_ldflags" -o "$bin/.$b.tmp" "k8s.io/kubernetes/cmd/$b"
  mv "$bin/.$b.tmp" "$bin/$b"
done
run_step etcd "$work/etcd" "$logs/etcd.log" go build -trimpath -ldflags="-s -w" -o "$bin/.etcd.tmp" .
mv "$bin/.etcd.tmp" "$bin/etcd"

# Each binary must run and report its pinned version before the cache is sealed.
expect_version() {
  local want=$1 out
  shift
  out=$("$@" 2>&1) || die "$* failed: $out"
  grep -qF "$want" <<<"$out" || die "$* reports '$out', expected '$want'"
}
for b in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
  expect_version "Kubernetes $KUBERNETES_VERSION" "$bin/$b" --version
done
expect_version "Client Version: $KUBERNETES_VERSION" "$bin/kubectl" version --client
expect_version "etcd Version: ${ETCD_VERSION#v}" "$bin/etcd" --version

pins >"$dir/versions"
(cd "$dir" && find bin crds versions -type f -print0 | sort -z | xargs -0 sha256sum) >"$dir/.manifest.tmp"
mv "$dir/.manifest.tmp" "$dir/manifest.sha256"

say "built in $(elapsed $((SECONDS - started))); $(du -sh "$bin" | cut -f1) of binaries in $bin"
printf '%s\n' "$bin"
