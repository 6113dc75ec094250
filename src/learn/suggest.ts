// `tessera policy suggest`: observed edges → a least-privilege policy in the ordinary YAML
// language, every rule with its evidence as comments. Only what was seen is allowed: per
// pair of groups the server ports they used (the server's port: the client's ephemeral port
// is never recorded), peers without Tessera as CIDR blocks (bounded per rule), everything
// else falls to default:reject. Rare edges are kept and flagged. Pure and deterministic:
// the same table and options give the same text, byte for byte.

import { connections, type Edge, type EdgeTableJson } from './edges.js';
import { generalize, type Group } from './generalize.js';
import { aggregateCidrs } from './cidrs.js';

export interface SuggestOptions {
  /** "Now", for --since and for flagging stale edges (ms since the epoch). */
  readonly now: number;
  /** Only edges last seen at or after this time (ms). */
  readonly since?: number;
  /** At most this many CIDR blocks per family per rule (default 8). */
  readonly maxCidrs?: number;
  /** Edges with fewer connections are flagged rare (default 3). */
  readonly rareCount?: number;
  /** Edges last seen longer ago than this are flagged rare (ms, default 7 days). */
  readonly staleMs?: number;
  readonly name?: string;
}

export interface SuggestedRule {
  readonly id: string;
  readonly from: { group: Group } | { networks: string[] } ;
  readonly to: { group: Group } | { networks: string[] };
  readonly ports: number[];
  readonly protocol: 'tcp' | 'udp';
  readonly connections: number;
  readonly rare: boolean;
  readonly comments: string[];
}

export interface Suggestion {
  readonly text: string;
  readonly rules: readonly SuggestedRule[];
  readonly groups: readonly Group[];
  /** Edges considered (after --since). */
  readonly edges: number;
  readonly warnings: readonly string[];
}

const EPHEMERAL_LO = 32768;
const EPHEMERAL_HI = 60999;
const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

function seenSets(edges: readonly Edge[]): Array<{ labels: readonly string[]; pus: Set<string>; more: number }> {
  const m = new Map<string, { labels: readonly string[]; pus: Set<string>; more: number }>();
  const add = (labels: readonly string[], ids: readonly string[], more: number): void => {
    const k = [...labels].sort().join('\n');
    let s = m.get(k);
    if (!s) m.set(k, (s = { labels, pus: new Set(), more: 0 }));
    for (const id of ids) s.pus.add(id);
    s.more = Math.max(s.more, more);
  };
  for (const e of edges) {
    if ('labels' in e.client) add(e.client.labels, e.clientPus, e.morePus);
    if ('labels' in e.server) add(e.server.labels, e.serverPus, e.morePus);
  }
  return [...m.keys()].sort().map((k) => m.get(k)!);
}

const PLAIN = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/;
const yamlStr = (s: string): string => (PLAIN.test(s) && !/^(true|false|yes|no|null|on|off|~)$/i.test(s) ? s : JSON.stringify(s));

function selectorYaml(labels: readonly string[]): string {
  if (labels.length === 0) return '{}';
  return `{${labels.map((l) => `${yamlStr(l.slice(0, l.indexOf('=')))}: ${yamlStr(l.slice(l.indexOf('=') + 1))}`).join(', ')}}`;
}

interface Acc {
  from: Group | null;
  to: Group | null;
  protocol: 'tcp' | 'udp';
  ports: Map<number, { conns: number; first: number; last: number }>;
  addrs: Set<string>;
  clientPus: Set<string>;
  serverPus: Set<string>;
  first: number;
  last: number;
}

