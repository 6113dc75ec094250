// Per-connection crypto for the handshake: stateless nonces, X25519 agreement, HKDF session
// keys and truncated HMACs. All synchronous node:crypto with KeyObjects created once, because
// this runs per packet in the datapath workers.

import {
  createHmac,
  createPublicKey,
  createSecretKey,
  diffieHellman,
  generateKeyPairSync,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { TesseraError } from '../errors.js';
import { x25519PublicKeyFromRaw } from './jws.js';
import { Lru } from './lru.js';

export const NONCE_BYTES = 16;
export const MAC_BYTES = 16;
export const SESSION_KEY_BYTES = 32;

export interface NonceSource {
  /**
   * HMAC-SHA256(hostSecret, label ‖ parts[0] ‖ parts[1] ‖ ...) truncated to 16 bytes, where
   * label is one byte (0..255). Parts are concatenated without lengths: give each label a
   * fixed layout (fixed-size fields, or a family byte first) so two inputs never collide.
   */
  nonce(label: number, parts: readonly Uint8Array[]): Uint8Array;
}

/** Stateless, SYN-cookie style nonces keyed by a per-host secret (>= 32 bytes). */
export function createNonceSource(hostSecret: Uint8Array): NonceSource {
  if (!(hostSecret instanceof Uint8Array) || hostSecret.byteLength < 32) {
    throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', 'the nonce host secret must be at least 32 bytes: create one with createSecret()');
  }
  const key = createSecretKey(hostSecret);
  // One input buffer reused across calls (a worker is single-threaded): each call
  // allocates only the digest, of which the caller gets a 16-byte view.
  let input = Buffer.allocUnsafe(256);
  return Object.freeze({
    nonce(label: number, parts: readonly Uint8Array[]): Uint8Array {
      if (!Number.isInteger(label) || label < 0 || label > 255) {
        throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `nonce label must be an integer 0..255, got ${String(label)}`);
      }
      let n = 1;
      for (const p of parts) n += p.byteLength;
      if (n > input.length) input = Buffer.allocUnsafe(Math.max(n, input.length * 2));
      input[0] = label;
      let at = 1;
      for (const p of parts) {
        input.set(p, at);
        at += p.byteLength;
      }
      return createHmac('sha256', key).update(input.subarray(0, n)).digest().subarray(0, NONCE_BYTES);
    },
  });
}

export interface EphemeralKey {
  /** Raw 32-byte X25519 public key, as carried (base64url) in a token's epk claim. */
  readonly publicRaw: Uint8Array;
  readonly publicKey: KeyObject;
  readonly privateKey: KeyObject;
}

// Identity of a KeyObject for cache keys: the base64url of its public half, computed once.
// WeakMaps let keys be collected when the token or PU that held them goes away.
const keyIds = new WeakMap<KeyObject, string>();

function keyId(key: KeyObject): string {
  let id = keyIds.get(key);
  if (id === undefined) {
    const pub = key.type === 'private' ? createPublicKey(key) : key;
    if (pub.asymmetricKeyType !== 'x25519') {
      throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `expected an X25519 key, got ${String(pub.asymmetricKeyType)}`);
    }
    id = (pub.export({ format: 'jwk' }) as { x: string }).x;
    keyIds.set(key, id);
  }
  return id;
}

/** A fresh X25519 key pair, rotated with the PU's token (minutes). */
export function createEphemeralKey(): EphemeralKey {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const x = (publicKey.export({ format: 'jwk' }) as { x: string }).x;
  keyIds.set(publicKey, x);
  keyIds.set(privateKey, x);
  return Object.freeze({ publicRaw: new Uint8Array(Buffer.from(x, 'base64url')), publicKey, privateKey });
}

/** KeyObject for a raw 32-byte X25519 public key (throws TESSERA_ERR_INVALID_ARGUMENT). */
export function x25519PublicKey(raw: Uint8Array): KeyObject {
  if (!(raw instanceof Uint8Array) || raw.byteLength !== 32) {
    throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', 'an X25519 public key is 32 bytes');
  }
  const key = x25519PublicKeyFromRaw(raw);
  keyIds.set(key, Buffer.from(raw.buffer, raw.byteOffset, 32).toString('base64url'));
  return key;
}

export interface KeyAgreementStats {
  readonly hits: number;
  readonly misses: number;
  readonly size: number;
}

export interface KeyAgreement {
  /**
   * X25519(privateKey, peerPublicKey), cached per (own key, peer key) pair. The returned
   * bytes are shared with the cache: do not modify. Throws TESSERA_ERR_TOKEN when the peer
   * key is a low-order point (the result would be all zeros).
   */
  sharedSecret(privateKey: KeyObject, peerPublicKey: KeyObject): Uint8Array;
  stats(): KeyAgreementStats;
}

/** One per datapath worker: shared secrets repeat for every connection between two PUs. */
export function createKeyAgreement(options: { cacheSize?: number } = {}): KeyAgreement {
  const cache = new Lru<string, Uint8Array>(options.cacheSize ?? 1024);
  let hits = 0;
  let misses = 0;
  return Object.freeze({
    sharedSecret(privateKey: KeyObject, peerPublicKey: KeyObject): Uint8Array {
      const k = `${keyId(privateKey)}.${keyId(peerPublicKey)}`;
      const cached = cache.get(k);
      if (cached !== undefined) {
        hits++;
        return cached;
      }
      misses++;
      let secret: Buffer;
      try {
        secret = diffieHellman({ privateKey, publicKey: peerPublicKey });
      } catch (err) {
        throw new TesseraError('TESSERA_ERR_TOKEN', 'X25519 failed: the peer ephemeral key is a low-order point or not an X25519 key', { cause: err });
      }
      cache.set(k, secret);
      return secret;
    },
    stats(): KeyAgreementStats {
      return { hits, misses, size: cache.size };
    },
  });
}

const HKDF_BLOCK_1 = new Uint8Array([1]);

/**
 * K = HKDF-SHA256(ikm = shared, salt = nonceC ‖ nonceS, info) → 32 bytes (RFC 5869).
 * With L = 32 the expand step is one HMAC block, so this is exactly
 * HMAC(HMAC(salt, ikm), info ‖ 0x01): computed with two createHmac calls because
 * crypto.hkdfSync costs about twice as much per call in Node 20 (bench/crypto.bench.ts);
 * a unit test checks both agree.
 */
export function sessionKey(shared: Uint8Array, nonceC: Uint8Array, nonceS: Uint8Array, info: Uint8Array | string): Uint8Array {
  const salt = Buffer.allocUnsafe(nonceC.byteLength + nonceS.byteLength);
  salt.set(nonceC, 0);
  salt.set(nonceS, nonceC.byteLength);
  const prk = createHmac('sha256', salt).update(shared).digest();
  return createHmac('sha256', prk).update(info).update(HKDF_BLOCK_1).digest();
}

/** HMAC-SHA256(key, parts[0] ‖ parts[1] ‖ ...) truncated to 16 bytes. */
export function mac(key: Uint8Array, parts: readonly Uint8Array[]): Uint8Array {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest().subarray(0, MAC_BYTES);
}

/** Constant-time comparison (for equal lengths); different lengths are simply unequal. */
export function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}
