// Protocol v2 blocks: byte layouts, encoding and a decoder that never throws. docs/protocol.md
// ("The blocks") is the normative description; test/unit/datapath/v2/vectors.test.ts checks
// its test vectors byte for byte.
//
// As in v1 the block sits at the END of the TCP payload and ends with a 4-byte trailer:
//   body ... | version u8 (=2) | type u8 | blockLength u16 (big endian, whole block incl. trailer)
// All integers big endian.
//
//   SYN          flags u8 | keyId[4] | ts u64 (ms) | nonce[8] | peerRef[8] | macC[16] | token part
//   SYN-ACK      flags u8 | macS[16] | token part
//   RETRY        flags u8 | [tokenLength u16 | token]   (only with RETRY_HAS_TOKEN)
//   token part = ref[16] (flag TOKEN_REF) or tokenLength u16 | token

export const WIRE_VERSION_2 = 2;

export const enum V2Type {
  Syn = 1,
  SynAck = 2,
  /** Type 3 was v1's ACK; v2 has no ACK block. */
  Retry = 4,
}

/** SYN / SYN-ACK: the token part is a 16-byte reference, not the token. */
export const FLAG_TOKEN_REF = 0x01;
/** SYN: the client knows no static key of this server host; no proof (keyId, ts, mac are zero). */
export const FLAG_NEED_KEY = 0x02;
/** RETRY: the server does not hold the client's token by reference; send it in full. */
export const RETRY_NEED_TOKEN = 0x02;
/** RETRY: the server's full token (with its `hk` claim) follows, for the client to learn the key. */
export const RETRY_HAS_TOKEN = 0x04;

export const KEY_ID_LENGTH = 4;
export const TS_LENGTH = 8;
export const NONCE2_LENGTH = 8;
export const PEER_REF_LENGTH = 8;
export const MAC2_LENGTH = 16;
export const TOKEN_REF_LENGTH = 16;
export const TRAILER_LENGTH = 4;
/** SYN bytes before the token part: what macC covers of the block, followed by macC. */
export const SYN_HEADER_LENGTH = 1 + KEY_ID_LENGTH + TS_LENGTH + NONCE2_LENGTH + PEER_REF_LENGTH; // 29
const SYN_FIXED = SYN_HEADER_LENGTH + MAC2_LENGTH; // 45
const SYNACK_FIXED = 1 + MAC2_LENGTH; // 17
/** The decoder's bound on a full token; the verifier refuses more than 1 200 bytes. */
export const MAX_TOKEN_LENGTH_2 = 2048;

const SYN_FLAGS = FLAG_TOKEN_REF | FLAG_NEED_KEY;
const SYNACK_FLAGS = FLAG_TOKEN_REF;
const RETRY_FLAGS = RETRY_NEED_TOKEN | RETRY_HAS_TOKEN;

export interface SynFields {
  flags: number;
  keyId: Uint8Array;
  /** Milliseconds since the epoch (client clock); an integer below 2^53. */
  ts: number;
  nonce: Uint8Array;
  peerRef: Uint8Array;
  mac: Uint8Array;
  /** With FLAG_TOKEN_REF: the 16-byte reference; else the full token. */
  token: Uint8Array;
}

export interface SynAckFields {
  flags: number;
  mac: Uint8Array;
  token: Uint8Array;
}

export interface RetryFields {
  flags: number;
  /** Present iff flags has RETRY_HAS_TOKEN. */
  token: Uint8Array | null;
}

/** Decoded blocks: every array is a view into the decoded payload (copy what you keep). */
export interface SynBlock2 extends SynFields {
  readonly type: V2Type.Syn;
  /** The first SYN_HEADER_LENGTH bytes of the block, as macC covers them. */
  readonly header: Uint8Array;
}
export interface SynAckBlock2 extends SynAckFields {
  readonly type: V2Type.SynAck;
}
export interface RetryBlock2 extends RetryFields {
  readonly type: V2Type.Retry;
}
export type Block2 = SynBlock2 | SynAckBlock2 | RetryBlock2;

export interface Decoded2 {
  block: Block2;
  /** Bytes of the payload in front of the block. */
  blockStart: number;
}

