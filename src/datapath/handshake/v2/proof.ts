// The two MACs of protocol v2 and the byte strings they cover, built in one reused scratch
// buffer (the hot path allocates no intermediate arrays). docs/protocol.md, "Proofs".
//
//   macC  = HMAC-SHA256(PK, "T2S" ‖ ISNc u32 ‖ synHeader[29] ‖ refC[16])[0..16]
//   macS  = HMAC-SHA256(PK, "T2A" ‖ ISNc u32 ‖ ISNs u32 ‖ macC[16] ‖ flagsS u8 ‖ refS[16])[0..16]
//
// No addresses or ports: a NAT on either host (Docker's published ports, MASQUERADE) rewrites
// them between the two hosts' queues, and each host sees only its own view. Replay from
// another source is the shared strike register's to refuse (register.ts; docs/protocol.md,
// "Why the proofs do not cover the tuple").

import type { Digests } from '../../../identity/index.js';
import { preparedMac, type PreparedMac } from '../../../identity/session.js';
import { MAC2_LENGTH, SYN_HEADER_LENGTH, TOKEN_REF_LENGTH } from './wire.js';
import type { TcpPacket } from '../../../packet/index.js';
import type { TupleView } from './types.js';

const TAG_SYN = Uint8Array.of(0x54, 0x32, 0x53); // "T2S"
const TAG_SYNACK = Uint8Array.of(0x54, 0x32, 0x41); // "T2A"

/** A pair key prepared for its MACs (identity/session.ts preparedMac). */
export type PairKey = PreparedMac;

export interface Proofs {
  /** A pair key (32 bytes) prepared for the MACs below: once per key, then cached with it. */
  prepare(pk: Uint8Array): PairKey;
  /** macC into out[at..at+16), over the SYN header at header[h..h+29) and refC at ref[r..r+16). */
  synMac(pk: PairKey, isnC: number, header: Uint8Array, h: number, ref: Uint8Array, r: number, out: Uint8Array, at: number): void;
  /** macS into out[at..at+16), over macC at mac[m..m+16) and refS at ref[r..r+16). */
  synAckMac(pk: PairKey, isnC: number, isnS: number, mac: Uint8Array, m: number, flags: number, ref: Uint8Array, r: number, out: Uint8Array, at: number): void;
  /** A 32-bit FNV-1a hash of (client addr, server addr, ports, ISNc) (this host's view): what the strike register keeps of the tuple. */
  tupleHash(t: TupleView, isnC: number): number;
}

/**
 * Fill a reusable TupleView from a parsed packet of the handshake: `fromClient` for a SYN
 * (client = source), false for a SYN-ACK (client = destination). Same at both hosts, so
 * both name the tuple by role (docs/protocol.md, "Proofs").
 */
export function fillTuple(t: TupleView, buf: Uint8Array, pkt: Pick<TcpPacket, 'srcAddrOffset' | 'dstAddrOffset' | 'addrLength' | 'srcPort' | 'dstPort'>, fromClient: boolean): TupleView {
  t.buf = buf;
  t.addrLength = pkt.addrLength;
  t.clientAddrOffset = fromClient ? pkt.srcAddrOffset : pkt.dstAddrOffset;
  t.serverAddrOffset = fromClient ? pkt.dstAddrOffset : pkt.srcAddrOffset;
  t.clientPort = fromClient ? pkt.srcPort : pkt.dstPort;
  t.serverPort = fromClient ? pkt.dstPort : pkt.srcPort;
  return t;
}

/** A TupleView to reuse (fill it with fillTuple). */
export function newTuple(): TupleView {
  return { buf: new Uint8Array(0), addrLength: 4, clientAddrOffset: 0, serverAddrOffset: 0, clientPort: 0, serverPort: 0 };
}

function putU32(b: Uint8Array, p: number, v: number): void {
  b[p] = v >>> 24;
  b[p + 1] = (v >>> 16) & 0xff;
  b[p + 2] = (v >>> 8) & 0xff;
  b[p + 3] = v & 0xff;
}

function copyInto(dst: Uint8Array, p: number, src: Uint8Array, from: number, n: number): void {
  for (let i = 0; i < n; i++) dst[p + i] = src[from + i]!;
}

function fnv(h: number, v: number): number {
  return Math.imul(h ^ (v & 0xff), 0x01000193);
}

export function createProofs(digests?: Digests): Proofs {
  // Exact-length inputs, written in place (no views made per MAC).
  const synInput = new Uint8Array(TAG_SYN.length + 4 + SYN_HEADER_LENGTH + TOKEN_REF_LENGTH);
  const synAckInput = new Uint8Array(TAG_SYNACK.length + 4 + 4 + MAC2_LENGTH + 1 + TOKEN_REF_LENGTH);
  synInput.set(TAG_SYN, 0);
  synAckInput.set(TAG_SYNACK, 0);
  const digest = new Uint8Array(32);

  return {
    prepare: (pk) => preparedMac(pk, digests),
    synMac(pk, isnC, header, h, ref, r, out, at) {
      let p = TAG_SYN.length;
      putU32(synInput, p, isnC >>> 0);
      p += 4;
      copyInto(synInput, p, header, h, SYN_HEADER_LENGTH);
      p += SYN_HEADER_LENGTH;
      copyInto(synInput, p, ref, r, TOKEN_REF_LENGTH);
      pk.mac(synInput, digest);
      copyInto(out, at, digest, 0, MAC2_LENGTH);
    },
    synAckMac(pk, isnC, isnS, mac, m, flags, ref, r, out, at) {
      let p = TAG_SYNACK.length;
      putU32(synAckInput, p, isnC >>> 0);
      p += 4;
      putU32(synAckInput, p, isnS >>> 0);
      p += 4;
      copyInto(synAckInput, p, mac, m, MAC2_LENGTH);
      p += MAC2_LENGTH;
      synAckInput[p++] = flags;
      copyInto(synAckInput, p, ref, r, TOKEN_REF_LENGTH);
      pk.mac(synAckInput, digest);
      copyInto(out, at, digest, 0, MAC2_LENGTH);
    },
    tupleHash(t, isnC) {
      let h = 0x811c9dc5;
      const b = t.buf;
      for (let i = 0; i < t.addrLength; i++) h = fnv(h, b[t.clientAddrOffset + i]!);
      for (let i = 0; i < t.addrLength; i++) h = fnv(h, b[t.serverAddrOffset + i]!);
      h = fnv(h, t.clientPort >> 8);
      h = fnv(h, t.clientPort);
      h = fnv(h, t.serverPort >> 8);
      h = fnv(h, t.serverPort);
      h = fnv(h, isnC >>> 24);
      h = fnv(h, isnC >>> 16);
      h = fnv(h, isnC >>> 8);
      h = fnv(h, isnC);
      return h | 0;
    },
  };
}
