// Learn mode's memory: bounded summaries of the connections a host saw, one entry per edge
// (client side, server side, server port, protocol), never one per connection. A side is a
// Tessera PU's label set as it presented it, or a peer without Tessera by its address.
// Pure: the datapath worker feeds it one flow record at a time, the daemon merges the
// workers' drained tables, persists and publishes the serialized form (docs/learning.md).
//
// The bound: at most `maxEdges` entries (default 4096). When the table is full a new edge
// is not recorded: it is counted in `dropped` (suggest says so), existing edges keep
// counting. Each edge keeps at most MAX_PUS distinct PU ids per side (more are counted in
// `morePus`), at most MAX_LABELS labels per side. Only ACCEPTED records are observed (learn
// and audit allow; a refused connection is in the flow log, and a flood of refused SYNs must
// not fill the table).

import type { FlowRecord } from '../flow.js';

export const DEFAULT_MAX_EDGES = 4096;
export const MAX_PUS = 16;
export const MAX_LABELS = 64;
const MAX_LABEL_CHARS = 320;

/** A Tessera PU by its labels (sorted "k=v"), or a peer without Tessera by address. */
export type Side = { readonly labels: readonly string[] } | { readonly addr: string };

export interface Edge {
  readonly client: Side;
  readonly server: Side;
  readonly port: number;
  readonly protocol: 'tcp' | 'udp';
  /** Connections seen from the server's host (ingress) and from the client's host (egress). */
  ingress: number;
  egress: number;
  /** ms since the epoch. */
  first: number;
  last: number;
  /** Distinct PU ids seen on each side (at most MAX_PUS each). */
  clientPus: string[];
  serverPus: string[];
  /** PU ids that did not fit in clientPus/serverPus (an upper bound on the extra ones). */
  morePus: number;
  /** Modes the deciding host's local PU ran in when this edge was seen. */
  modes: string[];
}

export interface EdgeTableJson {
  readonly version: 1;
  readonly maxEdges: number;
  readonly dropped: number;
  readonly edges: readonly Edge[];
}

/** The subset of a flow record observation reads (FlowRecord plus the optional fields others add). */
export type Observed = Pick<FlowRecord, 'time' | 'direction' | 'verdict' | 'localPu' | 'localLabels' | 'localPort' | 'remoteAddr' | 'remotePort' | 'remotePu' | 'remoteLabels'> & {
  readonly protocol?: 'tcp' | 'udp';
  readonly mode?: string;
};

const sideKeys = new WeakMap<readonly string[], { key: string; labels: readonly string[] }>();

function labelSide(labels: readonly string[]): { key: string; labels: readonly string[] } {
  let s = sideKeys.get(labels);
  if (s === undefined) {
    const clean = [...new Set(labels.filter((l) => typeof l === 'string' && l.length <= MAX_LABEL_CHARS && l.indexOf('=') > 0))].sort().slice(0, MAX_LABELS);
    s = { key: `L${clean.join('\n')}`, labels: Object.freeze(clean) };
    // Label arrays are reused (token claims, the worker's PU table) and treated as immutable,
    // as the policy's label cache treats them: cached by identity.
    sideKeys.set(labels, s);
  }
  return s;
}

function sideKey(s: Side): string {
  return 'addr' in s ? `A${s.addr}` : labelSide(s.labels).key;
}

export function edgeKey(e: Pick<Edge, 'client' | 'server' | 'port' | 'protocol'>): string {
  return `${sideKey(e.client)}|${sideKey(e.server)}|${e.port}|${e.protocol}`;
}

function addPu(list: string[], id: string | null, e: Edge): void {
  if (id === null || list.includes(id)) return;
  if (list.length < MAX_PUS) list.push(id);
  else e.morePus++;
}

export class EdgeTable {
  readonly maxEdges: number;
  /** New edges not recorded because the table was full. */
  dropped = 0;
  /** client side key → server side key → port*2+udp → edge. Side keys are cached strings
   *  (their hash is computed once), so a lookup never builds a key per record. */
  private readonly edges = new Map<string, Map<string, Map<number, Edge>>>();
  private count = 0;

