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
}

export type Outcome = 'queue' | 'drop' | 'accept' | 'pass';

export interface Walk {
  outcome: Outcome;
  nfmark: number;
  connmark: number;
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
  const flags = pkt.flags.reduce((a, f) => a | (FLAG[f] ?? 0), 0);
  const run = (chain: string, depth: number): Outcome | 'return' => {
    if (depth > 8) throw new Error('walk: jump depth');
    const rules = table.chains[chain];
    if (!rules) throw new Error(`walk: no chain ${chain}`);
    for (const rule of rules) {
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
  return { outcome: res === 'return' ? 'pass' : res, ...state };
}
