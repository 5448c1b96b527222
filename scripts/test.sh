#!/usr/bin/env bash
# The whole suite: typecheck, then unit, Kubernetes (a real API server on
# loopback), BPF and sandbox tests on this kernel.
# Files run one at a time: the BPF and e2e suites build namespaces and share two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
node_modules/.bin/tsc -p tsconfig.json
exec node_modules/.bin/node --test --test-concurrency=1 --test-reporter=spec \
  test/unit/*.test.ts test/kube/*.test.ts test/bpf/*.test.ts test/e2e/*.test.ts
