// UDP datagrams as the queue hands them over (IPv4 or IPv6 header first): parse, and write a
// datagram with a new payload (the same 5-tuple or its reverse) with fresh checksums. Pure.

import { fold, sumWords } from '../../packet/checksum.js';

export const IPPROTO_UDP = 17;

export interface UdpPacket {
  family: 4 | 6;
  /** IP header length (IPv6: 40; extension headers are not parsed: such packets are not read). */
  ipLength: number;
  srcAddrOffset: number;
  dstAddrOffset: number;
  addrLength: 4 | 16;
  srcPort: number;
  dstPort: number;
  payloadOffset: number;
  payloadLength: number;
  /** IPv4 TTL / IPv6 hop limit, kept when the datagram is rewritten. */
  ttl: number;
}

/** Whether the queued packet is UDP (without reading it further): for the worker's dispatch. */
export function isUdp(buf: Uint8Array): boolean {
  const v = buf[0]! >> 4;
  if (v === 4) return buf[9] === IPPROTO_UDP;
  if (v === 6) return buf[6] === IPPROTO_UDP;
  return false;
}

/** The datagram, or a reason it cannot be read. No IPv4 fragments, no IPv6 extension headers. */
export function parseUdp(buf: Uint8Array, length = buf.length): UdpPacket | 'bad-packet' {
  if (length < 28) return 'bad-packet';
  const v = buf[0]! >> 4;
  let ip: number;
  let total: number;
  let family: 4 | 6;
  if (v === 4) {
    ip = (buf[0]! & 0x0f) * 4;
    total = (buf[2]! << 8) | buf[3]!;
    // A fragment (MF set or an offset) cannot be judged from one piece.
    if (ip < 20 || buf[9] !== IPPROTO_UDP || ((buf[6]! & 0x3f) | buf[7]!) !== 0) return 'bad-packet';
    family = 4;
  } else if (v === 6) {
    ip = 40;
    total = 40 + ((buf[4]! << 8) | buf[5]!);
    if (buf[6] !== IPPROTO_UDP) return 'bad-packet';
    family = 6;
  } else return 'bad-packet';
  if (total > length || total < ip + 8) return 'bad-packet';
  const udpLen = (buf[ip + 4]! << 8) | buf[ip + 5]!;
  if (udpLen < 8 || ip + udpLen > total) return 'bad-packet';
  return {
    family,
    ipLength: ip,
    srcAddrOffset: family === 4 ? 12 : 8,
    dstAddrOffset: family === 4 ? 16 : 24,
    addrLength: family === 4 ? 4 : 16,
    srcPort: (buf[ip]! << 8) | buf[ip + 1]!,
    dstPort: (buf[ip + 2]! << 8) | buf[ip + 3]!,
    payloadOffset: ip + 8,
    payloadLength: udpLen - 8,
    ttl: family === 4 ? buf[8]! : buf[7]!,
  };
}

/** Whether an inbound datagram's UDP checksum holds (0 on IPv4: none was sent). */
export function udpChecksumOk(buf: Uint8Array, p: UdpPacket): boolean {
  const at = p.ipLength + 6;
  if (p.family === 4 && buf[at] === 0 && buf[at + 1] === 0) return true;
  const len = 8 + p.payloadLength;
  let sum = sumWords(buf, p.srcAddrOffset, p.srcAddrOffset + p.addrLength * 2) + IPPROTO_UDP + len;
  sum += sumWords(buf, p.ipLength, p.ipLength + len);
  return fold(sum) === 0xffff;
}

/**
 * Write a datagram into out: addresses and ports of `p` (swapped with `reverse`), payload
 * `payload`. Returns its length, or -1 when it would exceed `max`. IPv4: DF set, id 0, a
 * header checksum; both: a UDP checksum.
 */
export function writeUdp(buf: Uint8Array, p: UdpPacket, reverse: boolean, payload: Uint8Array, out: Uint8Array, max: number): number {
  const ip = p.family === 4 ? 20 : 40;
  const udpLen = 8 + payload.length;
  const total = ip + udpLen;
  if (total > max || total > out.length) return -1;
  const src = reverse ? p.dstAddrOffset : p.srcAddrOffset;
  const dst = reverse ? p.srcAddrOffset : p.dstAddrOffset;
  const al = p.addrLength;
  // Addresses first: `out` may be `buf` itself only when nothing moves (not supported), so copy out.
  const sa = buf.slice(src, src + al);
  const da = buf.slice(dst, dst + al);
  const sport = reverse ? p.dstPort : p.srcPort;
  const dport = reverse ? p.srcPort : p.dstPort;
  out.fill(0, 0, ip);
  if (p.family === 4) {
    out[0] = 0x45;
    out[2] = total >> 8;
    out[3] = total & 0xff;
    out[6] = 0x40; // DF
    out[8] = reverse ? 64 : p.ttl;
    out[9] = IPPROTO_UDP;
    out.set(sa, 12);
    out.set(da, 16);
    const hs = ~fold(sumWords(out, 0, 20)) & 0xffff;
    out[10] = hs >> 8;
    out[11] = hs & 0xff;
  } else {
    out[0] = 0x60;
    out[4] = udpLen >> 8;
    out[5] = udpLen & 0xff;
    out[6] = IPPROTO_UDP;
    out[7] = reverse ? 64 : p.ttl;
    out.set(sa, 8);
    out.set(da, 24);
  }
  out[ip] = sport >> 8;
  out[ip + 1] = sport & 0xff;
  out[ip + 2] = dport >> 8;
  out[ip + 3] = dport & 0xff;
  out[ip + 4] = udpLen >> 8;
  out[ip + 5] = udpLen & 0xff;
  out[ip + 6] = 0;
  out[ip + 7] = 0;
  out.set(payload, ip + 8);
  const aOff = p.family === 4 ? 12 : 8;
  let sum = sumWords(out, aOff, aOff + al * 2) + IPPROTO_UDP + udpLen;
  sum += sumWords(out, ip, ip + udpLen);
  let ck = ~fold(sum) & 0xffff;
  if (ck === 0) ck = 0xffff;
  out[ip + 6] = ck >> 8;
  out[ip + 7] = ck & 0xff;
  return total;
}
