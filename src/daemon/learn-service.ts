// Learn mode in the daemon (docs/learning.md): the workers' drained edge tables are merged
// into one bounded EdgeTable, saved in the state directory (edges.json, so it survives
// restarts; written atomically, only when it changed) and, with --cluster, published to
// the store as at most MAX_FLOW_SLOTS keys for this host (flows/<host>/<slot>: edges are
// spread over the slots by a hash of their key). `tessera policy suggest|diff` read it
// through the API, merged with the other hosts' slots when there is a store.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import { EdgeTable, edgeKey, parseTable, type EdgeTableJson } from '../learn/edges.js';
import { MAX_FLOW_SLOTS, createLayout, type Layout } from '../fleet/layout.js';
import { prefixEnd, type EtcdClient } from '../fleet/etcd.js';
import { RefusalGuard } from '../learn/guard.js';

const SAVE_EVERY_MS = 10_000;
const PUBLISH_EVERY_MS = 30_000;
/** One slot's value stays well under etcd's default request limit (1.5 MiB). */
const MAX_SLOT_BYTES = 1_000_000;

export interface LearnServiceOptions {
  stateDir: string;
  host: string;
  log: Logger;
  /** The cluster store, when the daemon runs with --cluster. */
  etcd?: { client: EtcdClient; prefix?: string };
  maxEdges?: number;
  /** The workers' cumulative refusal counter, for the promotion guard. */
  refusals?: () => number;
}

export interface LearnService {
  /** One worker's drained table. */
  add(t: EdgeTableJson): void;
  /** This host's table, merged with every host's published slots when there is a store. */
  edges(): Promise<EdgeTableJson>;
  /** Edge count and overflow, and the guard's last report, for status. */
  status(): { edges: number; dropped: number; maxEdges: number; guard?: { at: string; message: string } };
  /** A policy change moved PUs to enforce: watch the refusals (learn/guard.ts). */
  arm(why: string): void;
  start(): void;
  /** Saves (and publishes) what is pending. */
  stop(): Promise<void>;
}

export function createLearnService(o: LearnServiceOptions): LearnService {
  const file = join(o.stateDir, 'edges.json');
  let table = new EdgeTable(o.maxEdges);
  if (existsSync(file)) {
    try {
      table = EdgeTable.fromJSON(JSON.parse(readFileSync(file, 'utf8')), o.maxEdges);
      o.log.info({ edges: table.size }, 'learnt edges restored from the state directory');
    } catch (err) {
      o.log.warn({ file, err: errorMessage(err) }, 'learnt edges unreadable: starting with an empty table');
    }
  }
  let dirty = false;
  let unpublished = false;
  const layout: Layout | null = o.etcd ? createLayout(o.etcd.prefix) : null;
  const timers: NodeJS.Timeout[] = [];
  const guard = new RefusalGuard();
  /** What each slot holds in the store, as last written: unchanged slots are not written again. */
  const published: Array<string | undefined> = new Array(MAX_FLOW_SLOTS).fill(undefined);

  function save(): void {
    if (!dirty) return;
    dirty = false;
    try {
      const tmp = `${file}.tmp`;
      writeFileSync(tmp, JSON.stringify(table.toJSON()), { mode: 0o600 });
      renameSync(tmp, file);
    } catch (err) {
      dirty = true;
      o.log.warn({ file, err: errorMessage(err) }, 'learnt edges not saved; retrying');
    }
  }

  /** This host's slots: every edge in slot hash(key) mod MAX_FLOW_SLOTS; every slot written (empty ones too, so old edges leave). */
  async function publish(): Promise<void> {
    if (!o.etcd || !layout || !unpublished) return;
    unpublished = false;
    const slots: EdgeTable[] = Array.from({ length: MAX_FLOW_SLOTS }, () => new EdgeTable(table.maxEdges));
    const bytes = new Array<number>(MAX_FLOW_SLOTS).fill(0);
    let left = 0;
    for (const e of table.list()) {
      const slot = createHash('sha256').update(edgeKey(e)).digest()[0]! % MAX_FLOW_SLOTS;
      const size = JSON.stringify(e).length + 1;
      // Bounded per key: an edge that does not fit is left out of the store (counted), not the local table.
      if (bytes[slot]! + size > MAX_SLOT_BYTES) {
        left++;
        continue;
      }
      bytes[slot]! += size;
      slots[slot]!.merge({ version: 1, maxEdges: table.maxEdges, dropped: 0, edges: [e] });
    }
    slots[0]!.dropped = table.dropped + left;
    try {
      for (let i = 0; i < MAX_FLOW_SLOTS; i++) {
        const value = JSON.stringify(slots[i]!.toJSON());
        if (published[i] === value) continue;
        await o.etcd.client.put(Buffer.from(layout.flowSlot(o.host, i)), Buffer.from(value));
        published[i] = value;
      }
    } catch (err) {
      unpublished = true;
      o.log.warn({ err: errorMessage(err) }, 'learnt edges not published to the cluster store; retrying');
    }
  }

  return {
    add(t) {
      table.merge(t);
      dirty = true;
      unpublished = true;
    },
    async edges() {
      if (!o.etcd || !layout) return table.toJSON();
      await publish();
      const all = new EdgeTable(table.maxEdges);
      all.merge(table.toJSON());
      const key = Buffer.from(layout.flows);
      const r = await o.etcd.client.range(key, prefixEnd(key));
      for (const kv of r.kvs) {
        const k = kv.key.toString();
        if (k.startsWith(layout.flows + `${o.host}/`)) continue; // ours: already in
        try {
          all.merge(parseTable(JSON.parse(kv.value.toString())));
        } catch (err) {
          o.log.warn({ key: k, err: errorMessage(err) }, 'a host\'s published edges are unreadable: left out');
        }
      }
      return all.toJSON();
    },
    status: () => ({ edges: table.size, dropped: table.dropped, maxEdges: table.maxEdges, ...(guard.last ? { guard: { at: new Date(guard.last.at).toISOString(), message: guard.last.message } } : {}) }),
    arm(why) {
      guard.arm(Date.now(), why);
      o.log.info({ why }, 'watching refusals after a promotion to enforce (10 min)');
    },
    start() {
      const refusals = o.refusals;
      if (refusals) {
        timers.push(
          setInterval(() => {
            const alert = guard.sample(Date.now(), refusals());
            if (alert) o.log.warn({ refusals: alert.refusals, before: alert.before }, alert.message);
          }, 5000),
        );
      }
      timers.push(setInterval(save, SAVE_EVERY_MS));
      if (o.etcd) timers.push(setInterval(() => void publish(), PUBLISH_EVERY_MS));
    },
    async stop() {
      for (const t of timers) clearInterval(t);
      save();
      await publish();
    },
  };
}
