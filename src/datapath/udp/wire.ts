// The UDP exchange's control packets, the whole UDP payload of a datagram on the flow's own
// 5-tuple (docs/protocol.md, "UDP"). Pure codec, strict: a packet decodes only when every
// length adds up exactly.
//
//   offset  Hello (client → server)    Reply (server → client)     Confirm (client → server)   Retry (server → client)
//   0       magic 7e 55 75 01          magic                        magic                        magic
//   4       type 1                     type 2                       type 3                       type 4
//   5       flags (bit 0: PROOF)       0                            0                            0
//   6       token length (u16)         token length                 data length (u16)            token length
//   8       nonceC (16)                nonceS (16)                  macC (16)                    nonceC (16, the Hello's)
//   24      ts (u64 ms since 1970)     macS (16)                    data (the held datagram)     token S
//   32      key id (4)                 token S
//   36      macH (16)
//   52      token C
//
// A Hello without PROOF (the client knows no key of the server host: first contact) has zeros
// for ts, key id and macH; the server answers it with a Retry and keeps nothing.

import { putTs } from '../handshake/v2/wire.js';

/** Write a ms timestamp as u64 big-endian (protocol v2's writer). */
export const writeU64 = putTs;

export const MAGIC = Uint8Array.of(0x7e, 0x55, 0x75, 0x01);
export const HELLO = 1;
export const REPLY = 2;
export const CONFIRM = 3;
export const RETRY = 4;
/** Hello flags: the Hello carries ts, key id and macH (hello-proof.ts). */
export const FLAG_PROOF = 0x01;
/** Tokens longer than this are refused unread (a CA token is ~600 bytes). */
export const MAX_TOKEN = 2048;
const HEAD = 8;
const N = 16;
/** The Hello's fixed part after the head: nonceC, ts, key id, macH. */
const HELLO_FIXED = N + 8 + 4 + N;

export type Control =
  | { type: typeof HELLO; flags: number; nonceC: Uint8Array; ts: number; keyId: Uint8Array; macH: Uint8Array; token: Uint8Array }
  | { type: typeof REPLY; nonceS: Uint8Array; macS: Uint8Array; token: Uint8Array }
  | { type: typeof CONFIRM; macC: Uint8Array; data: Uint8Array }
  | { type: typeof RETRY; nonceC: Uint8Array; token: Uint8Array };

/** Whether a payload starts with the magic (a control packet, or data that looks like one). */
export function hasMagic(p: Uint8Array): boolean {
  return p.length >= 4 && p[0] === 0x7e && p[1] === 0x55 && p[2] === 0x75 && p[3] === 0x01;
}

/** A control packet (views into `p`, no copies), or why not. */
export function decodeControl(p: Uint8Array): Control | 'malformed' | 'too-large' {
  if (p.length < HEAD + N || !hasMagic(p)) return 'malformed';
  const type = p[4];
  const flags = p[5]!;
  if (flags !== 0 && !(type === HELLO && flags === FLAG_PROOF)) return 'malformed';
  const len = (p[6]! << 8) | p[7]!;
  if (type === HELLO) {
    if (len > MAX_TOKEN) return 'too-large';
    if (len === 0 || p.length !== HEAD + HELLO_FIXED + len) return 'malformed';
    const ts = readU64(p, HEAD + N);
    if ((flags & FLAG_PROOF) === 0 && (ts !== 0 || p.subarray(HEAD + N, HEAD + HELLO_FIXED).some((b) => b !== 0))) return 'malformed';
    return {
      type,
      flags,
      nonceC: p.subarray(HEAD, HEAD + N),
      ts,
      keyId: p.subarray(HEAD + N + 8, HEAD + N + 12),
      macH: p.subarray(HEAD + N + 12, HEAD + HELLO_FIXED),
      token: p.subarray(HEAD + HELLO_FIXED),
    };
  }
  if (type === REPLY) {
    if (len > MAX_TOKEN) return 'too-large';
    if (len === 0 || p.length !== HEAD + 2 * N + len) return 'malformed';
    return { type, nonceS: p.subarray(HEAD, HEAD + N), macS: p.subarray(HEAD + N, HEAD + 2 * N), token: p.subarray(HEAD + 2 * N) };
  }
  if (type === CONFIRM) {
    if (p.length !== HEAD + N + len) return 'malformed';
    return { type, macC: p.subarray(HEAD, HEAD + N), data: p.subarray(HEAD + N) };
  }
  if (type === RETRY) {
    if (len > MAX_TOKEN) return 'too-large';
    if (len === 0 || p.length !== HEAD + N + len) return 'malformed';
    return { type, nonceC: p.subarray(HEAD, HEAD + N), token: p.subarray(HEAD + N) };
  }
  return 'malformed';
}

/** An unsigned 64-bit big-endian integer (a ms timestamp: exact below 2^53; larger reads as stale). */
function readU64(p: Uint8Array, at: number): number {
  const hi = ((p[at]! << 24) | (p[at + 1]! << 16) | (p[at + 2]! << 8) | p[at + 3]!) >>> 0;
  const lo = ((p[at + 4]! << 24) | (p[at + 5]! << 16) | (p[at + 6]! << 8) | p[at + 7]!) >>> 0;
  return hi * 2 ** 32 + lo;
}

/** Encode a control packet into a new array. */
export function encodeControl(c: Control): Uint8Array {
  const ts = new Uint8Array(8);
  if (c.type === HELLO) writeU64(ts, 0, c.ts);
  const parts =
    c.type === HELLO ? [c.nonceC, ts, c.keyId, c.macH, c.token] : c.type === REPLY ? [c.nonceS, c.macS, c.token] : c.type === CONFIRM ? [c.macC, c.data] : [c.nonceC, c.token];
  const len = c.type === CONFIRM ? c.data.length : c.token.length;
  const out = new Uint8Array(HEAD + parts.reduce((n, x) => n + x.length, 0));
  out.set(MAGIC, 0);
  out[4] = c.type;
  out[5] = c.type === HELLO ? c.flags : 0;
  out[6] = len >> 8;
  out[7] = len & 0xff;
  let at = HEAD;
  for (const x of parts) {
    out.set(x, at);
    at += x.length;
  }
  return out;
}
