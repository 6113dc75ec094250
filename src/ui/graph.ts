// The flow map's model: flow records in, a graph out (nodes = groups of PUs by one label
// key, or address groups for peers without Tessera; edges = client group -> server group
// with counts and the latest verdict). Pure: no I/O, the clock is a parameter. The UI's
// HTTP handler serves what this computes; the page only draws it.

import type { FlowEntry } from '../api/schemas.js';

/** How the map colours an edge: what its latest decision was. */
export type VerdictClass = 'allowed' | 'refused' | 'audit' | 'learning';
export const VERDICT_CLASSES: readonly VerdictClass[] = ['allowed', 'refused', 'audit', 'learning'];

export interface GraphFilter {
  /** Milliseconds since the epoch; records before are left out. */
  since?: number;
  until?: number;
  /** Only records of these classes (empty or absent: all). */
  verdicts?: readonly VerdictClass[];
  /** "key=value" (or a bare "key"): one of the two ends must carry it. */
  label?: string;
  reasons?: readonly string[];
  /** The server's port. */
  port?: number;
}

export interface GraphOptions {
  /** The label key that groups PUs into nodes (default `app`). */
  groupBy?: string;
  /** Prefix length for address groups of IPv4 peers without Tessera (default 24; IPv6: /64). */
  addrBits?: number;
  /** Above this many nodes, nodes carry their island (connected component) to be drawn apart. */
  islandThreshold?: number;
}

export interface GraphNode {
  id: string;
  kind: 'pu' | 'address' | 'host';
  label: string;
  /** PU ids seen in this group (PU nodes only; at most 50 kept). */
  pus: string[];
  /** Hosts seen in this group (PU nodes only). */
  hosts: string[];
  /** Index into `islands`, or -1 when islands are off. */
  island: number;
}

export interface GraphEdge {
  id: string;
  source: string;
  target: string;
  /** Distinct connections (a connection seen by both hosts, or retried, counts once). */
  connections: number;
  records: number;
  /** The class of the latest record: what the edge is drawn as. */
  verdict: VerdictClass;
  /** Records per class. */
  byClass: Record<VerdictClass, number>;
  ports: number[];
  reasons: string[];
  /** ISO time of the latest record. */
  last: string;
}

export interface Graph {
  groupBy: string;
  nodes: GraphNode[];
  edges: GraphEdge[];
  /** Node ids per connected component, largest first; empty when under the threshold. */
  islands: string[][];
  /** Records that passed the filter. */
  records: number;
}

export interface LocalView {
  host: string;
  pus: ReadonlyArray<{ id: string; labels: readonly string[] }>;
}

const DEFAULT_ISLAND_THRESHOLD = 40;
const MAX_LIST = 50;

export function classOf(f: Pick<FlowEntry, 'verdict' | 'reason'>): VerdictClass {
  if (f.verdict !== 'accept') return 'refused';
  if (f.reason === 'audit') return 'audit';
  if (f.reason === 'learning' || f.reason === 'learn') return 'learning';
  return 'allowed';
}

/** The server's port of a record (the local port when we are the server). */
export function serverPort(f: FlowEntry): number {
  return f.direction === 'ingress' ? f.localPort : f.remotePort;
}

function labelValue(labels: readonly string[], key: string): string | undefined {
  const prefix = key + '=';
  for (const l of labels) if (l.startsWith(prefix)) return l.slice(prefix.length);
  return undefined;
}

export function puGroupId(labels: readonly string[], key: string): string {
  const v = labelValue(labels, key);
  return v === undefined ? `pu:!${key}` : `pu:${key}=${v}`;
}

function puGroupLabel(id: string, key: string): string {
  return id === `pu:!${key}` ? `(no ${key} label)` : id.slice(3);
}

/** The address group of a peer without Tessera: its /bits (IPv4) or /64 (IPv6). */
export function addressGroup(addr: string, bits = 24): string {
  const v4 = /^(?:::ffff:)?(\d+)\.(\d+)\.(\d+)\.(\d+)$/i.exec(addr);
  if (v4) {
    const n = ((+v4[1]! << 24) | (+v4[2]! << 16) | (+v4[3]! << 8) | +v4[4]!) >>> 0;
    const b = Math.max(0, Math.min(32, Math.trunc(bits)));
    const masked = b === 0 ? 0 : (n & (0xffffffff << (32 - b))) >>> 0;
    return `${masked >>> 24}.${(masked >>> 16) & 255}.${(masked >>> 8) & 255}.${masked & 255}/${b}`;
  }
  if (addr.includes(':')) {
    const [head = '', tail = ''] = addr.split('::');
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const full = addr.includes('::') ? [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t] : h;
    return `${full.slice(0, 4).map((x) => x || '0').join(':')}::/64`;
  }
  return addr;
}

