// The strike register (protocol v2) lives in memory, so a daemon that starts again cannot know
// which proofs its predecessor saw. Its engines refuse proofs timestamped before an epoch
// (+ clock skew) as `restarted` (docs/protocol.md). The epoch is the latest moment a previous
// run of this state directory could have accepted a proof:
// - its clean stop, recorded here after its datapath stopped;
// - now, when it did not stop cleanly (a crash, kill -9) or the record is unreadable;
// - 0 when this state directory never ran a datapath: its handshake key is new as well, so no
//   earlier proof verifies under it.
// A first start or a clean restart therefore does not refuse fresh proofs for its first seconds.

import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const FILE = 'datapath-epoch.json';

interface Record_ {
  running: boolean;
  stoppedAt?: number;
}

function write(stateDir: string, r: Record_): void {
  const path = join(stateDir, FILE);
  writeFileSync(`${path}.tmp`, JSON.stringify(r) + '\n', { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

/** The epoch for this run's engines; marks this run as running (so a crash is seen next time). */
export function registerEpoch(stateDir: string, now: number): number {
  let prev: Record_ | null;
  try {
    const o = JSON.parse(readFileSync(join(stateDir, FILE), 'utf8')) as Partial<Record_>;
    prev = { running: o.running !== false, ...(typeof o.stoppedAt === 'number' ? { stoppedAt: o.stoppedAt } : {}) };
  } catch (err) {
    prev = (err as NodeJS.ErrnoException).code === 'ENOENT' ? null : { running: true };
  }
  write(stateDir, { running: true });
  if (prev === null) return 0;
  if (!prev.running && prev.stoppedAt !== undefined && prev.stoppedAt <= now) return prev.stoppedAt;
  return now;
}

/** After the datapath stopped: no proof is accepted by this run from now on. */
export function markStopped(stateDir: string, now: number): void {
  write(stateDir, { running: false, stoppedAt: now });
}