/** 'no-block': shorter than a trailer; 'version': another protocol version (a v1 peer); 'malformed': anything else wrong. */
export type Wire2Error = 'no-block' | 'version' | 'malformed';

function tokenPartLength(flags: number, tokenLength: number, refFlag: boolean): number {
  return refFlag && (flags & FLAG_TOKEN_REF) !== 0 ? TOKEN_REF_LENGTH : 2 + tokenLength;
}

export function synLength(flags: number, tokenLength: number): number {
  return SYN_FIXED + tokenPartLength(flags, tokenLength, true) + TRAILER_LENGTH;
}
export function synAckLength(flags: number, tokenLength: number): number {
  return SYNACK_FIXED + tokenPartLength(flags, tokenLength, true) + TRAILER_LENGTH;
}
export function retryLength(flags: number, tokenLength: number): number {
  return 1 + ((flags & RETRY_HAS_TOKEN) !== 0 ? 2 + tokenLength : 0) + TRAILER_LENGTH;
}

function putTokenPart(out: Uint8Array, p: number, byRef: boolean, token: Uint8Array): number {
  if (!byRef) {
    out[p++] = token.length >> 8;
    out[p++] = token.length & 0xff;
  }
  out.set(token, p);
  return p + token.length;
}

function putTrailer(out: Uint8Array, p: number, type: V2Type): number {
  const total = p + TRAILER_LENGTH;
  out[p] = WIRE_VERSION_2;
  out[p + 1] = type;
  out[p + 2] = total >> 8;
  out[p + 3] = total & 0xff;
  return total;
}

/** Write the ms timestamp as u64 big endian at `p`. */
export function putTs(out: Uint8Array, p: number, ts: number): void {
  const hi = Math.floor(ts / 0x1_0000_0000);
  const lo = ts >>> 0;
  out[p] = hi >>> 24;
  out[p + 1] = (hi >>> 16) & 0xff;
  out[p + 2] = (hi >>> 8) & 0xff;
  out[p + 3] = hi & 0xff;
  out[p + 4] = lo >>> 24;
  out[p + 5] = (lo >>> 16) & 0xff;
  out[p + 6] = (lo >>> 8) & 0xff;
  out[p + 7] = lo & 0xff;
}

function getU32(b: Uint8Array, p: number): number {
  return ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
}

/** Encode a SYN block into `out` at offset 0; returns its length. Field lengths are the caller's duty. */
export function encodeSyn(f: SynFields, out: Uint8Array): number {
  out[0] = f.flags;
  out.set(f.keyId, 1);
  putTs(out, 5, f.ts);
  out.set(f.nonce, 13);
  out.set(f.peerRef, 21);
  out.set(f.mac, 29);
  return putTrailer(out, putTokenPart(out, SYN_FIXED, (f.flags & FLAG_TOKEN_REF) !== 0, f.token), V2Type.Syn);
}

export function encodeSynAck(f: SynAckFields, out: Uint8Array): number {
  out[0] = f.flags;
  out.set(f.mac, 1);
  return putTrailer(out, putTokenPart(out, SYNACK_FIXED, (f.flags & FLAG_TOKEN_REF) !== 0, f.token), V2Type.SynAck);
}

/** Where macS sits in a SYN-ACK block. */
export const SYNACK_MAC_AT = 1;
/** Where macC sits in a SYN block (right after the header it covers). */
export const SYN_MAC_AT = SYN_HEADER_LENGTH;

/**
 * The packet path's SYN-ACK encoder (encodeSynAck without a fields object): macS left zero
 * at SYNACK_MAC_AT for the caller to write; with FLAG_TOKEN_REF the reference is the first
 * TOKEN_REF_LENGTH bytes of `hash` (the token's SHA-256), else the token.
 */
export function putSynAck(flags: number, token: Uint8Array, hash: Uint8Array, out: Uint8Array): number {
  out[0] = flags;
  for (let i = 0; i < MAC2_LENGTH; i++) out[SYNACK_MAC_AT + i] = 0;
  let p = SYNACK_FIXED;
  if ((flags & FLAG_TOKEN_REF) !== 0) {
    for (let i = 0; i < TOKEN_REF_LENGTH; i++) out[p + i] = hash[i]!;
    p += TOKEN_REF_LENGTH;
  } else {
    p = putTokenPart(out, p, false, token);
  }
  return putTrailer(out, p, V2Type.SynAck);
}