  private find(ck: string, sk: string, pp: number): Edge | undefined {
    return this.edges.get(ck)?.get(sk)?.get(pp);
  }

  private insert(ck: string, sk: string, pp: number, e: Edge): void {
    let byServer = this.edges.get(ck);
    if (byServer === undefined) this.edges.set(ck, (byServer = new Map()));
    let byPort = byServer.get(sk);
    if (byPort === undefined) byServer.set(sk, (byPort = new Map()));
    byPort.set(pp, e);
    this.count++;
  }

  constructor(maxEdges = DEFAULT_MAX_EDGES) {
    if (!Number.isInteger(maxEdges) || maxEdges < 1) throw new RangeError(`maxEdges must be a positive integer, not ${String(maxEdges)}`);
    this.maxEdges = maxEdges;
  }

  get size(): number {
    return this.count;
  }

  /** One flow record of a deciding step. Refusals are ignored. */
  observe(r: Observed): void {
    if (r.verdict !== 'accept') return;
    const protocol = r.protocol ?? 'tcp';
    const local = r.localLabels ? labelSide(r.localLabels) : null;
    if (!local) return; // every deciding record has a local PU; be safe with odd input
    const remote = r.remoteLabels ? labelSide(r.remoteLabels) : null;
    const remoteKey = remote ? remote.key : `A${r.remoteAddr}`;
    const ingress = r.direction === 'ingress';
    const port = ingress ? r.localPort : r.remotePort;
    const pp = port * 2 + (protocol === 'udp' ? 1 : 0);
    const ck = ingress ? remoteKey : local.key;
    const sk = ingress ? local.key : remoteKey;
    let e = this.find(ck, sk, pp);
    if (e === undefined) {
      if (this.count >= this.maxEdges) {
        this.dropped++;
        return;
      }
      const remoteSide: Side = remote ? { labels: remote.labels } : { addr: r.remoteAddr };
      const localSide: Side = { labels: local.labels };
      e = {
        client: ingress ? remoteSide : localSide,
        server: ingress ? localSide : remoteSide,
        port,
        protocol,
        ingress: 0,
        egress: 0,
        first: r.time,
        last: r.time,
        clientPus: [],
        serverPus: [],
        morePus: 0,
        modes: [],
      };
      this.insert(ck, sk, pp, e);
    }
    if (ingress) e.ingress++;
    else e.egress++;
    if (r.time < e.first) e.first = r.time;
    if (r.time > e.last) e.last = r.time;
    addPu(ingress ? e.serverPus : e.clientPus, r.localPu, e);
    addPu(ingress ? e.clientPus : e.serverPus, r.remotePu, e);
    if (r.mode !== undefined && !e.modes.includes(r.mode) && e.modes.length < 3) e.modes.push(r.mode);
  }

  /** Adds another table's edges (another worker's, another host's, an older saved one). */
  merge(other: EdgeTable | EdgeTableJson): void {
    const edges = other instanceof EdgeTable ? other.list() : other.edges;
    this.dropped += other.dropped;
    for (const o of edges) {
      const ck = sideKey(o.client);
      const sk = sideKey(o.server);
      const pp = o.port * 2 + (o.protocol === 'udp' ? 1 : 0);
      const e = this.find(ck, sk, pp);
      if (e === undefined) {
        if (this.count >= this.maxEdges) {
          this.dropped += 1;
          continue;
        }
        this.insert(ck, sk, pp, cloneEdge(o));
        continue;
      }
      e.ingress += o.ingress;
      e.egress += o.egress;
      e.first = Math.min(e.first, o.first);
      e.last = Math.max(e.last, o.last);
      e.morePus += o.morePus;
      for (const id of o.clientPus) addPu(e.clientPus, id, e);
      for (const id of o.serverPus) addPu(e.serverPus, id, e);
      for (const m of o.modes) if (!e.modes.includes(m) && e.modes.length < 3) e.modes.push(m);
    }
  }

