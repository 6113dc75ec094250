// A watchdog for the one case in-process cleanup cannot cover: the orchestrator itself being
// SIGKILLed (tsx, relaying Ctrl-C, SIGKILLs a child that does not acknowledge the signal
// within 30 ms, which happens on a loaded box). It runs detached, in its own process group,
// polls the orchestrator's PID and, once it is gone, SIGKILLs the processes still inside our
// namespaces (all of which we started) and deletes the namespaces. After a clean exit it finds
// nothing left and ends by itself.
import { spawn } from 'node:child_process';

const SCRIPT = `
parent=$1; shift
while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
for ns in "$@"; do
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  ip netns del "$ns" 2>/dev/null
done
exit 0
`;

/** Start the watchdog for these namespace names; returns its PID. */
export function startReaper(namespaces: readonly string[]): number | undefined {
  const child = spawn('sh', ['-c', SCRIPT, 'tessera-bench-reaper', String(process.pid), ...namespaces], {
    detached: true,
    stdio: 'ignore',
  });
  child.unref();
  return child.pid;
}