/**
 * The packet path's SYN encoder: flags, keyId (4 bytes at keyId[0..4), zero when null), ts,
 * nonce (8 bytes), peerRef (the first PEER_REF_LENGTH bytes of `peerRef`, zero when null),
 * macC left zero at SYN_MAC_AT; then the reference (first TOKEN_REF_LENGTH bytes of `hash`,
 * with FLAG_TOKEN_REF) or the token.
 */
export function putSyn(flags: number, keyId: Uint8Array | null, ts: number, nonce: Uint8Array, peerRef: Uint8Array | null, token: Uint8Array, hash: Uint8Array, out: Uint8Array): number {
  out[0] = flags;
  for (let i = 0; i < KEY_ID_LENGTH; i++) out[1 + i] = keyId === null ? 0 : keyId[i]!;
  putTs(out, 5, ts);
  for (let i = 0; i < NONCE2_LENGTH; i++) out[13 + i] = nonce[i]!;
  for (let i = 0; i < PEER_REF_LENGTH; i++) out[21 + i] = peerRef === null ? 0 : peerRef[i]!;
  for (let i = 0; i < MAC2_LENGTH; i++) out[SYN_MAC_AT + i] = 0;
  let p = SYN_FIXED;
  if ((flags & FLAG_TOKEN_REF) !== 0) {
    for (let i = 0; i < TOKEN_REF_LENGTH; i++) out[p + i] = hash[i]!;
    p += TOKEN_REF_LENGTH;
  } else {
    p = putTokenPart(out, p, false, token);
  }
  return putTrailer(out, p, V2Type.Syn);
}

export function encodeRetry(f: RetryFields, out: Uint8Array): number {
  out[0] = f.flags;
  let p = 1;
  if ((f.flags & RETRY_HAS_TOKEN) !== 0 && f.token) p = putTokenPart(out, p, false, f.token);
  return putTrailer(out, p, V2Type.Retry);
}

/**
 * A decoded block as offsets into the payload it was decoded from (decodeInto): what the
 * engine reads on the packet path, one reused object, no views made.
 */
export interface BlockView {
  type: V2Type;
  flags: number;
  /** Where the block starts in the payload (= bytes in front of it). SYN: the header macC covers starts here. */
  start: number;
  /** SYN: the proof's timestamp (ms). */
  ts: number;
  /** SYN: keyId, peerRef; SYN and SYN-ACK: the MAC. */
  keyIdAt: number;
  peerRefAt: number;
  macAt: number;
  /** The token part: a reference (TOKEN_REF flag) or a full token; length 0 = none (a RETRY without one). */
  tokenAt: number;
  tokenLength: number;
}

export function newBlockView(): BlockView {
  return { type: V2Type.Syn, flags: 0, start: 0, ts: 0, keyIdAt: 0, peerRefAt: 0, macAt: 0, tokenAt: 0, tokenLength: 0 };
}

/**
 * The token part at [p, end): a 16-byte ref, or a length-prefixed token filling it exactly.
 * Sets v.tokenAt/tokenLength; false when the lengths do not add up.
 */
function tokenPartAt(b: Uint8Array, p: number, end: number, byRef: boolean, v: BlockView): boolean {
  if (byRef) {
    if (end - p !== TOKEN_REF_LENGTH) return false;
    v.tokenAt = p;
    v.tokenLength = TOKEN_REF_LENGTH;
    return true;
  }
  if (end - p < 2) return false;
  const len = (b[p]! << 8) | b[p + 1]!;
  if (len === 0 || len > MAX_TOKEN_LENGTH_2 || p + 2 + len !== end) return false;
  v.tokenAt = p + 2;
  v.tokenLength = len;
  return true;
}

/**
 * Decode the v2 block at the end of `payload` into `v` (offsets into payload). Never throws.
 * Unknown flag bits, lengths that do not add up exactly, an unknown type: 'malformed'.
 * null when it decoded.
 */
