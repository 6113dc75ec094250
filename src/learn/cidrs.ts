// Peers without Tessera, aggregated: a list of addresses → at most `max` CIDR blocks per
// family that cover them all. Exact (one /32 or /128 per address) while the bound allows;
// beyond it the two neighbouring blocks with the longest common prefix are replaced by
// that prefix, repeatedly, so the widening is as small as the bound permits. Pure and
// deterministic (sorted input and output).

import { parseCidr } from '../policy/cidr.js';
import { formatAddress } from '../flow.js';

interface Block {
  family: 4 | 6;
  value: bigint;
  prefix: number;
}

const bits = (f: 4 | 6): number => (f === 4 ? 32 : 128);

function mask(value: bigint, prefix: number, width: number): bigint {
  if (prefix === 0) return 0n;
  const host = BigInt(width - prefix);
  return (value >> host) << host;
}

function commonPrefix(a: Block, b: Block, width: number): number {
  const x = a.value ^ b.value;
  const differ = x === 0n ? 0 : x.toString(2).length;
  return Math.min(a.prefix, b.prefix, width - differ);
}

function text(b: Block): string {
  const width = bits(b.family);
  const bytes = new Uint8Array(width / 8);
  let v = b.value;
  for (let i = bytes.length - 1; i >= 0; i--) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  const addr = formatAddress(bytes, 0, b.family === 4 ? 4 : 16);
  return b.prefix === width ? addr : `${addr}/${b.prefix}`;
}

function aggregateFamily(blocks: Block[], max: number): Block[] {
  if (blocks.length === 0) return [];
  const width = bits(blocks[0]!.family);
  let list = [...blocks].sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : a.prefix - b.prefix));
  const dedupe = (l: Block[]): Block[] => {
    const out: Block[] = [];
    for (const b of l) {
      const last = out[out.length - 1];
      // Sorted by start: a block inside the previous one adds nothing.
      if (last && last.prefix <= b.prefix && mask(b.value, last.prefix, width) === last.value) continue;
      out.push(b);
    }
    return out;
  };
  list = dedupe(list);
  while (list.length > max) {
    let best = -1;
    let bestP = -1;
    for (let i = 0; i + 1 < list.length; i++) {
      const p = commonPrefix(list[i]!, list[i + 1]!, width);
      if (p > bestP) {
        bestP = p;
        best = i;
      }
    }
    const merged: Block = { family: list[best]!.family, prefix: bestP, value: mask(list[best]!.value, bestP, width) };
    list = dedupe([...list.slice(0, best), merged, ...list.slice(best + 2)].sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : a.prefix - b.prefix)));
  }
  return list;
}

/** Addresses (text) → CIDR texts, at most `max` per family; unparsable addresses are skipped. */
export function aggregateCidrs(addresses: readonly string[], max: number): { cidrs: string[]; widened: boolean } {
  const v4: Block[] = [];
  const v6: Block[] = [];
  for (const a of addresses) {
    const c = parseCidr(a);
    if (typeof c === 'string') continue;
    let value = 0n;
    for (const w of c.words) value = (value << 32n) | BigInt(w);
    (c.family === 4 ? v4 : v6).push({ family: c.family, value, prefix: c.prefix });
  }
  const n = Math.max(1, max);
  const a4 = aggregateFamily(v4, n);
  const a6 = aggregateFamily(v6, n);
  const exact = new Set(addresses).size;
  const out = [...a4, ...a6];
  return { cidrs: out.map(text), widened: out.length < exact };
}
