// Packet crafting for the adversarial suite (test/integration/hostile.test.ts): IPv4 and IPv6
// TCP segments built byte by byte, with every length and checksum computed here — on purpose
// NOT with src/packet, so that a bug there cannot make a hostile packet and its judge agree —
// plus the knobs an attacker turns: lying lengths, wrong checksums, IPv4 options, IPv6
// extension headers, fragments, and Tessera SYN blocks whose own lengths lie.

export const TCP = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10, URG: 0x20, ECE: 0x40, CWR: 0x80 } as const;

/** The marker option of docs/protocol.md: RFC 6994 kind 253, length 4, ExID 0x7E55. */
export const MARKER = [253, 4, 0x7e, 0x55] as const;

/** What a Linux SYN carries: MSS 1460, SACK-permitted, timestamps, NOP, window scale 7 (20 bytes). */
export function linuxSynOptions(tsval = 0x01020304): number[] {
  return [2, 4, 0x05, 0xb4, 4, 2, 8, 10, tsval >>> 24, (tsval >>> 16) & 0xff, (tsval >>> 8) & 0xff, tsval & 0xff, 0, 0, 0, 0, 1, 3, 3, 7];
}

/** One's-complement sum of 16-bit words (not folded, not inverted). */
function sum16(buf: Uint8Array, start: number, end: number, acc = 0): number {
  let s = acc;
  let i = start;
  for (; i + 1 < end; i += 2) s += (buf[i]! << 8) | buf[i + 1]!;
  if (i < end) s += buf[i]! << 8;
  return s;
}

function fold(s: number): number {
  let x = s;
  while (x > 0xffff) x = (x & 0xffff) + Math.floor(x / 0x10000);
  return x;
}

/** The Internet checksum of buf[start..end). */
export function inetChecksum(buf: Uint8Array, start = 0, end = buf.length, acc = 0): number {
  return ~fold(sum16(buf, start, end, acc)) & 0xffff;
}

function v4bytes(a: string): number[] {
  const p = a.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !(x >= 0 && x <= 255))) throw new Error(`bad IPv4 address ${a}`);
  return p;
}

function v6bytes(a: string): number[] {
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const h = head ? head.split(':').filter(Boolean) : [];
  const t = tail ? tail.split(':').filter(Boolean) : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8) throw new Error(`bad IPv6 address ${a}`);
  return groups.flatMap((g) => {
    const v = parseInt(g, 16);
    return [v >> 8, v & 0xff];
  });
}

export interface ExtensionHeader {
  /** The extension header's own type (what the previous header's next-header names). */
  type: number;
  /** Its bytes after the next-header byte is filled in (byte 0 is overwritten). */
  bytes: number[];
}

export interface SegmentSpec {
  family?: 4 | 6;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  seq: number;
  ack?: number;
  flags: number;
  window?: number;
  /** Raw TCP option bytes, used as given (the caller pads to a multiple of 4, or not). */
  options?: readonly number[];
  /** TCP data offset in 32-bit words; default: from the option bytes (rounded up). */
  dataOffsetWords?: number;
  payload?: Uint8Array;
  /** Raw IPv4 option bytes (a multiple of 4). */
  ipOptions?: readonly number[];
  ipId?: number;
  ttl?: number;
  /** Added to the correct TCP checksum: non-zero makes it wrong. */
  tcpChecksumError?: number;
  /** The TCP checksum covers only this many bytes of the segment (a length lie made consistent). */
  tcpChecksumBytes?: number;
  /** IPv6 extension headers between the fixed header and TCP, in order. */
  extensions?: readonly ExtensionHeader[];
}

/** A complete IPv4 or IPv6 TCP packet with correct lengths and checksums unless told otherwise. */
export function buildSegment(s: SegmentSpec): Buffer {
  const opts = s.options ?? [];
  // The segment is exactly 20 + the option bytes + payload; the data offset says the same
  // unless the spec makes it lie (a header that ends mid-option, or runs past the segment).
  if (s.dataOffsetWords === undefined && opts.length % 4 !== 0) throw new Error('TCP options must be padded to a multiple of 4 bytes');
  const doff = s.dataOffsetWords ?? (20 + opts.length) / 4;
  const payload = s.payload ?? new Uint8Array(0);
  const seg = Buffer.alloc(20 + opts.length + payload.length);
  seg.writeUInt16BE(s.sport, 0);
  seg.writeUInt16BE(s.dport, 2);
  seg.writeUInt32BE(s.seq >>> 0, 4);
  seg.writeUInt32BE((s.ack ?? 0) >>> 0, 8);
  seg[12] = (doff & 0x0f) << 4;
  seg[13] = s.flags & 0xff;
  seg.writeUInt16BE(s.window ?? 64240, 14);
  Buffer.from(opts).copy(seg, 20);
  Buffer.from(payload).copy(seg, 20 + opts.length);

  const family = s.family ?? 4;
  let header: Buffer;
  let pseudo: number;
  const covered = s.tcpChecksumBytes ?? seg.length;
  if (family === 4) {
    const ipOpts = s.ipOptions ?? [];
    if (ipOpts.length % 4 !== 0) throw new Error('IPv4 options must be a multiple of 4 bytes');
    const ihl = 20 + ipOpts.length;
    header = Buffer.alloc(ihl);
    header[0] = 0x40 | (ihl >> 2);
    header.writeUInt16BE(ihl + seg.length, 2);
    header.writeUInt16BE(s.ipId ?? 0x7e00, 4);
    header[8] = s.ttl ?? 77;
    header[9] = 6;
    Buffer.from(v4bytes(s.src)).copy(header, 12);
    Buffer.from(v4bytes(s.dst)).copy(header, 16);
    Buffer.from(ipOpts).copy(header, 20);
    header.writeUInt16BE(inetChecksum(header), 10);
    pseudo = sum16(header, 12, 20) + 6 + covered;
  } else {
    const exts = s.extensions ?? [];
    const extBytes = exts.reduce((n, e) => n + e.bytes.length, 0);
    header = Buffer.alloc(40 + extBytes);
    header[0] = 0x60;
    header.writeUInt16BE(extBytes + seg.length, 4);
    header[6] = exts.length ? exts[0]!.type : 6;
    header[7] = s.ttl ?? 77;
    Buffer.from(v6bytes(s.src)).copy(header, 8);
    Buffer.from(v6bytes(s.dst)).copy(header, 24);
    let at = 40;
    exts.forEach((e, i) => {
      Buffer.from(e.bytes).copy(header, at);
      header[at] = i + 1 < exts.length ? exts[i + 1]!.type : 6;
      at += e.bytes.length;
    });
    pseudo = sum16(header, 8, 40) + 6 + covered;
  }
  const c = (inetChecksum(seg, 0, covered, pseudo) + (s.tcpChecksumError ?? 0)) & 0xffff;
  seg.writeUInt16BE(c, 16);
  return Buffer.concat([header, seg]);
}

