#!/usr/bin/env bash
# Prepare this checkout to run: OS packages (when root and missing), npm dependencies,
# the native addon and the TypeScript build. Safe to run again; does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# prometheus: for promtool, which checks our /metrics text in the tests (Debian has no smaller package with it).
# chromium: the flow map's browser tests and bench drive Debian's build headless (playwright-core; no browser download).
# etcd-server: the fleet's integration tests start a real three-member etcd (docs/cluster.md).
for p in iptables nftables libnetfilter-queue-dev libmnl-dev pkg-config build-essential python3 iproute2 conntrack busybox-static tshark prometheus chromium etcd-server; do
  pkg_installed "$p" || need_pkgs+=("$p")
done
# systemd-analyze checks packaging/tessera.service (test/integration/package.test.ts).
have systemd-analyze || need_pkgs+=(systemd)
if [ "${TESSERA_DOCKER:-0}" = "1" ]; then
  pkg_installed docker.io || need_pkgs+=(docker.io)
  pkg_installed curl || need_pkgs+=(curl) # the runtime shim (packaging/tessera-runc) calls the daemon with it
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tessera setup: missing OS packages: ${need_pkgs[*]}" >&2
    echo "  install them with: sudo apt-get install -y ${need_pkgs[*]}" >&2
    exit 1
  fi
  echo "tessera setup: installing OS packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  # Installed for promtool only: the Prometheus server its package enables stays off.
  if printf '%s\n' "${need_pkgs[@]}" | grep -qx prometheus; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
fi

# node-gyp must build against the Node headers the system ships (/usr/include/node): it
# cannot download them here. npm on this kind of machine is configured that way; say it
# explicitly so the build does not depend on a user's ~/.npmrc.
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node_api.h ]; then
  export npm_config_nodedir=/usr
fi

# npm dependencies (also builds the native addon through the install script).
stamp=node_modules/.tessera-installed
if [ ! -f "$stamp" ] || [ package.json -nt "$stamp" ] || { [ -f package-lock.json ] && [ package-lock.json -nt "$stamp" ]; }; then
  echo "tessera setup: npm install"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
  touch "$stamp"
fi

# Native addon: rebuild when a source changed since the last build.
addon=native/build/Release/tessera_nfq.node
if [ ! -f "$addon" ] || [ -n "$(find native/src native/binding.gyp -newer "$addon" 2>/dev/null | head -1)" ]; then
  echo "tessera setup: building native addon"
  (cd native && npx node-gyp rebuild >/dev/null)
fi

echo "tessera setup: compiling TypeScript"
npx tsc -p tsconfig.json
