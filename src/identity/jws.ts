// Synchronous, allocation-light helpers to take compact JWS apart on the hot path.
// Every function returns null on bad input instead of throwing: verify() must never throw.

import { createPublicKey, type KeyObject } from 'node:crypto';
import { TesseraError, type ErrorCode } from '../errors.js';

/** base64url alphabet lookup: 1 for A-Z a-z 0-9 - _, else 0. */
const B64URL = new Uint8Array(256);
for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_') B64URL[ch.charCodeAt(0)] = 1;

const DOT = 0x2e;

export interface CompactParts {
  /** Index of the first and second '.' within the token bytes (relative to start). */
  readonly dot1: number;
  readonly dot2: number;
}

/**
 * Checks that bytes[start, start+length) is "b64url.b64url.b64url" with three non-empty
 * parts and nothing else, and returns where the dots are.
 */
export function splitCompactBytes(bytes: Uint8Array, start: number, length: number): CompactParts | null {
  let dot1 = -1;
  let dot2 = -1;
  const end = start + length;
  for (let i = start; i < end; i++) {
    const b = bytes[i] as number;
    if (B64URL[b] === 1) continue;
    if (b !== DOT) return null;
    if (dot1 < 0) dot1 = i - start;
    else if (dot2 < 0) dot2 = i - start;
    else return null;
  }
  if (dot1 <= 0 || dot2 <= dot1 + 1 || dot2 >= length - 1) return null;
  return { dot1, dot2 };
}

/** Same check for a string (certificates travel as strings inside the token header). */
export function splitCompactString(s: string): CompactParts | null {
  let dot1 = -1;
  let dot2 = -1;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 256 && B64URL[c] === 1) continue;
    if (c !== DOT) return null;
    if (dot1 < 0) dot1 = i;
    else if (dot2 < 0) dot2 = i;
    else return null;
  }
  if (dot1 <= 0 || dot2 <= dot1 + 1 || dot2 >= s.length - 1) return null;
  return { dot1, dot2 };
}

/**
 * Strict base64url decode: alphabet only, no padding, and canonical (the unused low bits of
 * the last character are zero), so one value has exactly one encoding.
 */
export function decodeB64url(s: string): Buffer | null {
  if (s.length % 4 === 1) return null;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 256 || B64URL[c] !== 1) return null;
  }
  const buf = Buffer.from(s, 'base64url');
  if (buf.toString('base64url') !== s) return null;
  return buf;
}

/** Parses base64url(JSON object); null for anything else. */
export function decodeJsonObject(b64: string): Record<string, unknown> | null {
  const buf = decodeB64url(b64);
  if (buf === null) return null;
  let v: unknown;
  try {
    v = JSON.parse(buf.toString('utf8'));
  } catch {
    return null;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return null;
  return v as Record<string, unknown>;
}

/** A seconds-since-epoch claim: a safe non-negative integer. */
export function isTime(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

export interface EcPublicJwk {
  readonly kty: 'EC';
  readonly crv: 'P-256';
  readonly x: string;
  readonly y: string;
}

/** True for {kty:'EC', crv:'P-256', x, y} with exactly those members and 32-byte coordinates. */
export function isEcPublicJwkShape(v: unknown): v is EcPublicJwk {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  if (Object.keys(o).length !== 4) return false;
  if (o.kty !== 'EC' || o.crv !== 'P-256' || typeof o.x !== 'string' || typeof o.y !== 'string') return false;
  return decodeB64url(o.x)?.length === 32 && decodeB64url(o.y)?.length === 32;
}

/** KeyObject for a P-256 public JWK, or null when the point is not on the curve. */
export function ecPublicKey(jwk: EcPublicJwk): KeyObject | null {
  try {
    return createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y }, format: 'jwk' });
  } catch {
    return null;
  }
}

/** KeyObject for a raw 32-byte X25519 public key. */
export function x25519PublicKeyFromRaw(raw: Uint8Array): KeyObject {
  return createPublicKey({
    key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64url') },
    format: 'jwk',
  });
}

const ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

/** Host ids and CA names: 1..64 of [A-Za-z0-9._:-], starting with a letter or digit. */
export function checkId(id: unknown, what: string, code: ErrorCode): string {
  if (typeof id !== 'string' || !ID.test(id)) {
    throw new TesseraError(code, `${what} must be 1..64 characters of [A-Za-z0-9._:-] starting with a letter or digit, got ${JSON.stringify(id)}`);
  }
  return id;
}

