// The socket lookup that finds a PU's server side from its first SYN: an nftables table of
// our own (`table inet tessera`, both families) whose one base chain runs in the input hook
// just before iptables' mangle table. For each TCP packet not already part of an authorized
// flow, the kernel looks up the local socket the packet is addressed to (listening or
// established, after DNAT) and, when that socket belongs to a PU's cgroup v2, sets PU_DEST
// and the PU's index in the nfmark. The iptables chains (ruleset.ts) then judge it.
//
// Why nftables here and iptables elsewhere: only nftables' `socket cgroupv2` finds the owner
// of a *listening* socket while a SYN is in flight; this kernel has no nft queue expression
// (CONFIG_NFT_QUEUE is off), so queueing stays with iptables' NFQUEUE target.
//
// buildNftTable() is pure and returns `nft -f` input that replaces the table in one
// transaction (declare, flush, define): a restarting daemon never leaves a gap.

import { TesseraError } from '../errors.js';
import { CT_AUTHORIZED, CT_PENDING, HOST_SOCK, PU_DEST, PU_INDEX_MASK, hex, markForPuIndex } from '../marks.js';

export const NFT_TABLE = 'tessera';
/** Before iptables' mangle INPUT (-150), after nat's DNAT in PREROUTING. */
const PRIORITY = 'mangle - 10';

/** Where a PU's processes live in the cgroup v2 hierarchy, as nft resolves it. */
export interface Cgroup2Ref {
  /** Relative to /sys/fs/cgroup (nft resolves the path there, in its own mount namespace). */
  path: string;
  /** The cgroup within the v2 hierarchy, without a leading slash (iptables `-m cgroup --path`). */
  cgroup: string;
  /** Depth of the cgroup in the v2 hierarchy (root = 0). */
  level: number;
}

const PATH = /^[A-Za-z0-9_.:@-]+(\/[A-Za-z0-9_.:@-]+)*$/;

/** Whether a cgroup path can be written into a rule as it is (no quotes, spaces, . or ..). */
export function isRulePath(path: string): boolean {
  return PATH.test(path) && !path.split('/').some((c) => c === '.' || c === '..');
}

function fail(message: string): never {
  throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `nft table: ${message}`);
}

/** The table for these PUs; PUs without a cgroup v2 reference are found by port only. */
export function buildNftTable(pus: ReadonlyArray<{ index: number; cgroup2?: Cgroup2Ref }>): string {
  const withCg = pus.filter((p) => p.cgroup2).sort((a, b) => a.index - b.index);
  const byLevel = new Map<number, Array<{ index: number; path: string }>>();
  for (const p of withCg) {
    const { path, level } = p.cgroup2!;
    if (!isRulePath(path)) fail(`cgroup path ${JSON.stringify(path)} must be relative, without . or ..`);
    if (!Number.isInteger(level) || level < 1 || level > 64) fail(`cgroup level must be 1..64, got ${String(level)}`);
    byLevel.set(level, [...(byLevel.get(level) ?? []), { index: p.index, path }]);
  }
  const keep = hex(~(PU_INDEX_MASK | PU_DEST) >>> 0);
  const lines = [
    `table inet ${NFT_TABLE}`,
    `flush table inet ${NFT_TABLE}`,
    `table inet ${NFT_TABLE} {`,
    '  chain input {',
    `    type filter hook input priority ${PRIORITY}; policy accept;`,
    // Authorized flows stay in the kernel without a lookup (as in iptables, a bare SYN is
    // never part of one).
    `    tcp flags & (fin | syn | rst | ack) != syn ct mark & ${hex(CT_AUTHORIZED | CT_PENDING)} == ${hex(CT_AUTHORIZED)} return`,
  ];
  for (const [level, list] of [...byLevel.entries()].sort((a, b) => a[0] - b[0])) {
    lines.push(`    meta l4proto tcp socket cgroupv2 level ${level} vmap { ${list.map((p) => `"${p.path}" : goto pu_${p.index}`).join(', ')} }`);
  }
  // Reached only when no PU owns the socket: a full socket (listening or established; the
  // expression does not match TIME_WAIT or request sockets) is the host's own.
  lines.push(`    meta l4proto tcp socket wildcard { 0, 1 } meta mark set meta mark | ${hex(HOST_SOCK)}`);
  lines.push('  }');
  for (const p of withCg) {
    lines.push(`  chain pu_${p.index} {`, `    meta mark set meta mark & ${keep} | ${hex(markForPuIndex(p.index) | PU_DEST)}`, '  }');
  }
  lines.push('}', '');
  return lines.join('\n');
}

/** `nft -f` input that removes our table (and nothing else); an absent table is fine for the caller. */
export const NFT_DELETE = `delete table inet ${NFT_TABLE}\n`;
