#!/usr/bin/env bash
# `npm run demo`: set up this checkout (packages, build), then run the multi-host demo.
# `npm run demo -- --learn [--docker]`: learn mode (scripts/demo-learn.ts).
# `npm run demo -- --docker`: the same walkthrough with Docker containers; starts our dockerd
# (scripts/docker-setup.sh) and builds the local image first, and stops that dockerd at the
# end only if this script started it.
# `npm run demo -- --cluster`: three namespace hosts following a three-member etcd (docs/cluster.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "tessera demo: needs root (network namespaces, iptables, NFQUEUE, cgroups): run it as root, e.g. sudo npm run demo" >&2
  exit 1
fi
bash scripts/setup.sh
# --cluster: the fleet demo (scripts/demo-cluster.ts); setup.sh installed etcd-server.
for a in "$@"; do [ "$a" = --cluster ] && exec node dist/scripts/demo-cluster.js "$@"; done
# --learn: learn mode on a three-tier application (scripts/demo-learn.ts, docs/learning.md);
# with --docker as well, its containers act follows (replicas and renamed containers).
script=dist/scripts/demo.js
for a in "$@"; do [ "$a" = --learn ] && script=dist/scripts/demo-learn.js; done
docker=0
for a in "$@"; do [ "$a" = --docker ] && docker=1; done
if [ "$docker" -eq 0 ]; then
  exec node "$script" "$@"
fi
started=0
if ! bash scripts/docker-setup.sh status >/dev/null 2>&1; then
  bash scripts/docker-setup.sh
  started=1
fi
stop_engine() { if [ "$started" -eq 1 ]; then bash scripts/docker-setup.sh stop || true; fi; }
trap stop_engine EXIT
bash scripts/docker-image.sh
node "$script" "$@"
