#!/usr/bin/env bash
# The whole test suite: setup, dependency lint, then every unit and integration test.
# Integration tests need root (network namespaces, iptables, NFQUEUE, cgroups); without root
# they are reported as skipped with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node scripts/lint-deps.mjs
exec npx vitest run "$@"
