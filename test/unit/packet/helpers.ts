// Test helpers for the packet layer: a deliberately plain reference packet builder and
// checksum (independent of src/packet's optimized code), fixture loading, a pcap writer for
// the tshark cross-check, and fast-check arbitraries for valid packets.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';

/** Our handshake marker: RFC 6994 experimental option, ExID 0x7E55, length 4. */
export const EXID = 0x7e55;
export const OUR_OPTION = Uint8Array.of(253, 4, 0x7e, 0x55);

export interface Spec {
  family: 4 | 6;
  src: Uint8Array;
  dst: Uint8Array;
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  /** TCP option bytes, length a multiple of 4, at most 40. */
  options: Uint8Array;
  payload: Uint8Array;
  /** IPv4 only: option bytes, a multiple of 4, at most 40. */
  ipOptions?: Uint8Array;
  ttl?: number;
  id?: number;
  /** Low nibble of TCP byte 12: reserved bits and AE (RFC 9768), which rewrites must keep. */
  reserved?: number;
}

/** Reference ones'-complement checksum, the textbook way (RFC 1071). */
export function refChecksum(bytes: number[]): number {
  let s = 0;
  for (let i = 0; i < bytes.length; i += 2) s += (bytes[i]! << 8) + (bytes[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return ~s & 0xffff;
}

/** Build a valid packet with correct checksums from a spec. */
export function build(spec: Spec): Uint8Array {
  const ipo = spec.family === 4 ? (spec.ipOptions ?? new Uint8Array(0)) : new Uint8Array(0);
  const ipHL = spec.family === 4 ? 20 + ipo.length : 40;
  const thl = 20 + spec.options.length;
  const tcpLen = thl + spec.payload.length;
  const total = ipHL + tcpLen;
  const b = new Uint8Array(total);
  const dv = new DataView(b.buffer);
  if (spec.family === 4) {
    b[0] = 0x40 | (ipHL >> 2);
    dv.setUint16(2, total);
    dv.setUint16(4, spec.id ?? 0x1234);
    b[6] = 0x40; // DF
    b[8] = spec.ttl ?? 64;
    b[9] = 6;
    b.set(spec.src, 12);
    b.set(spec.dst, 16);
    b.set(ipo, 20);
    dv.setUint16(10, refChecksum([...b.subarray(0, ipHL)]));
  } else {
    b[0] = 0x60;
    dv.setUint16(4, tcpLen);
    b[6] = 6;
    b[7] = spec.ttl ?? 64;
    b.set(spec.src, 8);
    b.set(spec.dst, 24);
  }
  const t = ipHL;
  dv.setUint16(t, spec.sport);
  dv.setUint16(t + 2, spec.dport);
  dv.setUint32(t + 4, spec.seq >>> 0);
  dv.setUint32(t + 8, spec.ack >>> 0);
  b[t + 12] = ((thl >> 2) << 4) | ((spec.reserved ?? 0) & 0x0f);
  b[t + 13] = spec.flags;
  dv.setUint16(t + 14, spec.window);
  b.set(spec.options, t + 20);
  b.set(spec.payload, t + thl);
  fixTcpChecksum(b, spec.family, ipHL);
  return b;
}

/** Reference TCP checksum of a packet (independent of src/packet). */
export function refTcpChecksum(b: Uint8Array, family: 4 | 6, ipHL: number, total = b.length): number {
  const seg = [...b.subarray(ipHL, total)];
  seg[16] = 0;
  seg[17] = 0;
  const len = total - ipHL;
  const pseudo =
    family === 4
      ? [...b.subarray(12, 20), 0, 6, len >> 8, len & 0xff]
      : [...b.subarray(8, 40), 0, 0, len >> 8, len & 0xff, 0, 0, 0, 6];
  if (seg.length % 2) seg.push(0);
  return refChecksum([...pseudo, ...seg]);
}

export function fixTcpChecksum(b: Uint8Array, family: 4 | 6, ipHL: number): void {
  const c = refTcpChecksum(b, family, ipHL);
  b[ipHL + 16] = c >> 8;
  b[ipHL + 17] = c & 0xff;
}

export function fixIpChecksum(b: Uint8Array): void {
  const ipHL = (b[0]! & 15) << 2;
  b[10] = 0;
  b[11] = 0;
  const c = refChecksum([...b.subarray(0, ipHL)]);
  b[10] = c >> 8;
  b[11] = c & 0xff;
}

export const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/[\s:]/g, ''), 'hex'));
export const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

export interface Fixture {
  name: string;
  note: string;
  bytes: Uint8Array;
}

/** Real Linux packets captured by scripts/packet-fixtures.ts. */
export function loadFixtures(): Fixture[] {
  const file = fileURLToPath(new URL('../../fixtures/packets/linux-capture.json', import.meta.url));
  const json = JSON.parse(readFileSync(file, 'utf8')) as { packets: { name: string; note: string; hex: string }[] };
  return json.packets.map((p) => ({ name: p.name, note: p.note, bytes: hex(p.hex) }));
}

