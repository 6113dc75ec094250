// A watchdog for the one case in-process cleanup cannot cover: the orchestrator itself being
// SIGKILLed (tsx, relaying Ctrl-C, SIGKILLs a child that does not acknowledge the signal
// within 30 ms, which happens on a loaded box). It runs detached, in its own process group,
// polls the orchestrator's PID and, once it is gone, SIGKILLs the processes still inside our
// namespaces (all of which we started) and deletes the namespaces. After a clean exit it finds
// nothing left and ends by itself. It also removes the net_cls subtrees (machine-wide) that
// daemons of PU scenarios made, named by the given prefixes.
import { spawn } from 'node:child_process';

const SCRIPT = `
parent=$1; shift
while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
for arg in "$@"; do
  case "$arg" in cg:*) continue ;; esac
  for pid in $(ip netns pids "$arg" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
done
for arg in "$@"; do
  case "$arg" in
    cg:*)
      name=\${arg#cg:}
      # Only directories named exactly after our prefix, in net_cls mounts, deepest first.
      for mnt in $(awk '$3 == "cgroup" && $4 ~ /net_cls/ { print $2 }' /proc/self/mounts); do
        [ -d "$mnt/$name" ] && find "$mnt/$name" -depth -type d -exec rmdir {} \\; 2>/dev/null
      done ;;
    *) ip netns del "$arg" 2>/dev/null ;;
  esac
done
exit 0
`;

/** Start the watchdog for these namespace names and net_cls subtree names; returns its PID. */
export function startReaper(namespaces: readonly string[], cgroups: readonly string[] = []): number | undefined {
  const args = [...namespaces, ...cgroups.map((c) => `cg:${c}`)];
  const child = spawn('sh', ['-c', SCRIPT, 'tessera-bench-reaper', String(process.pid), ...args], {
    detached: true,
    stdio: 'ignore',
  });
  child.unref();
  return child.pid;
}
