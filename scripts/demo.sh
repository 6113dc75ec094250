#!/usr/bin/env bash
# `npm run demo`: set up this checkout (packages, build), then run the multi-host demo.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "tessera demo: needs root (network namespaces, iptables, NFQUEUE, cgroups): run it as root, e.g. sudo npm run demo" >&2
  exit 1
fi
bash scripts/setup.sh
exec node dist/scripts/demo.js "$@"