export function fixture(name: string): Uint8Array {
  const f = loadFixtures().find((x) => x.name === name);
  if (!f) throw new Error(`no fixture ${name}`);
  return f.bytes;
}

/** A classic pcap file (microsecond, little-endian) with link type 101: raw IP packets. */
export function pcap(packets: Uint8Array[]): Buffer {
  const parts: Buffer[] = [];
  const g = Buffer.alloc(24);
  g.writeUInt32LE(0xa1b2c3d4, 0);
  g.writeUInt16LE(2, 4);
  g.writeUInt16LE(4, 6);
  g.writeUInt32LE(262144, 16);
  g.writeUInt32LE(101, 20);
  parts.push(g);
  packets.forEach((p, i) => {
    const h = Buffer.alloc(16);
    h.writeUInt32LE(1_700_000_000 + i, 0);
    h.writeUInt32LE(0, 4);
    h.writeUInt32LE(p.length, 8);
    h.writeUInt32LE(p.length, 12);
    parts.push(h, Buffer.from(p));
  });
  return Buffer.concat(parts);
}

// ---- fast-check arbitraries -------------------------------------------------------------

const u8 = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });

/** One well-formed TCP option (never our ExID, so our option is findable after adding it). */
export const optionArb: fc.Arbitrary<readonly number[]> = fc.oneof(
  fc.constant([1]),
  fc.integer({ min: 0, max: 65535 }).map((m) => [2, 4, m >> 8, m & 0xff]),
  fc.integer({ min: 0, max: 14 }).map((s) => [3, 3, s]),
  fc.constant([4, 2]),
  fc.tuple(u8(4), u8(4)).map(([a, b]) => [8, 10, ...a, ...b]),
  fc.integer({ min: 1, max: 4 }).chain((n) => u8(8 * n).map((d) => [5, 2 + 8 * n, ...d])),
  fc
    .tuple(fc.constantFrom(253, 254), fc.integer({ min: 0, max: 65535 }).filter((x) => x !== EXID), fc.uint8Array({ maxLength: 8 }))
    .map(([k, exid, d]) => [k, 4 + d.length, exid >> 8, exid & 0xff, ...d]),
  fc.tuple(fc.integer({ min: 6, max: 252 }).filter((k) => k !== 8), fc.uint8Array({ maxLength: 10 })).map(([k, d]) => [k, 2 + d.length, ...d]),
);

/** An options area: options that fit in 40 bytes, padded to 4 with NOPs or with EOL (+ junk). */
export const optionsArb: fc.Arbitrary<Uint8Array> = fc
  .tuple(fc.array(optionArb, { maxLength: 8 }), fc.constantFrom('nop', 'eol', 'eol-junk'), fc.uint8Array({ minLength: 3, maxLength: 3 }))
  .map(([opts, pad, junk]) => {
    const out: number[] = [];
    for (const o of opts) if (out.length + o.length <= 40) out.push(...o);
    const need = (4 - (out.length % 4)) % 4;
    if (pad === 'nop') for (let i = 0; i < need; i++) out.unshift(1);
    else if (need > 0) out.push(0, ...(pad === 'eol-junk' ? [...junk] : [0, 0, 0]).slice(0, need - 1));
    return Uint8Array.from(out);
  });

export const specArb: fc.Arbitrary<Spec> = fc.record({
  family: fc.constantFrom(4 as const, 6 as const),
  src: u8(16),
  dst: u8(16),
  sport: fc.integer({ min: 0, max: 65535 }),
  dport: fc.integer({ min: 0, max: 65535 }),
  seq: fc.integer({ min: 0, max: 0xffffffff }),
  ack: fc.integer({ min: 0, max: 0xffffffff }),
  flags: fc.integer({ min: 0, max: 255 }),
  window: fc.integer({ min: 0, max: 65535 }),
  options: optionsArb,
  payload: fc.uint8Array({ maxLength: 700 }),
  ipOptions: fc.integer({ min: 0, max: 10 }).chain((n) => u8(4 * n)),
  reserved: fc.nat(15),
  ttl: fc.nat(255),
  id: fc.nat(65535),
}).map((s) => (s.family === 4 ? { ...s, src: s.src.subarray(0, 4), dst: s.dst.subarray(0, 4) } : s));

/** An RFC 6994 option with our ExID and 0..10 data bytes (lengths 4..14: exercises NOP padding). */
export const ourOptionArb: fc.Arbitrary<Uint8Array> = fc
  .uint8Array({ maxLength: 10 })
  .map((d) => Uint8Array.from([253, 4 + d.length, EXID >> 8, EXID & 0xff, ...d]));
