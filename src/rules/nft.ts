// Classification in constant time: an nftables table of our own (`table inet tessera`, both
// families) that tells the iptables chains (ruleset.ts) whose packet this is, with one hash
// lookup per key, whatever the number of PUs:
//
// - input hook (just before iptables' mangle INPUT, after nat's DNAT): the kernel looks up the
//   local socket the packet is for (listening or established) and, when its cgroup v2 is a
//   PU's, sets PU_DEST and the PU's index (a verdict map keyed by cgroup at the PU's level,
//   one map per cgroup depth in use); a full socket of no PU sets HOST_SOCK. The destination
//   port's membership in two port sets sets PORT_GUARD / PORT_SERVER.
// - output hook (after iptables' mangle OUTPUT, which cleared our bits): the sending socket's
//   cgroup v2 (same maps) or net_cls classid (one map) sets the PU's index.
//
// Why nftables here and iptables elsewhere: only nftables' `socket cgroupv2` finds the owner
// of a *listening* socket while a SYN is in flight, and its maps are hash lookups; this kernel
// has no nft queue expression (CONFIG_NFT_QUEUE is off), so queueing stays with iptables'
// NFQUEUE target, reading the marks set here.
//
// Everything here is pure. nftModel() turns the PUs into keyed contents; renderNftTable()
// writes the whole table (one transaction: declare, delete, define), renderNftDelta() only the
// elements (and per-index chains) that changed, so adding a PU is one element add per map.

import { TesseraError } from '../errors.js';
import { CT_AUTHORIZED, CT_PENDING, HOST_SOCK, PORT_GUARD, PORT_SERVER, PU_DEST, PU_INDEX_MASK, hex, markForPuIndex } from '../marks.js';

export const NFT_TABLE = 'tessera';
/** Before iptables' mangle INPUT (-150), after nat's DNAT in PREROUTING. */
const INPUT_PRIORITY = 'mangle - 10';
/** After iptables' mangle OUTPUT (-150), whose TESSERA-OUTPUT clears our bits first. */
const OUTPUT_PRIORITY = 'mangle + 10';

/** Where a PU's processes live in the cgroup v2 hierarchy, as nft resolves it. */
export interface Cgroup2Ref {
  /** Relative to /sys/fs/cgroup (nft resolves the path there, in its own mount namespace). */
  path: string;
  /** The cgroup within the v2 hierarchy, without a leading slash. */
  cgroup: string;
  /** Depth of the cgroup in the v2 hierarchy (root = 0). */
  level: number;
}

export interface NftSpec {
  pus: ReadonlyArray<{ index: number; classid: number; cgroup2?: Cgroup2Ref }>;
  /** Ports judged by number for everything (PUs the lookup cannot name). */
  serverPorts: readonly number[];
  /** Every PU's ports: the fallback for what the lookup cannot place. */
  guardPorts: readonly number[];
}

/** The table's contents, keyed so that two models can be compared element by element. */
export interface NftModel {
  /** `${level} ${path}` -> PU index. */
  cgroups: Map<string, number>;
  /** net_cls classid -> PU index. */
  classids: Map<number, number>;
  server: Set<number>;
  guard: Set<number>;
  /** PU indexes (each has chains in_N and out_N). */
  indexes: Set<number>;
}

const PATH = /^[A-Za-z0-9_.:@-]+(\/[A-Za-z0-9_.:@-]+)*$/;

/** Whether a cgroup path can be written into a rule as it is (no quotes, spaces, . or ..). */
export function isRulePath(path: string): boolean {
  return PATH.test(path) && !path.split('/').some((c) => c === '.' || c === '..');
}

function fail(message: string): never {
  throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `nft table: ${message}`);
}

export function nftModel(spec: NftSpec): NftModel {
  const m: NftModel = { cgroups: new Map(), classids: new Map(), server: new Set(spec.serverPorts), guard: new Set(spec.guardPorts), indexes: new Set() };
  for (const p of spec.pus) {
    m.indexes.add(p.index);
    m.classids.set(p.classid >>> 0, p.index);
    if (!p.cgroup2) continue;
    const { path, level } = p.cgroup2;
    if (!isRulePath(path)) fail(`cgroup path ${JSON.stringify(path)} must be relative, without . or ..`);
    if (!Number.isInteger(level) || level < 1 || level > 64) fail(`cgroup level must be 1..64, got ${String(level)}`);
    m.cgroups.set(`${level} ${path}`, p.index);
  }
  return m;
}

const splitKey = (key: string): { level: number; path: string } => {
  const at = key.indexOf(' ');
  return { level: Number(key.slice(0, at)), path: key.slice(at + 1) };
};