  /** The edges, sorted by key (deterministic). */
  list(): Edge[] {
    const out: Array<[string, Edge]> = [];
    for (const byServer of this.edges.values()) for (const byPort of byServer.values()) for (const e of byPort.values()) out.push([edgeKey(e), e]);
    return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([, e]) => e);
  }

  toJSON(): EdgeTableJson {
    return { version: 1, maxEdges: this.maxEdges, dropped: this.dropped, edges: this.list().map(cloneEdge) };
  }

  /** The table's content, emptied (a worker's periodic hand-over); null when there is nothing. */
  drain(): EdgeTableJson | null {
    if (this.edges.size === 0 && this.dropped === 0) return null;
    const j = this.toJSON();
    this.edges.clear();
    this.count = 0;
    this.dropped = 0;
    return j;
  }

  /** A table from its serialized form; throws RangeError/TypeError on anything malformed. */
  static fromJSON(j: unknown, maxEdges?: number): EdgeTable {
    const t = new EdgeTable(maxEdges ?? (isObj(j) && Number.isInteger(j.maxEdges) && (j.maxEdges as number) > 0 ? (j.maxEdges as number) : DEFAULT_MAX_EDGES));
    t.merge(parseTable(j));
    return t;
  }
}

function cloneEdge(e: Edge): Edge {
  return {
    client: cloneSide(e.client),
    server: cloneSide(e.server),
    port: e.port,
    protocol: e.protocol,
    ingress: e.ingress,
    egress: e.egress,
    first: e.first,
    last: e.last,
    clientPus: [...e.clientPus],
    serverPus: [...e.serverPus],
    morePus: e.morePus,
    modes: [...e.modes],
  };
}

function cloneSide(s: Side): Side {
  return 'addr' in s ? { addr: s.addr } : { labels: labelSide(s.labels).labels };
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const count = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const strings = (v: unknown, max: number): v is string[] => Array.isArray(v) && v.length <= max && v.every((s) => typeof s === 'string' && s.length <= MAX_LABEL_CHARS);

function parseSide(v: unknown): Side {
  if (isObj(v) && typeof v.addr === 'string' && v.addr.length <= 64) return { addr: v.addr };
  if (isObj(v) && Array.isArray(v.labels) && v.labels.length <= MAX_LABELS * 4 && v.labels.every((l) => typeof l === 'string')) return { labels: v.labels as string[] };
  throw new TypeError('an edge side must be {labels: [...]} or {addr: "..."}');
}

/** Validates a serialized table (from disk, the store or a worker). */
export function parseTable(j: unknown): EdgeTableJson {
  if (!isObj(j) || j.version !== 1 || !Array.isArray(j.edges)) throw new TypeError('not an edge table (version 1)');
  const edges: Edge[] = j.edges.map((x: unknown) => {
    if (!isObj(x)) throw new TypeError('an edge must be an object');
    const port = x.port;
    if (!Number.isInteger(port) || (port as number) < 0 || (port as number) > 65535) throw new RangeError(`edge port ${String(port)} is not a port`);
    if (x.protocol !== 'tcp' && x.protocol !== 'udp') throw new TypeError('edge protocol must be tcp or udp');
    if (!count(x.ingress) || !count(x.egress) || !count(x.first) || !count(x.last) || !count(x.morePus)) throw new TypeError('edge counts must be non-negative integers');
    if (!strings(x.clientPus, MAX_PUS) || !strings(x.serverPus, MAX_PUS) || !strings(x.modes, 3)) throw new TypeError('edge PU lists must be short string lists');
    return {
      client: parseSide(x.client),
      server: parseSide(x.server),
      port: port as number,
      protocol: x.protocol,
      ingress: x.ingress,
      egress: x.egress,
      first: x.first,
      last: x.last,
      clientPus: x.clientPus,
      serverPus: x.serverPus,
      morePus: x.morePus,
      modes: x.modes,
    };
  });
  return { version: 1, maxEdges: Number.isInteger(j.maxEdges) ? (j.maxEdges as number) : DEFAULT_MAX_EDGES, dropped: count(j.dropped) ? j.dropped : 0, edges };
}

/** Connections an edge stands for: each host that runs Tessera saw it once. */
export function connections(e: Edge): number {
  return Math.max(e.ingress, e.egress);
}
