// The accept records a worker keeps, without sending them, for `tessera flows --revoke`
// (queue.worker.ts: while nobody follows or logs accepts). One record per authorized
// connection, at 10k+ connections a second, kept for seconds: as objects (a tuple, a
// "addr|port|port|stage" key in an Lru of Maps) each survived two scavenges and was promoted,
// so the worker's old generation churned at the connection rate and V8 ran major GCs (and
// the scavenges copied every record twice); the Map lookup of a fresh cons-string key cost
// more again. Measured on the kernel path (docs/performance.md, "Where the time goes").
//
// Here a record is a row of preallocated typed arrays plus references to objects that
// already live long (the PU table's ids and labels, the peer cache's, the policy's rule ids,
// interned remote addresses), so keeping one allocates nothing that survives the packet.
// The newest `capacity` records are kept; the daemon's revoke memory dedupes them by tuple.

import type { FlowRecord } from '../flow.js';
import type { FlowTuple } from './messages.js';

const DIRECTIONS: readonly FlowRecord['direction'][] = ['ingress', 'egress'];
const STAGES: readonly FlowRecord['stage'][] = ['syn', 'syn-ack', 'ack', 'hello', 'reply', 'confirm', 'datagram'];
const VERDICTS: readonly FlowRecord['verdict'][] = ['accept', 'reject', 'drop'];
const MODES: readonly (FlowRecord['mode'] | null)[] = [null, 'learn', 'audit'];

/** References per row: reason, ruleId, localPu, localLabels, remoteAddr, remoteHost, remotePu, remoteLabels, observed. */
const REFS = 9;
/** Distinct remote addresses interned before the table starts over (rows keep their strings). */
const MAX_ADDRESSES = 4096;

export class AcceptedRing {
  readonly capacity: number;
  readonly #time: Float64Array;
  /** localPort << 16 | remotePort. */
  readonly #ports: Uint32Array;
  /** direction | stage << 1 | verdict << 4 | mode << 6 | udp << 8. */
  readonly #codes: Uint16Array;
  readonly #refs: unknown[];
  #next = 0;
  #size = 0;
  #addresses = new Map<string, string>();

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be an integer >= 1, got ${String(capacity)}`);
    this.capacity = capacity;
    this.#time = new Float64Array(capacity);
    this.#ports = new Uint32Array(capacity);
    this.#codes = new Uint16Array(capacity);
    this.#refs = new Array<unknown>(capacity * REFS).fill(null);
  }

  get size(): number {
    return this.#size;
  }

  /** Keep r (overwriting the oldest row when full). */
  push(r: FlowRecord): void {
    const i = this.#next;
    this.#next = i + 1 === this.capacity ? 0 : i + 1;
    if (this.#size < this.capacity) this.#size++;
    this.#time[i] = r.time;
    this.#ports[i] = ((r.localPort & 0xffff) << 16) | (r.remotePort & 0xffff);
    const stage = STAGES.indexOf(r.stage);
    const verdict = VERDICTS.indexOf(r.verdict);
    const mode = r.mode ? MODES.indexOf(r.mode) : 0;
    this.#codes[i] = (r.direction === 'egress' ? 1 : 0) | ((stage < 0 ? 0 : stage) << 1) | ((verdict < 0 ? 0 : verdict) << 4) | ((mode < 0 ? 0 : mode) << 6) | (r.protocol === 'udp' ? 1 << 8 : 0);
    const b = i * REFS;
    const refs = this.#refs;
    refs[b] = r.reason;
    refs[b + 1] = r.ruleId;
    refs[b + 2] = r.localPu;
    refs[b + 3] = r.localLabels;
    refs[b + 4] = this.#address(r.remoteAddr);
    refs[b + 5] = r.remoteHost;
    refs[b + 6] = r.remotePu;
    refs[b + 7] = r.remoteLabels;
    refs[b + 8] = r.observed ?? null;
  }

  /** The kept records, oldest first, in the form they cross postMessage. */
  tuples(): FlowTuple[] {
    const out: FlowTuple[] = [];
    const first = this.#size < this.capacity ? 0 : this.#next;
    for (let k = 0; k < this.#size; k++) {
      const i = (first + k) % this.capacity;
      const c = this.#codes[i]!;
      const p = this.#ports[i]!;
      const b = i * REFS;
      const refs = this.#refs;
      const t: FlowTuple = [
        this.#time[i]!,
        DIRECTIONS[c & 1]!,
        STAGES[(c >> 1) & 7]!,
        VERDICTS[(c >> 4) & 3]!,
        refs[b] as string,
        refs[b + 1] as string,
        refs[b + 2] as string | null,
        refs[b + 3] as readonly string[] | null,
        p >>> 16,
        refs[b + 4] as string,
        p & 0xffff,
        refs[b + 5] as string | null,
        refs[b + 6] as string | null,
        refs[b + 7] as readonly string[] | null,
        refs[b + 8] as readonly string[] | null,
        MODES[(c >> 6) & 3] ?? null,
      ];
      if (c & (1 << 8)) t.push('udp');
      out.push(t);
    }
    return out;
  }

  /** One string per distinct address, so a row references an old string, not the packet's fresh one. */
  #address(a: string): string {
    const known = this.#addresses.get(a);
    if (known !== undefined) return known;
    if (this.#addresses.size >= MAX_ADDRESSES) this.#addresses = new Map();
    this.#addresses.set(a, a);
    return a;
  }
}
