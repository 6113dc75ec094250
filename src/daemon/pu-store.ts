// The PU store's persistence: STATE_DIR/pus.json written from the registry, and the
// re-adoption at start of the process PUs an earlier run left running (state.ts is the
// file format). Orphaned cgroups of our subtree are removed so no stale classid is inherited.

import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { NetCls } from '../rules/index.js';
import type { PuRegistry } from './pus.js';
import { loadPuState, savePuState, type SavedPu } from './state.js';

export interface PuStore {
  /** Write every PU (a failure is logged; the previous file stays). */
  save(): void;
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
  return {
    save() {
      const saved: SavedPu[] = registry
        .all()
        .map((p) => ({ id: p.id, kind: p.kind, name: p.name, labels: p.kind === 'process' ? p.labels.filter((l) => !l.startsWith('@')) : [], index: p.index, ports: p.ports }));
      try {
        savePuState(o.path, saved);
      } catch (err) {
        o.warn('state', { err: errorMessage(err) }, 'cannot save PU state');
      }
    },
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