export function suggest(table: EdgeTableJson, o: SuggestOptions): Suggestion {
  const maxCidrs = o.maxCidrs ?? 8;
  const rareCount = o.rareCount ?? 3;
  const staleMs = o.staleMs ?? 7 * 24 * 3600_000;
  const edges = table.edges.filter((e) => o.since === undefined || e.last >= o.since).filter((e) => 'labels' in e.client || 'labels' in e.server);
  const gen = generalize(seenSets(edges));
  const warnings: string[] = [];
  if (table.dropped > 0) warnings.push(`${table.dropped} new edges were not recorded because the table was full (${table.maxEdges} edges): flows among them would be refused`);

  // Accumulate per (client group | external, server group | external, protocol); an
  // external side keeps its port in the key so that one resolver's port is not opened to
  // every address of another rule.
  const accs = new Map<string, Acc>();
  for (const e of edges) {
    const from = 'labels' in e.client ? gen.groupOf(e.client.labels) : null;
    const to = 'labels' in e.server ? gen.groupOf(e.server.labels) : null;
    const key = `${from?.name ?? `ext:${e.port}`}|${to?.name ?? `ext:${e.port}`}|${e.protocol}`;
    let a = accs.get(key);
    if (!a) accs.set(key, (a = { from, to, protocol: e.protocol, ports: new Map(), addrs: new Set(), clientPus: new Set(), serverPus: new Set(), first: e.first, last: e.last }));
    const p = a.ports.get(e.port) ?? { conns: 0, first: e.first, last: e.last };
    p.conns += connections(e);
    p.first = Math.min(p.first, e.first);
    p.last = Math.max(p.last, e.last);
    a.ports.set(e.port, p);
    if ('addr' in e.client) a.addrs.add(e.client.addr);
    if ('addr' in e.server) a.addrs.add(e.server.addr);
    for (const id of e.clientPus) a.clientPus.add(id);
    for (const id of e.serverPus) a.serverPus.add(id);
    a.first = Math.min(a.first, e.first);
    a.last = Math.max(a.last, e.last);
  }

  const rules: SuggestedRule[] = [];
  const ids = new Set<string>();
  // Code-unit order (never the locale's): by server group, then client group; external sides last.
  const cmp = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);
  const order = [...accs.entries()].sort(([ka, a], [kb, b]) => cmp(a.to?.name ?? '\uffff', b.to?.name ?? '\uffff') || cmp(a.from?.name ?? '\uffff', b.from?.name ?? '\uffff') || cmp(ka, kb));
  for (const [, a] of order) {
    const ports = [...a.ports.keys()].sort((x, y) => x - y);
    const conns = [...a.ports.values()].reduce((s, p) => s + p.conns, 0);
    const comments: string[] = [];
    let from: SuggestedRule['from'];
    let to: SuggestedRule['to'];
    if (a.from && a.to) {
      from = { group: a.from };
      to = { group: a.to };
    } else {
      const agg = aggregateCidrs([...a.addrs].sort(), maxCidrs);
      if (agg.widened) comments.push(`${a.addrs.size} addresses seen, aggregated into ${agg.cidrs.length} block${agg.cidrs.length === 1 ? '' : 's'} (at most ${maxCidrs} per family)`);
      else comments.push(`${a.addrs.size} address${a.addrs.size === 1 ? '' : 'es'} seen, without Tessera`);
      if (a.from) {
        from = { group: a.from };
        to = { networks: agg.cidrs };
      } else {
        from = { networks: agg.cidrs };
        to = { group: a.to! };
      }
    }
    const fromName = 'group' in from ? from.group.name : 'net';
    const toName = 'group' in to ? to.group.name : 'net';
    let id = `${fromName}-to-${toName}${'networks' in from || 'networks' in to ? `-${ports[0]}` : ''}`.slice(0, 60);
    for (let n = 2; ids.has(id); n++) id = `${fromName}-to-${toName}-${n}`.slice(0, 64);
    ids.add(id);
    const puText = (s: Set<string>, g: SuggestedRule['from']): string => ('group' in g ? `${s.size} ${'PU' + (s.size === 1 ? '' : 's')}` : 'no Tessera');
    comments.unshift(`${conns} connection${conns === 1 ? '' : 's'} from ${puText(a.clientPus, from)} to ${puText(a.serverPus, to)}, first ${iso(a.first)}, last ${iso(a.last)}`);
    let rare = false;
    for (const p of ports) {
      const s = a.ports.get(p)!;
      const why: string[] = [];
      if (s.conns < rareCount) why.push(`seen ${s.conns} time${s.conns === 1 ? '' : 's'}`);
      if (o.now - s.last > staleMs) why.push(`last seen ${iso(s.last)}`);
      if (why.length > 0) {
        rare = true;
        comments.push(`RARE: port ${p} ${why.join(', ')}: check it before enforcing`);
      }
      if (p >= EPHEMERAL_LO && p <= EPHEMERAL_HI) comments.push(`port ${p} is in the ephemeral range: a server listened there (the server's port is recorded, never the client's)`);
    }
    rules.push({ id, from, to, ports, protocol: a.protocol, connections: conns, rare, comments });
  }

  const lines: string[] = [];
  lines.push(`# Suggested by tessera policy suggest from ${edges.length} observed edge${edges.length === 1 ? '' : 's'}${o.since !== undefined ? ` seen since ${iso(o.since)}` : ''}.`);
  lines.push('# Only what was observed is allowed; everything else falls to default:reject.');
  for (const w of warnings) lines.push(`# WARNING: ${w}`);
  if (gen.groups.length > 0) lines.push('# Groups (labels chosen, and why):');
  for (const g of gen.groups) lines.push(`#   ${g.name} ${selectorYaml(g.selector)}: ${g.evidence}${g.selector.length === 0 ? '; NO stable label: the selector matches every PU' : ''}`);
  lines.push('version: 1');
  lines.push(`name: ${yamlStr(o.name ?? 'suggested')}`);
  lines.push(rules.length === 0 ? 'rules: []' : 'rules:');
  for (const r of rules) {
    for (const c of r.comments) lines.push(`  # ${c}`);
    lines.push(`  - id: ${r.id}`);
    if ('group' in r.from) lines.push(`    from: ${selectorYaml(r.from.group.selector)}`);
    else lines.push(`    fromNetworks: [${r.from.networks.map(yamlStr).join(', ')}]`);
    if ('group' in r.to) lines.push(`    to: ${selectorYaml(r.to.group.selector)}`);
    else lines.push(`    toNetworks: [${r.to.networks.map(yamlStr).join(', ')}]`);
    if (r.protocol !== 'tcp') lines.push(`    protocol: ${r.protocol}`);
    lines.push(`    ports: [${r.ports.join(', ')}]`);
    lines.push('    action: allow');
  }
  return { text: `${lines.join('\n')}\n`, rules, groups: gen.groups, edges: edges.length, warnings };
}