/** The cgroup depths the model uses, sorted: one map each, per direction. */
export function levelsOf(m: NftModel): number[] {
  return [...new Set([...m.cgroups.keys()].map((k) => splitKey(k).level))].sort((a, b) => a - b);
}

const authorizedReturn = `tcp flags & (fin | syn | rst | ack) != syn ct mark & ${hex(CT_AUTHORIZED | CT_PENDING)} == ${hex(CT_AUTHORIZED)} return`;
/** Bits the input chain owns: cleared first, so only this chain's answer is read after it. */
const LOOKUP_BITS = (PU_INDEX_MASK | PU_DEST | HOST_SOCK | PORT_GUARD | PORT_SERVER) >>> 0;
const inChainRule = (index: number): string => `meta mark set meta mark & ${hex(~LOOKUP_BITS)} | ${hex(markForPuIndex(index) | PU_DEST)}`;
const outChainRule = (index: number): string => `meta mark set meta mark & ${hex(~PU_INDEX_MASK)} | ${hex(markForPuIndex(index))}`;
const cgElem = (path: string, dir: 'in' | 'out', index: number): string => `"${path}" : goto ${dir}_${index}`;

/**
 * UDP's lines of a base chain: an authorized flow skips the lookup (iptables' TESSERA-UDP-*
 * read only the connmark then); otherwise the socket's PU, as for TCP. No HOST_SOCK, no port
 * sets: a datagram to no PU's socket is the host's own.
 */
function udpLookup(dir: 'in' | 'out', levels: readonly number[]): string[] {
  return [
    `    meta l4proto udp ct mark & ${hex(CT_AUTHORIZED | CT_PENDING)} == ${hex(CT_AUTHORIZED)} return`,
    ...(dir === 'in' ? [`    meta l4proto udp meta mark set meta mark & ${hex(~LOOKUP_BITS)}`] : []),
    ...levels.map((l) => `    meta l4proto udp socket cgroupv2 level ${l} vmap @${dir}_l${l}`),
    ...(dir === 'out' ? ['    meta l4proto udp meta cgroup vmap @out_classid'] : []),
  ];
}

/** The two base chains: the same rules whatever the PUs, a lookup per map. */
function baseChains(levels: readonly number[]): string[] {
  return [
    '  chain lookup_in {',
    `    type filter hook input priority ${INPUT_PRIORITY}; policy accept;`,
    // Authorized flows stay in the kernel without a lookup (as in iptables, a bare SYN is
    // never part of one).
    `    ${authorizedReturn}`,
    `    meta l4proto tcp meta mark set meta mark & ${hex(~LOOKUP_BITS)}`,
    `    tcp dport @guard_ports meta mark set meta mark | ${hex(PORT_GUARD)}`,
    `    tcp dport @server_ports meta mark set meta mark | ${hex(PORT_SERVER)}`,
    ...levels.map((l) => `    meta l4proto tcp socket cgroupv2 level ${l} vmap @in_l${l}`),
    // Reached only when no PU owns the socket: a full socket (listening or established; the
    // expression does not match TIME_WAIT or request sockets) is the host's own.
    // Not on a port judged by number (a PU the lookup cannot name listens there): the worker
    // then consults its port map.
    `    meta l4proto tcp meta mark & ${hex(PORT_SERVER)} == 0 socket wildcard { 0, 1 } meta mark set meta mark | ${hex(HOST_SOCK)}`,
    // UDP (issue 13): the local socket a datagram is for, a PU's or not (PU_DEST).
    ...udpLookup('in', levels),
    '  }',
    '  chain lookup_out {',
    `    type filter hook output priority ${OUTPUT_PRIORITY}; policy accept;`,
    `    ${authorizedReturn}`,
    ...levels.map((l) => `    meta l4proto tcp socket cgroupv2 level ${l} vmap @out_l${l}`),
    '    meta l4proto tcp meta cgroup vmap @out_classid',
    ...udpLookup('out', levels),
    '  }',
  ];
}

const elements = (list: string[]): string => (list.length ? ` elements = { ${list.join(', ')} };` : '');

/**
 * `nft -f` input that replaces the whole table in one transaction (declare, delete, define):
 * a restarting daemon never leaves a moment without it. `chains`: the per-index chains to
 * define (default: the model's; a superset keeps chains that stale elements still name).
 */
