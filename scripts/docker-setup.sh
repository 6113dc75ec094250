#!/usr/bin/env bash
# A Docker engine for tests, the demo and CI, kept out of the machine's own network namespace.
#
#   scripts/docker-setup.sh          install docker.io if missing, start our dockerd, wait for it
#   scripts/docker-setup.sh stop     stop the dockerd this script started (by its PID), remove its netns
#   scripts/docker-setup.sh status   say whether it runs (exit 0) or not (exit 1)
#
# Why a dedicated network namespace (TESSERA_DOCKER_NETNS, default "tessera-docker"):
# dockerd writes iptables rules (nat MASQUERADE, FORWARD policy DROP), turns on ip_forward
# and creates docker0. Started through `nsenter --net`, all of that happens inside a
# namespace we own, and "--network host" containers share that namespace: it is the "host"
# of the Docker tests. The machine's own namespace is never touched. Only the network
# namespace changes (not the mount namespace, as `ip netns exec` would, which remounts /sys
# and hides /sys/fs/cgroup from dockerd), so /var/run/docker.sock, /var/lib/docker and the
# cgroup hierarchies are the machine's own.
#
# The bridge docker0 gets 10.213.200.1/24, inside the test range 10.213.0.0/16.
# No registry is reachable: images are built locally (scripts/docker-image.sh).
# Idempotent: a running engine (ours or anyone's) answering on the socket is left alone.
#
# The engine's default runtime is Tessera's OCI runtime shim (packaging/tessera-runc, copied
# to $TESSERA_SHIM so the engine never depends on a checkout): it enrolls each container with
# a `tessera daemon --docker` before the container starts, and passes through to runc when no
# such daemon was set up (docs/docker.md). The copy is refreshed on every run.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
SHIM="${TESSERA_SHIM:-/usr/local/libexec/tessera/tessera-runc}"

NETNS="${TESSERA_DOCKER_NETNS:-tessera-docker}"
SOCK="${TESSERA_DOCKER_SOCK:-/var/run/docker.sock}"
BIP="${TESSERA_DOCKER_BIP:-10.213.200.1/24}"
PIDFILE=/run/tessera-dockerd.pid
LOG=/var/log/tessera-dockerd.log
WAIT_S="${TESSERA_DOCKER_WAIT_S:-60}"

# Prefer the docker.io client: it matches the engine's API version exactly.
DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker

say() { echo "docker-setup: $*"; }
die() { echo "docker-setup: $*" >&2; exit 1; }

# Bounded: a dockerd that accepts on its socket but does not answer yet must not hang the wait.
engine_up() { timeout 10 "$DOCKER" -H "unix://$SOCK" info >/dev/null 2>&1; }

# Wait until the dockerd with PID $1 answers on the socket (up to WAIT_S seconds), or fail
# saying why: it exited, or it did not answer in time. A slow engine is waited for, never
# taken for an absent one (the Docker tests would then be skipped).
wait_engine() {
  local pid="$1" deadline=$((SECONDS + WAIT_S))
  until engine_up; do
    if ! [ -d "/proc/$pid" ]; then
      tail -20 "$LOG" >&2 || true
      rm -f "$PIDFILE"
      die "dockerd exited during start: see $LOG"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -20 "$LOG" >&2 || true
      die "dockerd did not answer on $SOCK within ${WAIT_S}s: see $LOG (stop it with '$0 stop')"
    fi
    sleep 0.25
  done
}

our_pid() {
  # Prints the PID of the dockerd we started, if it still runs and is a dockerd.
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "dockerd" ] || return 1
  echo "$pid"
}

