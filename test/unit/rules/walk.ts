// A small interpreter of our own rule spelling, for unit tests: walks a packet through the
// mangle chains buildRuleset() returns and says what the kernel would do with it. It knows
// only the matches and targets our builder writes, and throws on anything else, so a new
// kind of rule cannot slip past the invariant tests unexamined.

import type { TableRules } from '../../../src/rules/ruleset.js';

export interface Pkt {
  /** TCP flags as names, e.g. ['SYN'] or ['SYN', 'ACK']. */
  flags: string[];
  dport: number;
  /** Carries our TCP option (kind 253). */
  tagged?: boolean;
  nfmark?: number;
  connmark?: number;
  /** net_cls classid of the sending socket (egress); 0: none. */
  classid?: number;
  /** cgroup v2 of the sending socket (egress), within the hierarchy. */
  cgroup?: string;
  protocol?: 'tcp' | 'udp';
  /** false: conntrack calls the packet INVALID or does not track it (no connmark then). */
  tracked?: boolean;
  /** The packet goes in conntrack's reply direction (e.g. a reset answering the peer). */
  reply?: boolean;
  /** UDP: the payload starts with the exchange's magic (udp/wire.ts) at the plain-header offset. */
  magic?: boolean;
}

export type Outcome = 'queue' | 'drop' | 'accept' | 'pass';

export interface Walk {
  outcome: Outcome;
  nfmark: number;
  connmark: number;
  /** Rules evaluated on the way (matched or not). */
  evaluations: number;
}

const FLAG = { FIN: 1, SYN: 2, RST: 4, PSH: 8, ACK: 16, URG: 32 } as Record<string, number>;
const bits = (list: string): number => (list === 'NONE' ? 0 : list.split(',').reduce((a, f) => a | (FLAG[f] ?? 0), 0));
const vm = (s: string): [number, number] => {
  const [v, m] = s.split('/');
  return [Number(v) >>> 0, m === undefined ? 0xffffffff : Number(m) >>> 0];
};

