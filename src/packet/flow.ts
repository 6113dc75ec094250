// Keys for per-flow maps. A flow is directional: A:p > B:q and B:q > A:p are different flows;
// `reverse` gives the key of the opposite direction, so the SYN-ACK handler finds what was
// stored under the SYN's key.

import type { TcpPacket } from './types.js';
import { formatAddress } from '../flow.js';

const scratch: number[] = new Array<number>(36).fill(0);

/**
 * A compact binary string key: source address, source port, destination address, destination
 * port as one char per byte (12 chars for IPv4, 36 for IPv6, so families never collide).
 * Exact (no collisions), cheap to hash for a Map; not for display (see formatFlow).
 */
export function flowKey(buf: Uint8Array, pkt: TcpPacket, reverse = false): string {
  const a = pkt.addrLength;
  const t = pkt.tcpOffset;
  const s = reverse ? pkt.dstAddrOffset : pkt.srcAddrOffset;
  const d = reverse ? pkt.srcAddrOffset : pkt.dstAddrOffset;
  const sp = reverse ? t + 2 : t;
  const dp = reverse ? t : t + 2;
  if (a === 4) {
    return String.fromCharCode(
      buf[s]!, buf[s + 1]!, buf[s + 2]!, buf[s + 3]!, buf[sp]!, buf[sp + 1]!,
      buf[d]!, buf[d + 1]!, buf[d + 2]!, buf[d + 3]!, buf[dp]!, buf[dp + 1]!,
    );
  }
  for (let i = 0; i < 16; i++) scratch[i] = buf[s + i]!;
  scratch[16] = buf[sp]!;
  scratch[17] = buf[sp + 1]!;
  for (let i = 0; i < 16; i++) scratch[18 + i] = buf[d + i]!;
  scratch[34] = buf[dp]!;
  scratch[35] = buf[dp + 1]!;
  return String.fromCharCode.apply(null, scratch);
}

/**
 * A 32-bit FNV-1a hash of the same bytes as flowKey (unsigned number). Collisions are possible:
 * use it to pick a shard or bucket, never as the identity of a flow.
 */
export function flowHash(buf: Uint8Array, pkt: TcpPacket, reverse = false): number {
  const a = pkt.addrLength;
  const t = pkt.tcpOffset;
  const s = reverse ? pkt.dstAddrOffset : pkt.srcAddrOffset;
  const d = reverse ? pkt.srcAddrOffset : pkt.dstAddrOffset;
  const sp = reverse ? t + 2 : t;
  const dp = reverse ? t : t + 2;
  let h = 0x811c9dc5;
  for (let i = 0; i < a; i++) h = Math.imul(h ^ buf[s + i]!, 0x01000193);
  h = Math.imul(h ^ buf[sp]!, 0x01000193);
  h = Math.imul(h ^ buf[sp + 1]!, 0x01000193);
  for (let i = 0; i < a; i++) h = Math.imul(h ^ buf[d + i]!, 0x01000193);
  h = Math.imul(h ^ buf[dp]!, 0x01000193);
  h = Math.imul(h ^ buf[dp + 1]!, 0x01000193);
  return h >>> 0;
}

/** "10.0.0.1:40000 > 10.0.0.2:80" or "[2001:db8::1]:40000 > [2001:db8::2]:80", for logs. */
export { formatAddress };

export function formatFlow(buf: Uint8Array, pkt: TcpPacket): string {
  const src = formatAddress(buf, pkt.srcAddrOffset, pkt.addrLength);
  const dst = formatAddress(buf, pkt.dstAddrOffset, pkt.addrLength);
  return pkt.family === 4 ? `${src}:${pkt.srcPort} > ${dst}:${pkt.dstPort}` : `[${src}]:${pkt.srcPort} > [${dst}]:${pkt.dstPort}`;
}