function hasLabel(labels: readonly string[] | null, want: string): boolean {
  if (!labels) return false;
  return want.includes('=') ? labels.includes(want) : labels.some((l) => l.startsWith(want + '='));
}

export function matches(f: FlowEntry, filter: GraphFilter, t = Date.parse(f.time)): boolean {
  if (filter.since !== undefined && t < filter.since) return false;
  if (filter.until !== undefined && t > filter.until) return false;
  if (filter.verdicts?.length && !filter.verdicts.includes(classOf(f))) return false;
  if (filter.reasons?.length && !filter.reasons.includes(f.reason)) return false;
  if (filter.port !== undefined && serverPort(f) !== filter.port) return false;
  if (filter.label && !hasLabel(f.localLabels, filter.label) && !hasLabel(f.remoteLabels, filter.label)) return false;
  return true;
}

interface End {
  id: string;
  kind: GraphNode['kind'];
  pu: string | null;
  host: string | null;
}

/** The two ends of a record: client and server, each a node id. */
export function endsOf(f: FlowEntry, key: string, addrBits = 24): { client: End; server: End } {
  const local: End = f.localLabels
    ? { id: puGroupId(f.localLabels, key), kind: 'pu', pu: f.localPu, host: null }
    : { id: 'host:local', kind: 'host', pu: null, host: null };
  const remote: End = f.remoteLabels
    ? { id: puGroupId(f.remoteLabels, key), kind: 'pu', pu: f.remotePu, host: f.remoteHost }
    : { id: `addr:${addressGroup(f.remoteAddr, addrBits)}`, kind: 'address', pu: null, host: null };
  return f.direction === 'ingress' ? { client: remote, server: local } : { client: local, server: remote };
}

/** The edge id of a record: which edge its flows are listed under when the edge is clicked. */
export function edgeIdOf(f: FlowEntry, key: string, addrBits = 24): string {
  const { client, server } = endsOf(f, key, addrBits);
  return `${client.id}->${server.id}`;
}

/**
 * A connection's identity as both hosts can name it: the client's port and the server's port
 * (the addresses are each host's own view and differ). Retransmitted SYNs share it too.
 */
function connectionKey(edge: string, f: FlowEntry): string {
  const clientPort = f.direction === 'ingress' ? f.remotePort : f.localPort;
  return `${edge}|${clientPort}|${serverPort(f)}`;
}

/** Connected components (edges taken undirected), largest first, ties by first node id. */
export function components(nodeIds: readonly string[], edges: ReadonlyArray<{ source: string; target: string }>): string[][] {
  const parent = new Map<string, string>();
  for (const n of nodeIds) parent.set(n, n);
  const find = (x: string): string => {
    let r = x;
    while (parent.get(r) !== r) r = parent.get(r)!;
    let c = x;
    while (c !== r) {
      const next = parent.get(c)!;
      parent.set(c, r);
      c = next;
    }
    return r;
  };
  for (const e of edges) {
    if (!parent.has(e.source) || !parent.has(e.target)) continue;
    const a = find(e.source);
    const b = find(e.target);
    if (a !== b) parent.set(a < b ? b : a, a < b ? a : b);
  }
  const groups = new Map<string, string[]>();
  for (const n of nodeIds) {
    const r = find(n);
    let g = groups.get(r);
    if (!g) groups.set(r, (g = []));
    g.push(n);
  }
  return [...groups.values()].sort((a, b) => b.length - a.length || (a[0]! < b[0]! ? -1 : 1));
}

function addCapped(list: string[], v: string | null): void {
  if (v !== null && list.length < MAX_LIST && !list.includes(v)) list.push(v);
}

