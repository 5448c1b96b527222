#!/usr/bin/env bash
# The whole suite: typecheck, then unit, Kubernetes (a real API server on
# loopback), BPF and sandbox tests on this kernel.
# Files run one at a time: the BPF and e2e suites build namespaces and share two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
node_modules/.bin/tsc -p tsconfig.json
# Checked (and built if need be) once here, not again by every test process.
MESHLET_CONTROLPLANE_BIN=$(bash scripts/controlplane/build.sh)
export MESHLET_CONTROLPLANE_BIN
exec node_modules/.bin/node --test --test-concurrency=1 --test-reporter=spec \
  test/unit/*.test.ts test/kube/*.test.ts test/bpf/*.test.ts test/e2e/*.test.ts
