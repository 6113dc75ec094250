// IPv4/IPv6 addresses and CIDR blocks for external-network rules. Hand-written because the
// policy module is pure (node:net is an I/O module here) and because the datapath asks per
// untagged handshake: with the address bytes of the packet (wordsFromBytes) or, from the
// CLI and revoke, with text that parseAddressInto() parses into a reused word buffer.

import { formatAddress } from '../flow.js';

/** A network: family, prefix length and the masked address as 1 (v4) or 4 (v6) 32-bit words. */
export interface Cidr {
  readonly family: 4 | 6;
  readonly prefix: number;
  readonly words: Uint32Array;
  readonly masks: Uint32Array;
  /** Canonical text, e.g. "10.0.0.0/8", "2001:db8::/32". */
  readonly text: string;
  /** The text had host bits set (10.1.2.3/8): it was masked to `text`. */
  readonly hostBits: boolean;
}

function parseV4Into(s: string, start: number, end: number, out: Uint32Array, at: number): boolean {
  let word = 0;
  let parts = 0;
  let i = start;
  while (parts < 4) {
    const partStart = i;
    let n = 0;
    while (i < end) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      n = n * 10 + (c - 48);
      i++;
      if (i - partStart > 3) return false;
    }
    const len = i - partStart;
    // Leading zeros are refused: some tools read "010" as octal, so its meaning is unclear.
    if (len === 0 || n > 255 || (len > 1 && s.charCodeAt(partStart) === 48)) return false;
    word = word * 256 + n;
    parts++;
    if (parts < 4) {
      if (i >= end || s.charCodeAt(i) !== 46 /* . */) return false;
      i++;
    }
  }
  if (i !== end) return false;
  out[at] = word >>> 0;
  return true;
}

function hexGroup(s: string, start: number, end: number): number {
  const len = end - start;
  if (len < 1 || len > 4) return -1;
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    let d: number;
    if (c >= 48 && c <= 57) d = c - 48;
    else if (c >= 97 && c <= 102) d = c - 87;
    else if (c >= 65 && c <= 70) d = c - 55;
    else return -1;
    n = n * 16 + d;
  }
  return n;
}

const groups = new Int32Array(10);

/** Parses textual IPv6 (RFC 4291 forms, optional dotted IPv4 tail, no zone) into 4 words. */
function parseV6Into(s: string, start: number, end: number, out: Uint32Array, at: number): boolean {
  let n = 0;
  let gap = -1;
  let i = start;
  if (end - start < 2) return false;
  if (s.charCodeAt(i) === 58 /* : */) {
    if (s.charCodeAt(i + 1) !== 58) return false;
    gap = 0;
    i += 2;
    if (i === end) {
      out.fill(0, at, at + 4);
      return true;
    }
  }
  while (i < end) {
    let j = i;
    while (j < end) {
      const c = s.charCodeAt(j);
      if (c === 58 || c === 46) break;
      j++;
    }
    if (j < end && s.charCodeAt(j) === 46) {
      // Dotted IPv4 tail: must be the last part and fill two groups.
      if (n > 6) return false;
      const tmp = scratchV4;
      if (!parseV4Into(s, i, end, tmp, 0)) return false;
      groups[n++] = tmp[0]! >>> 16;
      groups[n++] = tmp[0]! & 0xffff;
      i = end;
      break;
    }
    const g = hexGroup(s, i, j);
    if (g < 0 || n >= 8) return false;
    groups[n++] = g;
    if (j === end) {
      i = end;
      break;
    }
    // j is ':'
    if (j + 1 < end && s.charCodeAt(j + 1) === 58) {
      if (gap >= 0) return false;
      gap = n;
      i = j + 2;
      if (i === end) break;
    } else {
      i = j + 1;
      if (i === end) return false; // trailing single ':'
    }
  }
  if (gap < 0) {
    if (n !== 8) return false;
  } else if (n > 7) return false;
  const zeros = gap < 0 ? 0 : 8 - n;
  for (let w = 0; w < 4; w++) out[at + w] = 0;
  let g = 0;
  for (let k = 0; k < 8; k++) {
    let v: number;
    if (gap >= 0 && k >= gap && k < gap + zeros) v = 0;
    else v = groups[g++]!;
    const w = k >> 1;
    out[at + w] = (k & 1 ? (out[at + w]! | v) : v << 16) >>> 0;
  }
  return true;
}

