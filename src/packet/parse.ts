// parseTcp, verifyChecksums, findOption: read-only views over NFQUEUE packet bytes.
// Nothing here throws on any input; every index is checked against the validated lengths.

import { fold, pseudoHeaderSum, sumWords } from './checksum.js';
import { packetError, type PacketError, type PacketErrorReason, type TcpPacket } from './types.js';

// IPv6 next-header values that are extension headers (RFC 8200 4, IANA "IPv6 Extension Header
// Types"): a TCP segment behind them is not parsed, so they get their own reason, not 'not-tcp'.
const IPV6_EXTENSION = new Uint8Array(256);
for (const nh of [0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254]) IPV6_EXTENSION[nh] = 1;

/** A TcpPacket to pass to parseTcp as `into` (one per handler: parsing then allocates nothing). */
export function newTcpPacket(): TcpPacket {
  return {
    ok: true,
    family: 4,
    length: 0,
    ipHeaderLength: 0,
    tcpOffset: 0,
    tcpHeaderLength: 0,
    payloadOffset: 0,
    payloadLength: 0,
    srcAddrOffset: 0,
    dstAddrOffset: 0,
    addrLength: 4,
    srcPort: 0,
    dstPort: 0,
    // NaN, not 0: sequence numbers are uint32, so most are doubles; a field that starts as a
    // Smi changes representation at the first one and deopts every handler reading packets.
    seq: NaN,
    ack: NaN,
    flags: 0,
    window: 0,
  };
}

/**
 * Parse an IPv4 or IPv6 packet carrying TCP. `length` limits the bytes considered (default
 * buf.length). Pass `into` to reuse one result object per worker instead of allocating.
 */
export function parseTcp(buf: Uint8Array, length?: number, into?: TcpPacket): TcpPacket | PacketError {
  let n = buf.length;
  if (length !== undefined && length < n) n = length > 0 ? Math.floor(length) : 0;
  if (n < 1) return packetError('truncated-ip', 'empty packet');
  const version = buf[0]! >> 4;
  let ipHL: number;
  let total: number;
  let srcAddr: number;
  let addrLength: 4 | 16;
  if (version === 4) {
    if (n < 20) return packetError('truncated-ip', `${n} bytes, IPv4 header needs 20`);
    ipHL = (buf[0]! & 0x0f) << 2;
    if (ipHL < 20) return packetError('bad-ip-header-length', `IHL ${ipHL >> 2}`);
    if (ipHL > n) return packetError('truncated-ip', `IPv4 header length ${ipHL} > ${n} bytes`);
    total = (buf[2]! << 8) | buf[3]!;
    if (total < ipHL) return packetError('bad-total-length', `total length ${total} < header length ${ipHL}`);
    if (total > n) return packetError('truncated-ip', `total length ${total} > ${n} bytes`);
    if (buf[9] !== 6) return packetError('not-tcp', `protocol ${buf[9]!}`);
    // MF flag (0x2000) or a fragment offset: only whole datagrams are parsed.
    if ((((buf[6]! << 8) | buf[7]!) & 0x3fff) !== 0) return packetError('fragment', 'IPv4 fragment');
    srcAddr = 12;
    addrLength = 4;
  } else if (version === 6) {
    if (n < 40) return packetError('truncated-ip', `${n} bytes, IPv6 header needs 40`);
    ipHL = 40;
    total = 40 + ((buf[4]! << 8) | buf[5]!);
    if (total > n) return packetError('truncated-ip', `IPv6 length ${total} > ${n} bytes`);
    const nh = buf[6]!;
    if (nh !== 6) {
      return IPV6_EXTENSION[nh] === 1
        ? packetError('ipv6-extension-header', `next header ${nh}`)
        : packetError('not-tcp', `next header ${nh}`);
    }
    srcAddr = 8;
    addrLength = 16;
  } else {
    return packetError('bad-ip-version', `version ${version}`);
  }

  const t = ipHL;
  const segment = total - t;
  if (segment < 20) return packetError('truncated-tcp', `${segment} TCP bytes, header needs 20`);
  const thl = (buf[t + 12]! >> 4) << 2;
  if (thl < 20 || thl > segment) return packetError('bad-tcp-offset', `data offset ${thl >> 2} for a ${segment}-byte segment`);
  const bad = walkOptions(buf, t + 20, t + thl);
  if (bad >= 0) return packetError('bad-option-length', `option kind ${buf[bad]!} at offset ${bad}`);

  const p: TcpPacket = into ?? newTcpPacket();
  p.ok = true;
  p.family = version as 4 | 6;
  p.length = total;
  p.ipHeaderLength = ipHL;
  p.tcpOffset = t;
  p.tcpHeaderLength = thl;
  p.payloadOffset = t + thl;
  p.payloadLength = segment - thl;
  p.srcAddrOffset = srcAddr;
  p.dstAddrOffset = srcAddr + addrLength;
  p.addrLength = addrLength;
  p.srcPort = (buf[t]! << 8) | buf[t + 1]!;
  p.dstPort = (buf[t + 2]! << 8) | buf[t + 3]!;
  p.seq = ((buf[t + 4]! << 24) | (buf[t + 5]! << 16) | (buf[t + 6]! << 8) | buf[t + 7]!) >>> 0;
  p.ack = ((buf[t + 8]! << 24) | (buf[t + 9]! << 16) | (buf[t + 10]! << 8) | buf[t + 11]!) >>> 0;
  p.flags = buf[t + 13]!;
  p.window = (buf[t + 14]! << 8) | buf[t + 15]!;
  return p;
}

