#!/usr/bin/env bash
# npm run bench: prepare the checkout (OS packages, npm deps, native addon, TypeScript), then
# run the benchmark orchestrator with the given options (see bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "bench: needs root (network namespaces, iptables, NFQUEUE): run as root" >&2
  exit 1
fi
# setup.sh also builds the tessera addon; when that fails the bench still runs and reports
# the tessera rows as skipped, so a broken addon cannot hide the baseline and C ceilings.
if ! bash scripts/setup.sh >&2; then
  echo "bench: warning: scripts/setup.sh failed; rows that need what it builds will be skipped" >&2
fi
exec npx tsx bench/run.ts "$@"
