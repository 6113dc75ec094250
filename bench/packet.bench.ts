// Microbenchmark of the packet layer's hot path: npx tsx bench/packet.bench.ts
// For production-like numbers run the compiled file (npm run build; node dist/bench/packet.bench.js):
// tsx's module transform routes every cross-file call through a getter, adding ~10-40 ns per op.
// Prints the median ns/op over batches, and the ratio against a naive baseline written the
// obvious way (Buffer.concat + DataView word loop), to show what the allocation-free code buys.
// Packets are the Linux SYN option layout (20 option bytes) with a 600-byte token.

import {
  parseTcp,
  verifyChecksums,
  findOption,
  rebuild,
  toReset,
  flowKey,
  flowHash,
  type TcpPacket,
} from '../src/packet/index.js';

import { bench as timeBench, BATCHES } from './lib/micro.js';

const bench = (name: string, fn: () => unknown): number => timeBench(name, fn, 52);

function packet(family: 4 | 6, payload: number): Uint8Array {
  const ipHL = family === 4 ? 20 : 40;
  const b = new Uint8Array(ipHL + 40 + payload);
  if (family === 4) {
    b.set([0x45, 0, b.length >> 8, b.length & 0xff, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 213, 1, 1, 10, 213, 1, 2]);
  } else {
    b.set([0x60, 0, 0, 0, (b.length - 40) >> 8, (b.length - 40) & 0xff, 6, 64]);
    b[23] = 1;
    b[39] = 2;
  }
  b.set([0xa9, 0xcc, 0x1f, 0x90, 1, 2, 3, 4, 0, 0, 0, 0, 0xa0, 0x02, 0xfa, 0xf0, 0, 0, 0, 0], ipHL);
  b.set([2, 4, 5, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7], ipHL + 20);
  for (let i = 0; i < payload; i++) b[ipHL + 40 + i] = (i * 13) & 0xff;
  const p = parseTcp(b) as TcpPacket;
  const out = new Uint8Array(b.length);
  const n = rebuild(b, p, {}, out) as number; // fixes the checksums
  return out.subarray(0, n);
}


// ---- naive baseline: what one would write with Buffer methods -----------------------------
function naiveSum(b: Buffer, dv: DataView, from: number, to: number): number {
  let s = 0;
  for (let i = from; i + 1 < to; i += 2) s += dv.getUint16(i);
  if ((to - from) & 1) s += b[to - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}
function naiveAttach(pkt: Buffer, option: Buffer, token: Buffer): Buffer {
  const ipHL = (pkt[0]! & 15) * 4;
  const thl = (pkt[ipHL + 12]! >> 4) * 4;
  const out = Buffer.concat([pkt.subarray(0, ipHL + thl), option, pkt.subarray(ipHL + thl), token]);
  out.writeUInt16BE(out.length, 2);
  out[ipHL + 12] = ((thl + option.length) / 4) << 4;
  out.writeUInt16BE(0, 10);
  const dv = new DataView(out.buffer, out.byteOffset, out.length);
  out.writeUInt16BE(~naiveSum(out, dv, 0, ipHL) & 0xffff, 10);
  out.writeUInt16BE(0, ipHL + 16);
  const pseudo = Buffer.alloc(12);
  out.copy(pseudo, 0, 12, 20);
  pseudo[9] = 6;
  pseudo.writeUInt16BE(out.length - ipHL, 10);
  const s = naiveSum(pseudo, new DataView(pseudo.buffer, pseudo.byteOffset, 12), 0, 12) + naiveSum(out, dv, ipHL, out.length);
  out.writeUInt16BE(~((s & 0xffff) + (s >>> 16)) & 0xffff, ipHL + 16);
  return out;
}

const OPTION = Uint8Array.of(253, 4, 0x7e, 0x55);
const TOKEN = Uint8Array.from({ length: 600 }, (_, i) => (i * 7) & 0xff);
const out = new Uint8Array(2048);
const out2 = new Uint8Array(2048);

console.log(`packet layer microbenchmark — node ${process.version}, median of ${BATCHES} batches`);
for (const family of [4, 6] as const) {
  const syn = packet(family, 0);
  const synP = parseTcp(syn) as TcpPacket;
  const data = packet(family, 600);
  const dataP = parseTcp(data) as TcpPacket;
  const n = rebuild(syn, synP, { addOption: OPTION, append: TOKEN }, out2) as number;
  const tagged = out2.slice(0, n);
  const taggedP = parseTcp(tagged) as TcpPacket;
  const at = findOption(tagged, taggedP, 253, 0x7e55);
  const into = parseTcp(syn) as TcpPacket;
  console.log(`\nIPv${family}`);
  bench('parseTcp SYN', () => parseTcp(syn));
  bench('parseTcp SYN (reused result object)', () => parseTcp(syn, undefined, into));
  bench('verifyChecksums, 600-byte payload', () => verifyChecksums(data, dataP));
  bench('findOption 253/ExID in tagged SYN', () => findOption(tagged, taggedP, 253, 0x7e55));
  const attach = bench('parseTcp + rebuild: attach option + 600 B token', () => {
    const p = parseTcp(syn) as TcpPacket;
    return rebuild(syn, p, { addOption: OPTION, append: TOKEN }, out);
  });
  bench('parseTcp + findOption + rebuild: strip it again', () => {
    const p = parseTcp(tagged) as TcpPacket;
    return rebuild(tagged, p, { removeOptionAt: findOption(tagged, p, 253, 0x7e55), payloadLength: 0 }, out);
  });
  bench('rebuild: strip, given the parse', () => rebuild(tagged, taggedP, { removeOptionAt: at, payloadLength: 0 }, out));
  bench('toReset of the SYN', () => toReset(syn, synP, out));
  bench('flowKey', () => flowKey(syn, synP));
  bench('flowHash', () => flowHash(syn, synP));
  if (family === 4) {
    const synBuf = Buffer.from(syn);
    const optBuf = Buffer.from(OPTION);
    const tokBuf = Buffer.from(TOKEN);
    const naive = bench('baseline: naive Buffer.concat attach (no parse)', () => naiveAttach(synBuf, optBuf, tokBuf));
    console.log(`  ratio naive attach / parseTcp + rebuild attach: ${(naive / attach).toFixed(2)}x`);
  }
}
