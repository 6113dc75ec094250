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

import { NODE_DIGESTS, type Digests } from '../../../identity/index.js';
import { MAC2_LENGTH, SYN_HEADER_LENGTH, TOKEN_REF_LENGTH } from './wire.js';
import type { TcpPacket } from '../../../packet/index.js';
import type { TupleView } from './types.js';

const TAG_SYN = Uint8Array.of(0x54, 0x32, 0x53); // "T2S"
const TAG_SYNACK = Uint8Array.of(0x54, 0x32, 0x41); // "T2A"

export interface Proofs {
  /** macC into out[at..at+16). */
  synMac(pk: Uint8Array, isnC: number, header: Uint8Array, refC: Uint8Array, out: Uint8Array, at: number): void;
  /** macS into out[at..at+16). */
  synAckMac(pk: Uint8Array, isnC: number, isnS: number, macC: Uint8Array, flags: number, refS: Uint8Array, out: Uint8Array, at: number): void;
  /** (client addr, server addr, ports, ISNc) as a Map key: the per-connection state's. */
  flowKey(t: TupleView, isnC: number): string;
  /** A 32-bit FNV-1a hash of the same (this host's view): what the strike register keeps of the tuple. */
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

export function createProofs(digests: Digests = NODE_DIGESTS): Proofs {
  const scratch = new Uint8Array(160);
  const digest = new Uint8Array(32);

  /** tag ‖ ISNc at scratch[0..); returns the length written. */
  function head(tag: Uint8Array, isnC: number): number {
    scratch.set(tag, 0);
    putU32(scratch, tag.length, isnC >>> 0);
    return tag.length + 4;
  }

  const units: number[] = [];

  return {
    synMac(pk, isnC, header, refC, out, at) {
      let p = head(TAG_SYN, isnC);
      scratch.set(header.subarray(0, SYN_HEADER_LENGTH), p);
      p += SYN_HEADER_LENGTH;
      scratch.set(refC.subarray(0, TOKEN_REF_LENGTH), p);
      p += TOKEN_REF_LENGTH;
      digests.hmacSha256(pk, scratch.subarray(0, p), digest);
      out.set(digest.subarray(0, MAC2_LENGTH), at);
    },
    synAckMac(pk, isnC, isnS, macC, flags, refS, out, at) {
      let p = head(TAG_SYNACK, isnC);
      putU32(scratch, p, isnS >>> 0);
      p += 4;
      scratch.set(macC.subarray(0, MAC2_LENGTH), p);
      p += MAC2_LENGTH;
      scratch[p++] = flags;
      scratch.set(refS.subarray(0, TOKEN_REF_LENGTH), p);
      p += TOKEN_REF_LENGTH;
      digests.hmacSha256(pk, scratch.subarray(0, p), digest);
      out.set(digest.subarray(0, MAC2_LENGTH), at);
    },
    flowKey(t, isnC) {
      units.length = 0;
      const b = t.buf;
      for (let i = 0; i < t.addrLength; i += 2) units.push((b[t.clientAddrOffset + i]! << 8) | b[t.clientAddrOffset + i + 1]!);
      for (let i = 0; i < t.addrLength; i += 2) units.push((b[t.serverAddrOffset + i]! << 8) | b[t.serverAddrOffset + i + 1]!);
      units.push(t.clientPort, t.serverPort, isnC >>> 16, isnC & 0xffff);
      return String.fromCharCode.apply(null, units);
    },
    tupleHash(t, isnC) {
      let h = 0x811c9dc5;
      const b = t.buf;
      const mix = (v: number): void => {
        h = Math.imul(h ^ (v & 0xff), 0x01000193);
      };
      for (let i = 0; i < t.addrLength; i++) mix(b[t.clientAddrOffset + i]!);
      for (let i = 0; i < t.addrLength; i++) mix(b[t.serverAddrOffset + i]!);
      mix(t.clientPort >> 8);
      mix(t.clientPort);
      mix(t.serverPort >> 8);
      mix(t.serverPort);
      mix(isnC >>> 24);
      mix(isnC >>> 16);
      mix(isnC >>> 8);
      mix(isnC);
      return h | 0;
    },
  };
}