/** Run `pkt` from the builtin hook's jump into our chain `start`; returns the outcome. */
export function walk(table: TableRules, start: string, pkt: Pkt): Walk {
  const state = { nfmark: pkt.nfmark ?? 0, connmark: pkt.connmark ?? 0 };
  let evaluations = 0;
  const flags = pkt.flags.reduce((a, f) => a | (FLAG[f] ?? 0), 0);
  const run = (chain: string, depth: number): Outcome | 'return' => {
    if (depth > 8) throw new Error('walk: jump depth');
    const rules = table.chains[chain];
    if (!rules) throw new Error(`walk: no chain ${chain}`);
    for (const rule of rules) {
      evaluations++;
      const r = [...rule];
      let ok = true;
      let neg = false;
      let i = 0;
      for (; i < r.length && r[i] !== '-j'; i++) {
        const a = r[i]!;
        if (a === '!') {
          neg = true;
          continue;
        }
        let m: boolean;
        if (a === '-p') m = (pkt.protocol ?? 'tcp') === r[++i];
        else if (a === '-m') {
          i++; // the module name; its options follow
          continue;
        }
        else if (a === '--tcp-flags') {
          const mask = bits(r[++i]!);
          const comp = bits(r[++i]!);
          m = (pkt.protocol ?? 'tcp') === 'tcp' && (flags & mask) === comp;
        } else if (a === '--dport') m = pkt.dport === Number(r[++i]);
        else if (a === '--ctdir') {
          const dir = r[++i];
          if (dir !== 'REPLY' && dir !== 'ORIGINAL') throw new Error(`walk: unknown ctdir ${dir}`);
          m = pkt.tracked !== false && !!pkt.reply === (dir === 'REPLY');
        } else if (a === '--ctstate') {
          if (r[++i] !== 'INVALID,UNTRACKED') throw new Error(`walk: unknown ctstate ${r[i]}`);
          m = pkt.tracked === false;
        }
        else if (a === '--u32') {
          if (!/=0x7e557501"$/.test(r[++i]!)) throw new Error(`walk: unknown u32 ${r[i]}`);
          m = pkt.protocol === 'udp' && !!pkt.magic;
        }
        else if (a === '--tcp-option') m = !!pkt.tagged && r[++i] === '253';
        else if (a === '--cgroup') m = (pkt.classid ?? 0) === Number(r[++i]) && (pkt.classid ?? 0) !== 0;
        else if (a === '--path') {
          const want = r[++i]!.replace(/^"|"$/g, '');
          m = pkt.cgroup !== undefined && (pkt.cgroup === want || pkt.cgroup.startsWith(want + '/'));
        }
        else if (a === '--mark') {
          const [v, mk] = vm(r[++i]!);
          const src = r[i - 2] === 'connmark' || r[i - 3] === 'connmark' ? state.connmark : state.nfmark;
          m = ((src & mk) >>> 0) === v;
        } else throw new Error(`walk: unknown match ${a} in ${r.join(' ')}`);
        if (neg) m = !m;
        neg = false;
        if (!m) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      const target = r[i + 1];
      const args = r.slice(i + 2);
      switch (target) {
        case 'RETURN':
          return 'return';
        case 'DROP':
          return 'drop';
        case 'ACCEPT':
          return 'accept';
        case 'NFQUEUE':
          return 'queue';
        case 'MARK': {
          const [v, mk] = vm(args[1]!);
          state.nfmark = ((state.nfmark & ~mk) ^ v) >>> 0;
          continue;
        }
        case 'CONNMARK': {
          if (args[0] === '--set-xmark') {
            const [v, mk] = vm(args[1]!);
            state.connmark = ((state.connmark & ~mk) ^ v) >>> 0;
          } else {
            const nf = Number(args[2]) >>> 0;
            const ct = Number(args[4]) >>> 0;
            if (nf !== ct) throw new Error('walk: different nfmask and ctmask');
            if (args[0] === '--save-mark') state.connmark = ((state.connmark & ~ct) | (state.nfmark & nf)) >>> 0;
            else state.nfmark = ((state.nfmark & ~nf) | (state.connmark & ct)) >>> 0;
          }
          continue;
        }
        default: {
          if (!target?.startsWith('TESSERA-')) throw new Error(`walk: unknown target ${String(target)}`);
          const res = run(target, depth + 1);
          if (res !== 'return') return res;
        }
      }
    }
    return 'return';
  };
  const res = run(start, 0);
  return { outcome: res === 'return' ? 'pass' : res, ...state, evaluations };
}

/** A packet as table inet tessera's chains see it. */
export interface NftPkt {
  flags: string[];
  dport: number;
  nfmark?: number;
  connmark?: number;
  protocol?: 'tcp' | 'udp';
  tracked?: boolean;
  /** The socket's cgroup v2 within the hierarchy (egress: the sender; ingress: the local socket the packet is for). */
  cgroup?: string;
  /** net_cls classid of the sending socket (egress). */
  classid?: number;
  /** Ingress: the lookup finds a full socket (listening or established); false: TIME_WAIT, request socket or none. */
  fullSocket?: boolean;
}

/**
 * Walk `pkt` through base chain `chain` of table inet tessera as nft.ts writes it (the text
 * `nft -f` is given), returning the nfmark after it. Knows only the statements our builder
 * writes and throws on anything else. Map keys are paths under /sys/fs/cgroup: `mount` is the
 * v2 hierarchy's place there ('unified' on this machine).
 */
export function walkNft(text: string, chain: 'lookup_in' | 'lookup_out', pkt: NftPkt, mount = 'unified'): { nfmark: number; evaluations: number } {
  const chains = new Map<string, string[]>();
  const maps = new Map<string, Map<string, string>>();
  const sets = new Map<string, Set<number>>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!.trim();
    let m: RegExpMatchArray | null;
    if ((m = l.match(/^chain (\w+) \{ (.*); \}$/))) chains.set(m[1]!, [m[2]!]);
    else if ((m = l.match(/^chain (\w+) \{$/))) {
      const body: string[] = [];
      while (lines[++i]!.trim() !== '}') body.push(lines[i]!.trim());
      chains.set(m[1]!, body.filter((r) => !r.startsWith('type ')));
    } else if ((m = l.match(/^set (\w+) \{ type inet_service;(?: elements = \{ (.*) \};)? \}$/))) sets.set(m[1]!, new Set((m[2] ?? '').split(', ').filter(Boolean).map(Number)));
    else if ((m = l.match(/^map (\w+) \{ typeof [^:]+ : verdict;(?: elements = \{ (.*) \};)? \}$/))) {
      const els = new Map<string, string>();
      for (const e of (m[2] ?? '').split(', ').filter(Boolean)) {
        const [k, v] = e.split(' : goto ');
        els.set(k!.replace(/^"|"$/g, ''), v!);
      }
      maps.set(m[1]!, els);
    }
  }
  const flags = pkt.flags.reduce((a, f) => a | (FLAG[f] ?? 0), 0);
  const tcp = (pkt.protocol ?? 'tcp') === 'tcp';
  let nfmark = pkt.nfmark ?? 0;
  let evaluations = 0;
  const setMark = (expr: string): void => {
    const m = expr.match(/^meta mark set meta mark(?: & (0x[0-9a-f]+))?(?: \| (0x[0-9a-f]+))?$/);
    if (!m) throw new Error(`walkNft: unknown statement ${expr}`);
    nfmark = (((nfmark & (m[1] ? Number(m[1]) : 0xffffffff)) | (m[2] ? Number(m[2]) : 0)) >>> 0);
  };
  const run = (name: string, depth: number): void => {
    if (depth > 2) throw new Error('walkNft: depth');
    const rules = chains.get(name);
    if (!rules) throw new Error(`walkNft: no chain ${name}`);
    for (const r of rules) {
      evaluations++;
      let m: RegExpMatchArray | null;
      if ((m = r.match(/^tcp flags & \(fin \| syn \| rst \| ack\) != syn ct mark & (0x[0-9a-f]+) == (0x[0-9a-f]+) return$/))) {
        const tracked = pkt.tracked !== false;
        if (tcp && (flags & 0x17) !== FLAG.SYN && tracked && ((pkt.connmark ?? 0) & Number(m[1])) >>> 0 === Number(m[2])) return;
      } else if ((m = r.match(/^meta l4proto udp ct mark & (0x[0-9a-f]+) == (0x[0-9a-f]+) return$/))) {
        if (!tcp && pkt.tracked !== false && ((pkt.connmark ?? 0) & Number(m[1])) >>> 0 === Number(m[2])) return;
      } else if ((m = r.match(/^meta l4proto (tcp|udp) (meta mark set .*)$/))) {
        if (tcp === (m[1] === 'tcp')) setMark(m[2]!);
      } else if ((m = r.match(/^tcp dport @(\w+) (meta mark set .*)$/))) {
        if (tcp && sets.get(m[1]!)!.has(pkt.dport)) setMark(m[2]!);
      } else if ((m = r.match(/^meta l4proto (tcp|udp) socket cgroupv2 level (\d+) vmap @(\w+)$/))) {
        if (tcp !== (m[1] === 'tcp')) continue;
        m = [m[0], m[2]!, m[3]!] as unknown as RegExpMatchArray;
        const level = Number(m[1]);
        const parts = (pkt.cgroup ?? '').split('/').filter(Boolean);
        const found = chain === 'lookup_out' || pkt.fullSocket !== false;
        if (!found || pkt.cgroup === undefined || parts.length < level) continue;
        const target = maps.get(m[2]!)!.get(`${mount}/${parts.slice(0, level).join('/')}`);
        if (target) return run(target, depth + 1);
      } else if ((m = r.match(/^meta l4proto (tcp|udp) meta cgroup vmap @(\w+)$/))) {
        if (tcp !== (m[1] === 'tcp')) continue;
        m = [m[0], m[2]!] as unknown as RegExpMatchArray;
        const target = pkt.classid ? maps.get(m[1]!)!.get(`0x${pkt.classid.toString(16)}`) : undefined;
        if (target) return run(target, depth + 1);
      } else if ((m = r.match(/^meta l4proto tcp meta mark & (0x[0-9a-f]+) == 0 socket wildcard \{ 0, 1 \} (meta mark set .*)$/))) {
        if (tcp && (nfmark & Number(m[1])) === 0 && pkt.cgroup !== undefined && pkt.fullSocket !== false) setMark(m[2]!);
      } else if (r.startsWith('meta mark set ')) setMark(r);
      else throw new Error(`walkNft: unknown rule ${r}`);
    }
  };
  run(chain, 0);
  return { nfmark, evaluations };
}
