// Internet checksum (RFC 1071) over big-endian 16-bit words, and the RFC 1624 incremental
// update. Sums are kept unfolded in a JS number and folded once at the end: even-position
// and odd-position bytes are summed separately (no shifts in the loop), which cannot overflow
// a double for any IP packet (65535 bytes * 255 < 2^24 per lane).

import type { TcpPacket } from './types.js';

/** Unfolded sum of buf[start..end) as 16-bit words (an odd last byte is padded with zero). */
export function sumWords(buf: Uint8Array, start: number, end: number): number {
  let hi = 0;
  let lo = 0;
  let i = start;
  // Unrolled by 16 bytes: this loop is the whole cost of rebuilding a packet with a payload.
  for (const end16 = end - 15; i < end16; i += 16) {
    hi += buf[i]! + buf[i + 2]! + buf[i + 4]! + buf[i + 6]! + buf[i + 8]! + buf[i + 10]! + buf[i + 12]! + buf[i + 14]!;
    lo += buf[i + 1]! + buf[i + 3]! + buf[i + 5]! + buf[i + 7]! + buf[i + 9]! + buf[i + 11]! + buf[i + 13]! + buf[i + 15]!;
  }
  for (const end2 = end - 1; i < end2; i += 2) {
    hi += buf[i]!;
    lo += buf[i + 1]!;
  }
  if (i < end) hi += buf[i]!;
  return hi * 256 + lo;
}

/** Fold an unfolded sum (any non-negative integer below 2^47) to 16 bits, ones'-complement. */
export function fold(sum: number): number {
  let s = (sum % 65536) + Math.floor(sum / 65536);
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** Unfolded sum of the TCP pseudo-header for a segment of `tcpLength` bytes. */
export function pseudoHeaderSum(buf: Uint8Array, pkt: TcpPacket, tcpLength: number): number {
  const s = pkt.srcAddrOffset;
  const d = pkt.dstAddrOffset;
  if (pkt.addrLength === 4) {
    // Inlined: a sumWords call per 4-byte address costs more than the adds.
    return (
      ((buf[s]! + buf[s + 2]! + buf[d]! + buf[d + 2]!) << 8) + buf[s + 1]! + buf[s + 3]! + buf[d + 1]! + buf[d + 3]! + 6 + tcpLength
    );
  }
  return sumWords(buf, s, s + 16) + sumWords(buf, d, d + 16) + 6 + tcpLength;
}

/**
 * The TCP checksum the segment of `pkt` should carry (pseudo-header + header + payload),
 * computed as if the checksum field were zero.
 */
export function tcpChecksum(buf: Uint8Array, pkt: TcpPacket): number {
  const t = pkt.tcpOffset;
  const len = pkt.length - t;
  const s = pseudoHeaderSum(buf, pkt, len) + sumWords(buf, t, pkt.length) - ((buf[t + 16]! << 8) | buf[t + 17]!);
  return ~fold(s) & 0xffff;
}

/**
 * RFC 1624 eqn. 3: the new checksum after one 16-bit word of the covered data changed from
 * `oldWord` to `newWord`, without touching the rest of the data: HC' = ~(~HC + ~m + m').
 */
export function updateChecksum16(checksum: number, oldWord: number, newWord: number): number {
  const s = (~checksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  return ~fold(s) & 0xffff;
}