/**
 * Walk the options in buf[start..end): returns -1 when well formed, else the offset of the
 * first option whose length byte is missing, below 2, or runs past the header. Bytes after
 * an EOL are padding and not inspected (as the kernel does).
 */
function walkOptions(buf: Uint8Array, start: number, end: number): number {
  let i = start;
  while (i < end) {
    const k = buf[i]!;
    if (k === 0) return -1;
    if (k === 1) {
      i++;
      continue;
    }
    if (i + 1 >= end) return i;
    const l = buf[i + 1]!;
    if (l < 2 || i + l > end) return i;
    i += l;
  }
  return -1;
}

/** Check the IPv4 header checksum and the TCP checksum; null when both are right. */
export function verifyChecksums(buf: Uint8Array, pkt: TcpPacket): PacketErrorReason | null {
  if (pkt.length > buf.length) return 'truncated-ip';
  if (pkt.family === 4 && fold(sumWords(buf, 0, pkt.ipHeaderLength)) !== 0xffff) return 'bad-ip-checksum';
  const t = pkt.tcpOffset;
  const s = pseudoHeaderSum(buf, pkt, pkt.length - t) + sumWords(buf, t, pkt.length);
  return fold(s) === 0xffff ? null : 'bad-tcp-checksum';
}

/**
 * Offset in buf of the first option of `kind`, or -1. With `exid`, the option must also
 * carry that RFC 6994 16-bit Experiment ID (only kinds 253/254 have one, so other kinds never
 * match). Kinds 0 (EOL) and 1 (NOP) can be searched too.
 */
export function findOption(buf: Uint8Array, pkt: TcpPacket, kind: number, exid?: number): number {
  let i = pkt.tcpOffset + 20;
  let end = pkt.tcpOffset + pkt.tcpHeaderLength;
  if (end > buf.length) end = buf.length;
  while (i < end) {
    const k = buf[i]!;
    if (k === 0) return kind === 0 && exid === undefined ? i : -1;
    if (k === 1) {
      if (kind === 1 && exid === undefined) return i;
      i++;
      continue;
    }
    if (i + 1 >= end) return -1;
    const l = buf[i + 1]!;
    if (l < 2 || i + l > end) return -1;
    if (k === kind) {
      if (exid === undefined) return i;
      if ((k === 253 || k === 254) && l >= 4 && ((buf[i + 2]! << 8) | buf[i + 3]!) === exid) return i;
    }
    i += l;
  }
  return -1;
}