const scratchV4 = new Uint32Array(1);

/**
 * Parses an address into `out` (4 words; v4 uses out[0]). Returns 4, 6, or 0 when the text
 * is not an address. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) returns 6; see v4Mapped().
 */
export function parseAddressInto(s: string, out: Uint32Array): 0 | 4 | 6 {
  if (s.length === 0 || s.length > 45) return 0;
  if (s.indexOf(':') >= 0) return parseV6Into(s, 0, s.length, out, 0) ? 6 : 0;
  return parseV4Into(s, 0, s.length, out, 0) ? 4 : 0;
}

/** True when the v6 words are ::ffff:0:0/96 (an IPv4 address carried in IPv6). */
export function v4Mapped(words: Uint32Array): boolean {
  return words[0] === 0 && words[1] === 0 && words[2] === 0xffff;
}

function maskWord(prefix: number, w: number): number {
  const bits = Math.max(0, Math.min(32, prefix - w * 32));
  return bits === 0 ? 0 : bits === 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
}

function v4Text(w: number): string {
  return `${w >>> 24}.${(w >>> 16) & 0xff}.${(w >>> 8) & 0xff}.${w & 0xff}`;
}

/** RFC 5952 text of v6 words, by the one formatter (src/flow.ts). */
function v6Text(words: Uint32Array): string {
  const bytes = new Uint8Array(16);
  for (let w = 0; w < 4; w++) {
    bytes[w * 4] = words[w]! >>> 24;
    bytes[w * 4 + 1] = (words[w]! >>> 16) & 0xff;
    bytes[w * 4 + 2] = (words[w]! >>> 8) & 0xff;
    bytes[w * 4 + 3] = words[w]! & 0xff;
  }
  return formatAddress(bytes, 0, 16);
}

/**
 * An address given as its 4 or 16 network-order bytes (a view of a packet header) into
 * `out`, like parseAddressInto: 4, 6, or 0 for any other length. No text is made.
 */
export function wordsFromBytes(b: Uint8Array, out: Uint32Array): 0 | 4 | 6 {
  if (b.length !== 4 && b.length !== 16) return 0;
  for (let i = 0; i < b.length; i += 4) out[i >> 2] = ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
  return b.length === 4 ? 4 : 6;
}

/** Parses "a.b.c.d[/n]" or "v6[/n]"; a bare address is a /32 or /128. Returns a reason on error. */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const words = new Uint32Array(4);
  const family = parseAddressInto(addr, words);
  if (family === 0) {
    if (addr.includes('%')) return `"${text}" has a zone index (%...): zones are not allowed in networks`;
    return `"${text}" is not an IPv4 or IPv6 network (write e.g. 10.0.0.0/8 or 2001:db8::/32)`;
  }
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > max) {
      return `"${text}" has prefix length "${p}": it must be a number 0..${max}`;
    }
    prefix = Number(p);
  }
  const n = family === 4 ? 1 : 4;
  const w = words.slice(0, n);
  const masks = new Uint32Array(n);
  let hostBits = false;
  for (let i = 0; i < n; i++) {
    masks[i] = maskWord(prefix, i);
    const masked = (w[i]! & masks[i]!) >>> 0;
    if (masked !== w[i]) hostBits = true;
    w[i] = masked;
  }
  const base = family === 4 ? v4Text(w[0]!) : v6Text(w);
  return Object.freeze({ family, prefix, words: w, masks, text: `${base}/${prefix}`, hostBits });
}

/** Does `c` hold the address in `addr` (words of the given family)? */
export function cidrHas(c: Cidr, family: 4 | 6, addr: Uint32Array): boolean {
  if (c.family !== family) return false;
  const n = c.words.length;
  for (let i = 0; i < n; i++) if (((addr[i]! & c.masks[i]!) >>> 0) !== c.words[i]) return false;
  return true;
}

/** a ⊇ b */
export function cidrContains(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.prefix <= b.prefix && cidrHas(a, b.family, b.words);
}

/** CIDR blocks either nest or are disjoint. */
export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  return cidrContains(a, b) || cidrContains(b, a);
}