/**
 * Split an IPv4 packet into fragments at the given payload offsets (multiples of 8, counted
 * from the end of the IP header), each with its own IP header (same id), MF and offset set.
 */
export function fragment4(packet: Buffer, cuts: number[]): Buffer[] {
  const ihl = (packet[0]! & 0x0f) * 4;
  const data = packet.subarray(ihl);
  const bounds = [0, ...cuts, data.length];
  const out: Buffer[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const from = bounds[i]!;
    const to = bounds[i + 1]!;
    if (from % 8 !== 0) throw new Error(`fragment offset ${from} is not a multiple of 8`);
    const h = Buffer.from(packet.subarray(0, ihl));
    h.writeUInt16BE(ihl + (to - from), 2);
    h.writeUInt16BE((i + 2 < bounds.length ? 0x2000 : 0) | (from / 8), 6);
    h.writeUInt16BE(0, 10);
    h.writeUInt16BE(inetChecksum(h), 10);
    out.push(Buffer.concat([h, data.subarray(from, to)]));
  }
  return out;
}

/** Recompute the IPv4 header checksum in place (after editing the header). */
export function fixIpChecksum(packet: Buffer): Buffer {
  const ihl = (packet[0]! & 0x0f) * 4;
  packet.writeUInt16BE(0, 10);
  packet.writeUInt16BE(inetChecksum(packet, 0, ihl), 10);
  return packet;
}

export interface SynBlockLies {
  /** Written instead of the real token length. */
  tokenLength?: number;
  /** Written instead of the real block length. */
  blockLength?: number;
  version?: number;
  type?: number;
}

/**
 * A protocol v2 SYN block (docs/protocol.md) with the full token and no proof (flag NEED_KEY:
 * "I know no key of yours"): flags u8 | keyId[4] | ts u64 | nonce[8] | peerRef[8] | macC[16] |
 * tokenLength u16 | token, then the trailer version:u8 type:u8 blockLength:u16. The token is
 * verified before anything else. `lies` replaces the honest fields.
 */
export function synBlock(token: Uint8Array | string, lies: SynBlockLies = {}, nonce: Uint8Array = new Uint8Array(16).fill(0xa5)): Buffer {
  const t = typeof token === 'string' ? Buffer.from(token, 'latin1') : Buffer.from(token);
  const fixed = 1 + 4 + 8 + 8 + 8 + 16;
  const body = Buffer.alloc(fixed + 2 + t.length);
  body[0] = 0x02; // FLAG_NEED_KEY
  Buffer.from(nonce).subarray(0, 8).copy(body, 13);
  body.writeUInt16BE(lies.tokenLength ?? t.length, fixed);
  t.copy(body, fixed + 2);
  const trailer = Buffer.alloc(4);
  trailer[0] = lies.version ?? 2;
  trailer[1] = lies.type ?? 1;
  trailer.writeUInt16BE(lies.blockLength ?? body.length + 4, 2);
  return Buffer.concat([body, trailer]);
}

/** The same compact JWS with one character of its signature part changed (still base64url). */
export function flipSignature(token: string): string {
  const dot = token.lastIndexOf('.');
  const at = dot + 1 + Math.floor((token.length - dot - 1) / 2);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const next = alphabet[(alphabet.indexOf(token[at]!) + 1) % 64]!;
  return token.slice(0, at) + next + token.slice(at + 1);
}

/** The same compact JWS with its payload's labels replaced (signature kept): a forged claim. */
export function editLabels(token: string, labels: string[]): string {
  const [h, p, sig] = token.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
  claims.lbl = [...labels].sort();
  return `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${sig}`;
}