stop() {
  local pid
  if pid="$(our_pid)"; then
    say "stopping dockerd (PID $pid)"
    kill -TERM "$pid"
    # dockerd stops its containers (10 s grace each, in parallel) then containerd: bound the wait.
    for _ in $(seq 1 300); do
      [ -d "/proc/$pid" ] || break
      sleep 0.1
    done
    if [ -d "/proc/$pid" ]; then
      say "dockerd (PID $pid) still running after 30 s: sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  else
    say "no dockerd started by this script is running"
  fi
  rm -f "$PIDFILE"
  # The namespace is ours alone; remove it only when nothing is left in it.
  if ip netns list 2>/dev/null | grep -qw "^$NETNS"; then
    if [ -z "$(ip netns pids "$NETNS" 2>/dev/null)" ]; then
      ip netns delete "$NETNS"
      say "removed network namespace $NETNS"
    else
      say "network namespace $NETNS still has processes: left in place"
    fi
  fi
}

status() {
  local pid
  if pid="$(our_pid)"; then
    engine_up && { say "running: PID $pid, netns $NETNS, socket $SOCK"; return 0; }
    say "PID $pid runs but does not answer on $SOCK"; return 1
  fi
  engine_up && { say "an engine not started by this script answers on $SOCK"; return 0; }
  say "not running"; return 1
}

start() {
  [ "$(id -u)" -eq 0 ] || die "needs root (installs packages, starts dockerd)"

  if ! command -v dockerd >/dev/null 2>&1; then
    say "installing docker.io"
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d or no init: the package's service start is refused, which is what we want.
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io >/dev/null
    [ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
  fi

  install -D -m 0755 "$REPO/packaging/tessera-runc" "$SHIM"

  if engine_up; then
    say "engine already answers on $SOCK"
    if [ "$("$DOCKER" -H "unix://$SOCK" info --format '{{.DefaultRuntime}}' 2>/dev/null)" != tessera ]; then
      say "warning: its default runtime is not the tessera shim; containers start before enrollment (restart it: '$0 stop; $0')"
    fi
    return 0
  fi
  if pid="$(our_pid)"; then
    # Ours, still starting (or busy): wait for it rather than start a second one.
    say "dockerd PID $pid runs but does not answer yet: waiting up to ${WAIT_S}s"
    wait_engine "$pid"
    say "ready: PID $pid, netns $NETNS, socket $SOCK"
    return 0
  fi
  rm -f "$PIDFILE"

  # Docker's cgroup driver (cgroupfs, v1) needs the hierarchies mounted; this kind of
  # machine mounts them. Say so plainly if not, rather than let dockerd fail obscurely.
  [ -d /sys/fs/cgroup/devices ] || [ -f /sys/fs/cgroup/cgroup.controllers ] \
    || die "no cgroup hierarchy under /sys/fs/cgroup: dockerd cannot run containers"

  if ! ip netns list 2>/dev/null | grep -qw "^$NETNS"; then
    ip netns add "$NETNS"
  fi
  ip -n "$NETNS" link set lo up

  say "starting dockerd in netns $NETNS (bridge $BIP, log $LOG)"
  # setsid: its own session, so a Ctrl-C or the end of the calling shell does not reach it.
  # --ip6tables is off: the tests are IPv4 only and the namespace has no IPv6 routes.
  # --pidfile is dockerd's own lock (refuses a second daemon); our PIDFILE holds the PID
  # of the process we started, which is what `stop` ends.
  # The subshell first closes every descriptor above 2 it inherited: a caller's lock (e.g.
  # `flock /tmp/tessera-itest.lock bash scripts/docker-setup.sh`) would otherwise be held by
  # dockerd, and so by containerd, for as long as they run.
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd="${fd##*/}"
      [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null
    done
    exec nsenter --net="/run/netns/$NETNS" setsid dockerd \
    --host "unix://$SOCK" \
    --bip "$BIP" \
    --iptables=true \
    --ip6tables=false \
    --pidfile /run/tessera-dockerd.engine.pid \
    --add-runtime "tessera=$SHIM" \
    --default-runtime tessera
  ) >>"$LOG" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$PIDFILE"

  wait_engine "$pid"
  say "ready: PID $pid, netns $NETNS, socket $SOCK"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 [start|stop|status]" ;;
esac
