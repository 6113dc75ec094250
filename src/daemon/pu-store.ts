// The PU store's persistence: STATE_DIR/pus.json written from the registry, and the
// re-adoption at start of the process PUs an earlier run left running (state.ts is the
// file format). Orphaned cgroups of our subtree are removed so no stale classid is inherited.

import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { NetCls } from '../rules/index.js';
import type { PuRegistry } from './pus.js';
import { renameSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { loadPuState, savePuState, type SavedPu } from './state.js';

export interface PuStore {
  /** Write every PU now, synchronously (at stop; a failure is logged, the previous file stays). */
  save(): void;
  /**
   * Write every PU soon, off the event loop (after each transaction): calls while a write is
   * in flight are coalesced into one more write, and content equal to the last written is not
   * written again (the reconcile loop's runs change nothing). A later save() wins.
   */
  saveSoon(): void;
  /** Resolves when no write started by saveSoon() is in flight (tests). */
  flushed(): Promise<void>;
  /**
   * Re-adopt process PUs whose cgroups still hold processes, with their last known ports;
   * returns the saved container entries for the Docker resync.
   */
  readopt(): Promise<Map<string, SavedPu>>;
}

export interface PuStoreOptions {
  path: string;
  registry: PuRegistry;
  netcls: Pick<NetCls, 'pids' | 'list' | 'remove'>;
  log: Logger;
  /** For repeated write failures (rate-limited). */
  warn(key: string, obj: object, msg: string): void;
}

export function createPuStore(o: PuStoreOptions): PuStore {
  const { registry, netcls, log } = o;
  const current = (): SavedPu[] =>
    registry.all().map((p) => ({ id: p.id, kind: p.kind, name: p.name, labels: p.kind === 'process' ? p.labels.filter((l) => !l.startsWith('@')) : [], index: p.index, ports: p.ports }));
  // The text last written (by either path), a generation bumped by each synchronous save (an
  // asynchronous write started before it must not replace its file), the write in flight.
  let written: string | null = null;
  let generation = 0;
  let writing: Promise<void> | null = null;
  let again = false;

  async function writeLoop(): Promise<void> {
    do {
      again = false;
      const text = JSON.stringify(current());
      if (text === written) continue;
      const gen = generation;
      const tmp = `${o.path}.tmp-async`;
      try {
        await writeFile(tmp, text, { mode: 0o600 });
        // The rename is synchronous: no save() can run between this check and it.
        if (gen !== generation) continue;
        renameSync(tmp, o.path);
        written = text;
      } catch (err) {
        o.warn('state', { err: errorMessage(err) }, 'cannot save PU state');
      }
    } while (again);
  }

  return {
    save() {
      generation++;
      again = false;
      const saved = current();
      try {
        savePuState(o.path, saved);
        written = JSON.stringify(saved);
      } catch (err) {
        o.warn('state', { err: errorMessage(err) }, 'cannot save PU state');
      }
    },
    saveSoon() {
      if (writing) {
        again = true;
        return;
      }
      writing = writeLoop().finally(() => {
        writing = null;
      });
    },
    flushed: () => writing ?? Promise.resolve(),
    async readopt() {
      const state = loadPuState(o.path);
      for (const problem of state.problems) log.warn({ problem }, 'PU state: ignoring what cannot be read');
      const known = new Set<string>();
      for (const s of state.pus) {
        if (s.kind !== 'process') continue;
        const pids = await netcls.pids(s.id).catch(() => []);
        if (pids.length === 0) continue;
        try {
          // A wanted index already taken gets a free one: the cgroup is re-tagged with its classid.
          const pu = await registry.create({ id: s.id, name: s.name, kind: 'process', labels: s.labels, index: s.index });
          registry.setObserved(pu, pids, s.ports);
          known.add(s.id);
          if (pu.index !== s.index) log.warn({ pu: s.id, wanted: s.index, index: pu.index }, 're-adopted PU got another index: its saved one was taken');
          log.info({ pu: s.id, pids, ports: s.ports }, 're-adopted process PU from an earlier run');
        } catch (err) {
          log.warn({ pu: s.id, err: errorMessage(err) }, 'cannot re-adopt PU');
        }
      }
      for (const c of await netcls.list()) {
        if (known.has(c.name)) continue;
        try {
          await netcls.remove(c.name);
        } catch {
          log.warn({ cgroup: c.name }, 'orphaned cgroup still has processes; they are unprotected until it is cleaned (tessera cleanup)');
        }
      }
      return new Map(state.pus.filter((s) => s.kind === 'container').map((s) => [s.id, s]));
    },
  };
}