export function decodeInto(payload: Uint8Array, v: BlockView): Wire2Error | null {
  const n = payload.length;
  if (n < TRAILER_LENGTH) return 'no-block';
  const version = payload[n - 4]!;
  if (version !== WIRE_VERSION_2) return 'version';
  const type = payload[n - 3]!;
  const total = (payload[n - 2]! << 8) | payload[n - 1]!;
  if (total > n || total < TRAILER_LENGTH + 1) return 'malformed';
  const start = n - total;
  const end = n - TRAILER_LENGTH;
  const flags = payload[start]!;
  const b = payload;
  v.flags = flags;
  v.start = start;
  v.tokenAt = 0;
  v.tokenLength = 0;
  switch (type) {
    case V2Type.Syn: {
      if (total < SYN_FIXED + TRAILER_LENGTH || (flags & ~SYN_FLAGS) !== 0) return 'malformed';
      if (!tokenPartAt(b, start + SYN_FIXED, end, (flags & FLAG_TOKEN_REF) !== 0, v)) return 'malformed';
      // A first-contact SYN carries no proof, so it cannot carry a reference either (the
      // server answers it with its own token, which needs the client's verified).
      if ((flags & (FLAG_NEED_KEY | FLAG_TOKEN_REF)) === (FLAG_NEED_KEY | FLAG_TOKEN_REF)) return 'malformed';
      const ts = getU32(b, start + 5) * 0x1_0000_0000 + getU32(b, start + 9);
      if (ts > Number.MAX_SAFE_INTEGER) return 'malformed';
      v.type = V2Type.Syn;
      v.ts = ts;
      v.keyIdAt = start + 1;
      v.peerRefAt = start + 21;
      v.macAt = start + 29;
      return null;
    }
    case V2Type.SynAck: {
      if (total < SYNACK_FIXED + TRAILER_LENGTH || (flags & ~SYNACK_FLAGS) !== 0) return 'malformed';
      if (!tokenPartAt(b, start + SYNACK_FIXED, end, (flags & FLAG_TOKEN_REF) !== 0, v)) return 'malformed';
      v.type = V2Type.SynAck;
      v.macAt = start + 1;
      return null;
    }
    case V2Type.Retry: {
      if ((flags & ~RETRY_FLAGS) !== 0) return 'malformed';
      v.type = V2Type.Retry;
      if ((flags & RETRY_HAS_TOKEN) === 0) return end === start + 1 ? null : 'malformed';
      return tokenPartAt(b, start + 1, end, false, v) ? null : 'malformed';
    }
    default:
      return 'malformed';
  }
}

const scratchView = newBlockView();

/**
 * Decode the v2 block at the end of `payload`. Never throws; returned arrays are views into
 * `payload`. Unknown flag bits, lengths that do not add up exactly, an unknown type: 'malformed'.
 * (decodeInto is the same without the views.)
 */
export function decodeBlock2(payload: Uint8Array): Decoded2 | Wire2Error {
  const v = scratchView;
  const err = decodeInto(payload, v);
  if (err !== null) return err;
  const b = payload;
  const start = v.start;
  const token = b.subarray(v.tokenAt, v.tokenAt + v.tokenLength);
  switch (v.type) {
    case V2Type.Syn:
      return {
        block: {
          type: V2Type.Syn,
          flags: v.flags,
          keyId: b.subarray(start + 1, start + 5),
          ts: v.ts,
          nonce: b.subarray(start + 13, start + 21),
          peerRef: b.subarray(start + 21, start + 29),
          mac: b.subarray(start + 29, start + 45),
          token,
          header: b.subarray(start, start + SYN_HEADER_LENGTH),
        },
        blockStart: start,
      };
    case V2Type.SynAck:
      return { block: { type: V2Type.SynAck, flags: v.flags, mac: b.subarray(start + 1, start + 17), token }, blockStart: start };
    default:
      return { block: { type: V2Type.Retry, flags: v.flags, token: v.tokenLength > 0 ? token : null }, blockStart: start };
  }
}