export function buildGraph(flows: readonly FlowEntry[], filter: GraphFilter = {}, opts: GraphOptions = {}, local?: LocalView): Graph {
  const key = opts.groupBy || 'app';
  const bits = opts.addrBits ?? 24;
  const nodes = new Map<string, GraphNode>();
  const edges = new Map<string, GraphEdge & { conns: Set<string>; lastT: number }>();
  const node = (e: End): GraphNode => {
    let n = nodes.get(e.id);
    if (!n) {
      const label = e.kind === 'pu' ? puGroupLabel(e.id, key) : e.kind === 'host' ? 'this host (no PU)' : e.id.slice(5);
      nodes.set(e.id, (n = { id: e.id, kind: e.kind, label, pus: [], hosts: [], island: -1 }));
    }
    addCapped(n.pus, e.pu);
    addCapped(n.hosts, e.host);
    return n;
  };
  if (local) {
    for (const p of local.pus) node({ id: puGroupId(p.labels, key), kind: 'pu', pu: p.id, host: local.host });
  }
  let records = 0;
  for (const f of flows) {
    const t = Date.parse(f.time);
    if (!matches(f, filter, t)) continue;
    records++;
    const { client, server } = endsOf(f, key, bits);
    if (local && client.kind === 'pu' && f.direction === 'egress') client.host = local.host;
    if (local && server.kind === 'pu' && f.direction === 'ingress') server.host = local.host;
    node(client);
    node(server);
    const id = `${client.id}->${server.id}`;
    let e = edges.get(id);
    if (!e) {
      e = { id, source: client.id, target: server.id, connections: 0, records: 0, verdict: 'allowed', byClass: { allowed: 0, refused: 0, audit: 0, learning: 0 }, ports: [], reasons: [], last: f.time, conns: new Set(), lastT: -Infinity };
      edges.set(id, e);
    }
    const cls = classOf(f);
    e.records++;
    e.byClass[cls]++;
    e.conns.add(connectionKey(id, f));
    const port = serverPort(f);
    if (e.ports.length < MAX_LIST && !e.ports.includes(port)) e.ports.push(port);
    addCapped(e.reasons, f.reason);
    if (t >= e.lastT) {
      e.lastT = t;
      e.last = f.time;
      e.verdict = cls;
    }
  }
  const edgeList: GraphEdge[] = [...edges.values()].map(({ conns, lastT: _t, ...e }) => ({ ...e, connections: conns.size, ports: e.ports.sort((a, b) => a - b) }));
  const nodeList = [...nodes.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  edgeList.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  let islands: string[][] = [];
  if (nodeList.length > (opts.islandThreshold ?? DEFAULT_ISLAND_THRESHOLD)) {
    islands = components(
      nodeList.map((n) => n.id),
      edgeList,
    );
    const index = new Map<string, number>();
    islands.forEach((g, i) => g.forEach((id) => index.set(id, i)));
    for (const n of nodeList) n.island = index.get(n.id) ?? -1;
  }
  return { groupBy: key, nodes: nodeList, edges: edgeList, islands, records };
}

/** A duration ("15m", "2h", "30s", "1d") or a time (ms since the epoch, or ISO) -> ms since the epoch. */
export function parseTime(text: string | null | undefined, now: number): number | undefined | Error {
  if (text === null || text === undefined || text === '') return undefined;
  const d = /^(\d+)(s|m|h|d)$/.exec(text);
  if (d) return now - Number(d[1]) * { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[d[2] as 's' | 'm' | 'h' | 'd'];
  if (/^\d+$/.test(text)) return Number(text);
  const t = Date.parse(text);
  return Number.isNaN(t) ? new Error(`not a time or duration: ${JSON.stringify(text)} (use e.g. 15m, 2h, or an ISO time)`) : t;
}

function list(text: string | null): string[] {
  return text ? text.split(',').map((s) => s.trim()).filter(Boolean) : [];
}

/** The filter and options of a query string (the page's URL uses the same names). An Error names the bad parameter. */
export function parseQuery(q: URLSearchParams, now: number): { filter: GraphFilter; opts: GraphOptions } | Error {
  const filter: GraphFilter = {};
  const opts: GraphOptions = {};
  const since = parseTime(q.get('since'), now);
  const until = parseTime(q.get('until'), now);
  if (since instanceof Error) return new Error(`since: ${since.message}`);
  if (until instanceof Error) return new Error(`until: ${until.message}`);
  if (since !== undefined) filter.since = since;
  if (until !== undefined) filter.until = until;
  const verdicts = list(q.get('verdict'));
  const bad = verdicts.find((v) => !VERDICT_CLASSES.includes(v as VerdictClass));
  if (bad) return new Error(`verdict: ${JSON.stringify(bad)} is not one of ${VERDICT_CLASSES.join(', ')}`);
  if (verdicts.length) filter.verdicts = verdicts as VerdictClass[];
  const reasons = list(q.get('reason'));
  if (reasons.length) filter.reasons = reasons;
  const label = q.get('label');
  if (label) filter.label = label;
  const port = q.get('port');
  if (port) {
    if (!/^\d+$/.test(port) || +port > 65535) return new Error(`port: ${JSON.stringify(port)} is not a port number`);
    filter.port = +port;
  }
  const by = q.get('by');
  if (by) {
    if (!/^[A-Za-z0-9_.\/-]{1,63}$/.test(by)) return new Error(`by: ${JSON.stringify(by)} is not a label key`);
    opts.groupBy = by;
  }
  const net = q.get('net');
  if (net) {
    if (!/^\d+$/.test(net) || +net > 32) return new Error(`net: ${JSON.stringify(net)} is not an IPv4 prefix length (0-32)`);
    opts.addrBits = +net;
  }
  return { filter, opts };
}
