// The UDP exchange's control packets, the whole UDP payload of a datagram on the flow's own
// 5-tuple (docs/protocol.md, "UDP"). Pure codec, strict: a packet decodes only when every
// length adds up exactly.
//
//   offset  Hello (client → server)    Reply (server → client)     Confirm (client → server)
//   0       magic 7e 55 75 01          magic                        magic
//   4       type 1                     type 2                       type 3
//   5       0 (reserved)               0                            0
//   6       token length (u16)         token length                 data length (u16)
//   8       nonceC (16)                nonceS (16)                  macC (16)
//   24      token C                    macS (16)                    data (the held datagram)
//   40                                 token S

export const MAGIC = Uint8Array.of(0x7e, 0x55, 0x75, 0x01);
export const HELLO = 1;
export const REPLY = 2;
export const CONFIRM = 3;
/** Tokens longer than this are refused unread (a CA token is ~600 bytes). */
export const MAX_TOKEN = 2048;
const HEAD = 8;
const N = 16;

export type Control =
  | { type: typeof HELLO; nonceC: Uint8Array; token: Uint8Array }
  | { type: typeof REPLY; nonceS: Uint8Array; macS: Uint8Array; token: Uint8Array }
  | { type: typeof CONFIRM; macC: Uint8Array; data: Uint8Array };

/** Whether a payload starts with the magic (a control packet, or data that looks like one). */
export function hasMagic(p: Uint8Array): boolean {
  return p.length >= 4 && p[0] === 0x7e && p[1] === 0x55 && p[2] === 0x75 && p[3] === 0x01;
}

/** A control packet (views into `p`, no copies), or why not. */
export function decodeControl(p: Uint8Array): Control | 'malformed' | 'too-large' {
  if (p.length < HEAD + N || !hasMagic(p) || p[5] !== 0) return 'malformed';
  const type = p[4];
  const len = (p[6]! << 8) | p[7]!;
  if (type === HELLO) {
    if (len > MAX_TOKEN) return 'too-large';
    if (len === 0 || p.length !== HEAD + N + len) return 'malformed';
    return { type, nonceC: p.subarray(HEAD, HEAD + N), token: p.subarray(HEAD + N) };
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
  return 'malformed';
}

/** Encode a control packet into a new array. */
export function encodeControl(c: Control): Uint8Array {
  const parts = c.type === HELLO ? [c.nonceC, c.token] : c.type === REPLY ? [c.nonceS, c.macS, c.token] : [c.macC, c.data];
  const len = c.type === CONFIRM ? c.data.length : c.token.length;
  const out = new Uint8Array(HEAD + parts.reduce((n, x) => n + x.length, 0));
  out.set(MAGIC, 0);
  out[4] = c.type;
  out[6] = len >> 8;
  out[7] = len & 0xff;
  let at = HEAD;
  for (const x of parts) {
    out.set(x, at);
    at += x.length;
  }
  return out;
}
