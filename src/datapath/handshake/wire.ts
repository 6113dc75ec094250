// The Tessera handshake block: what travels in the TCP payload of a tagged SYN, SYN-ACK and
// first ACK. docs/protocol.md is the normative description; test/unit/datapath/wire.test.ts
// checks its test vectors.
//
// The block sits at the END of the TCP payload and ends with a 4-byte trailer, so a receiver
// finds it without knowing what precedes it (a first ACK may carry application data):
//
//   body ... | version u8 (=1) | type u8 | blockLength u16 (big endian, whole block incl. trailer)
//
//   SYN      body: nonceC[16] | tokenLength u16 | token
//   SYN-ACK  body: nonceS[16] | macS[16]  | tokenLength u16 | token
//   ACK      body: macC[16]   (the server kept the rest from the SYN and its SYN-ACK)

export const WIRE_VERSION = 1;
export const MARKER_KIND = 253;
export const MARKER_EXID = 0x7e55;
/** The TCP option that marks a tagged packet: RFC 6994 experimental option with our ExID. */
export const MARKER_OPTION = Uint8Array.of(MARKER_KIND, 4, MARKER_EXID >> 8, MARKER_EXID & 0xff);

export const enum BlockType {
  Syn = 1,
  SynAck = 2,
  Ack = 3,
}

export const NONCE_LENGTH = 16;
export const MAC_LENGTH = 16;
const TRAILER = 4;
const MAX_TOKEN = 2048;

export interface SynBlock {
  type: BlockType.Syn;
  nonceC: Uint8Array;
  token: Uint8Array;
}
export interface SynAckBlock {
  type: BlockType.SynAck;
  nonceS: Uint8Array;
  macS: Uint8Array;
  token: Uint8Array;
}
export interface AckBlock {
  type: BlockType.Ack;
  macC: Uint8Array;
}
export type Block = SynBlock | SynAckBlock | AckBlock;

/** Decoded block plus where it started in the payload (so the caller can strip it). */
export interface Decoded {
  block: Block;
  /** Bytes of the TCP payload that precede the block (kept when stripping). */
  keptPayload: number;
}

export type WireError = 'no-block' | 'bad-version' | 'bad-block';

/** Bytes before the token (including its length field), or of the whole body for ACK. */
function fixedLength(type: BlockType): number {
  switch (type) {
    case BlockType.Syn:
      return NONCE_LENGTH + 2;
    case BlockType.SynAck:
      return NONCE_LENGTH + MAC_LENGTH + 2;
    case BlockType.Ack:
      return MAC_LENGTH;
    default:
      return -1;
  }
}

/** Length of a whole block; `tokenLength` is ignored for ACK, which carries no token. */
export function blockLength(type: BlockType, tokenLength: number): number {
  return fixedLength(type) + (type === BlockType.Ack ? 0 : tokenLength) + TRAILER;
}

/** Encode a block into `out` at offset 0; returns its length. `out` must be large enough. */
export function encodeBlock(block: Block, out: Uint8Array): number {
  let p = 0;
  const put = (b: Uint8Array): void => {
    out.set(b, p);
    p += b.length;
  };
  switch (block.type) {
    case BlockType.Syn:
      put(block.nonceC);
      break;
    case BlockType.SynAck:
      put(block.nonceS);
      put(block.macS);
      break;
    case BlockType.Ack:
      put(block.macC);
      break;
  }
  if (block.type !== BlockType.Ack) {
    out[p++] = block.token.length >> 8;
    out[p++] = block.token.length & 0xff;
    put(block.token);
  }
  const total = p + TRAILER;
  out[p++] = WIRE_VERSION;
  out[p++] = block.type;
  out[p++] = total >> 8;
  out[p++] = total & 0xff;
  return total;
}

/**
 * Decode the block at the end of `payload` (a view of the TCP payload). Returns a WireError
 * for anything malformed; never throws. The returned arrays are views into `payload`.
 */
export function decodeBlock(payload: Uint8Array): Decoded | WireError {
  const n = payload.length;
  if (n < TRAILER) return 'no-block';
  const version = payload[n - 4]!;
  const type = payload[n - 3]! as BlockType;
  const total = (payload[n - 2]! << 8) | payload[n - 1]!;
  if (version !== WIRE_VERSION) return 'bad-version';
  const fixed = fixedLength(type);
  if (fixed < 0 || total > n || total < fixed + TRAILER) return 'bad-block';
  const start = n - total;
  let p = start;
  const take = (len: number): Uint8Array => {
    const v = payload.subarray(p, p + len);
    p += len;
    return v;
  };
  let block: Block;
  if (type === BlockType.Ack) {
    if (total !== fixed + TRAILER) return 'bad-block';
    return { block: { type, macC: take(MAC_LENGTH) }, keptPayload: start };
  }
  const tokenAt = start + fixed - 2;
  const tokenLength = (payload[tokenAt]! << 8) | payload[tokenAt + 1]!;
  if (tokenLength === 0 || tokenLength > MAX_TOKEN || fixed + tokenLength + TRAILER !== total) return 'bad-block';
  switch (type) {
    case BlockType.Syn: {
      const nonceC = take(NONCE_LENGTH);
      p += 2;
      block = { type, nonceC, token: take(tokenLength) };
      break;
    }
    case BlockType.SynAck: {
      const nonceS = take(NONCE_LENGTH);
      const macS = take(MAC_LENGTH);
      p += 2;
      block = { type, nonceS, macS, token: take(tokenLength) };
      break;
    }
    default:
      return 'bad-block';
  }
  return { block, keptPayload: start };
}