export function renderNftTable(m: NftModel, chains: Iterable<number> = m.indexes): string {
  const levels = levelsOf(m);
  const sortNum = (s: Iterable<number>): number[] => [...s].sort((a, b) => a - b);
  const lines = [`table inet ${NFT_TABLE}`, `delete table inet ${NFT_TABLE}`, `table inet ${NFT_TABLE} {`];
  lines.push(`  set guard_ports { type inet_service;${elements(sortNum(m.guard).map(String))} }`);
  lines.push(`  set server_ports { type inet_service;${elements(sortNum(m.server).map(String))} }`);
  const classids = [...m.classids].sort((a, b) => a[1] - b[1]).map(([c, i]) => `${hex(c)} : goto out_${i}`);
  for (const index of sortNum(chains)) lines.push(`  chain in_${index} { ${inChainRule(index)}; }`, `  chain out_${index} { ${outChainRule(index)}; }`);
  lines.push(`  map out_classid { typeof meta cgroup : verdict;${elements(classids)} }`);
  for (const l of levels) {
    const at = [...m.cgroups].map(([k, i]) => ({ ...splitKey(k), i })).filter((e) => e.level === l).sort((a, b) => a.i - b.i);
    for (const dir of ['in', 'out'] as const) {
      lines.push(`  map ${dir}_l${l} { typeof socket cgroupv2 level ${l} : verdict;${elements(at.map((e) => cgElem(e.path, dir, e.i)))} }`);
    }
  }
  lines.push(...baseChains(levels), '}', '');
  return lines.join('\n');
}

export interface NftDelta {
  /** `nft -f` input ('' when nothing changed). */
  text: string;
  /** Per-index chains that exist after it. */
  chains: Set<number>;
}

/**
 * Only what changed from `prev` (as written, with its per-index chains) to `next`: element
 * deletes, then adds, in one transaction. Undefined when the base chains must change (a cgroup
 * depth appears or goes): then the whole table is rewritten. `gone` names cgroup keys whose
 * cgroup no longer exists: nft cannot name them (it resolves paths), so they are neither added
 * nor deleted; an element of one stays, keyed by an id no socket can have again.
 */
export function renderNftDelta(prev: { model: NftModel; chains: ReadonlySet<number> }, next: NftModel, gone: ReadonlySet<string> = new Set()): NftDelta | undefined {
  const a = prev.model;
  if (levelsOf(a).join() !== levelsOf(next).join()) return undefined;
  const t = `inet ${NFT_TABLE}`;
  const dels: string[] = [];
  const adds: string[] = [];
  const chains = new Set(prev.chains);
  for (const i of [...next.indexes].sort((x, y) => x - y)) {
    if (chains.has(i)) continue;
    chains.add(i);
    adds.push(`add chain ${t} in_${i}`, `add rule ${t} in_${i} ${inChainRule(i)}`, `add chain ${t} out_${i}`, `add rule ${t} out_${i} ${outChainRule(i)}`);
  }
  for (const [key, i] of a.cgroups) {
    if (next.cgroups.get(key) === i || gone.has(key)) continue;
    const { level, path } = splitKey(key);
    dels.push(`delete element ${t} in_l${level} { "${path}" }`, `delete element ${t} out_l${level} { "${path}" }`);
  }
  for (const [key, i] of next.cgroups) {
    if (gone.has(key) || a.cgroups.get(key) === i) continue;
    const { level, path } = splitKey(key);
    adds.push(`add element ${t} in_l${level} { ${cgElem(path, 'in', i)} }`, `add element ${t} out_l${level} { ${cgElem(path, 'out', i)} }`);
  }
  for (const [c, i] of a.classids) if (next.classids.get(c) !== i) dels.push(`delete element ${t} out_classid { ${hex(c)} }`);
  for (const [c, i] of next.classids) if (a.classids.get(c) !== i) adds.push(`add element ${t} out_classid { ${hex(c)} : goto out_${i} }`);
  for (const [set, was, now] of [['guard_ports', a.guard, next.guard], ['server_ports', a.server, next.server]] as const) {
    const del = [...was].filter((p) => !now.has(p));
    const add = [...now].filter((p) => !was.has(p));
    if (del.length) dels.push(`delete element ${t} ${set} { ${del.join(', ')} }`);
    if (add.length) adds.push(`add element ${t} ${set} { ${add.join(', ')} }`);
  }
  const lines = [...dels, ...adds];
  return { text: lines.length ? lines.join('\n') + '\n' : '', chains };
}

/** The table for these PUs, whole (tests, and the first write of a run). */
export function buildNftTable(spec: NftSpec): string {
  return renderNftTable(nftModel(spec));
}

/** `nft -f` input that removes our table (and nothing else); an absent table is fine for the caller. */
export const NFT_DELETE = `delete table inet ${NFT_TABLE}\n`;
/** The commands that list the two base chains: what a later check compares (nft 1.0.6 cannot list twice in one -f script). */
export const NFT_LIST_BASE: readonly string[][] = ['lookup_in', 'lookup_out'].map((c) => ['nft', 'list', 'chain', 'inet', NFT_TABLE, c]);
