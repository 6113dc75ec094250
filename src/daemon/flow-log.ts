// The flow log service: the ring of recent flow records (`tessera flows`), its followers
// (`flows --follow`), the flow log lines with their refusal budget, and the accept/reject
// counters. Records are kept as the workers sent them (time in ms); the API's ISO time is
// made only when a record is served, followed or logged, not for every connection.

import type { Logger } from 'pino';
import type { FlowEntry } from '../api/index.js';
import type { FlowRecord } from '../datapath/index.js';
import { createRefusalLogBudget } from './log.js';
import type { CounterName } from './metrics.js';

export interface FlowLogOptions {
  /** Records kept for `tessera flows`. */
  size: number;
  /** Refusal log lines per second per reason code; the rest are counted in one summary line. */
  refusalLinesPerSecond: number;
  log: Logger;
  count(name: CounterName): void;
  /** Also told every record (revoke's memory of authorized flows). */
  onRecord?(r: FlowRecord): void;
  /** Told the number of followers whenever it changes (the daemon lets accept records cross only while someone follows or logs them). */
  onFollowers?(n: number): void;
  now?: () => number;
}

export interface FlowLog {
  /** One batch from a worker. */
  add(records: FlowRecord[]): void;
  recent(opts: { deniedOnly: boolean; limit: number }): FlowEntry[];
  /** Calls `fn` for every new record until the returned function is called. */
  subscribe(fn: (f: FlowEntry) => void): () => void;
  /** Whether every record becomes a log line (info level). */
  logsFlows(): boolean;
  /**
   * One summary line for the refusals the budget kept out of the log. Called by a timer armed
   * by the first refusal kept out (one second later), not on an idle clock.
   */
  flushSuppressed(): void;
  /** Cancels a pending summary (at stop). */
  stop(): void;
}

const entryOf = (r: FlowRecord): FlowEntry => ({ ...r, time: new Date(r.time).toISOString() });

export function createFlowLog(o: FlowLogOptions): FlowLog {
  const ring: FlowRecord[] = [];
  const subscribers = new Set<(f: FlowEntry) => void>();
  const budget = createRefusalLogBudget(o.refusalLinesPerSecond, o.now);
  let summary: NodeJS.Timeout | null = null;
  const flushSuppressed = (): void => {
    if (summary) clearTimeout(summary);
    summary = null;
    const suppressed = budget.drain();
    if (!suppressed) return;
    const total = Object.values(suppressed).reduce((a, b) => a + b, 0);
    o.log.warn({ suppressed }, `${total} refusals not logged in the last second (over ${o.refusalLinesPerSecond}/s per reason); tessera_reasons_total counts them all`);
  };
  const allow = (reason: string): boolean => {
    if (budget.allow(reason)) return true;
    // Only while refusals are being kept out: an idle daemon has no timer here (issue 17).
    if (!summary) {
      summary = setTimeout(flushSuppressed, 1000);
      summary.unref?.();
    }
    return false;
  };
  return {
    add(records) {
      // Once per batch: below info (e.g. --log-level warn) the message is not even built.
      const logFlows = o.log.isLevelEnabled('info');
      for (const r of records) {
        o.count(r.verdict === 'accept' ? 'flows_accepted' : 'flows_rejected');
        if (logFlows && (r.verdict === 'accept' || allow(r.reason))) o.log.info({ flow: entryOf(r) }, `${r.verdict} ${r.direction} ${r.reason}`);
        ring.push(r);
        o.onRecord?.(r);
        // Trimmed in chunks: splicing one record off the front of 2 000 on every push is a
        // memmove per connection.
        if (ring.length > o.size + o.size / 4) ring.splice(0, ring.length - o.size);
        if (subscribers.size > 0) {
          const f = entryOf(r);
          for (const s of subscribers) s(f);
        }
      }
    },
    recent: ({ deniedOnly, limit }) => ring.filter((f) => !deniedOnly || f.verdict !== 'accept').slice(-Math.min(limit, o.size)).map(entryOf),
    subscribe(fn) {
      subscribers.add(fn);
      o.onFollowers?.(subscribers.size);
      return () => {
        if (subscribers.delete(fn)) o.onFollowers?.(subscribers.size);
      };
    },
    logsFlows: () => o.log.isLevelEnabled('info'),
    flushSuppressed,
    stop() {
      if (summary) clearTimeout(summary);
      summary = null;
    },
  };
}
