// Per-connection crypto for the handshake: stateless nonces, X25519 agreement, HKDF session
// keys and truncated HMACs. All synchronous, because this runs per packet in the datapath
// workers. HMAC comes in through `Digests`: node:crypto by default, the native
// addon's in the workers (node:crypto's createHmac costs ~3 µs per call in object setup;
// bench/crypto.bench.ts), so that this module stays pure.

import {
  createHmac,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { TesseraError } from '../errors.js';
import { x25519PublicKeyFromRaw } from './jws.js';

export const NONCE_BYTES = 16;
export const MAC_BYTES = 16;
export const SESSION_KEY_BYTES = 32;

/** HMAC-SHA256 writing 32 bytes into `out` (which must hold at least 32). */
export interface Digests {
  hmacSha256(key: Uint8Array, data: Uint8Array, out: Uint8Array): void;
  /**
   * Optional (the native addon has them): a key prepared once into `hmacStateBytes` bytes of
   * state (the SHA-256 states after its two pad blocks), then HMACs under it at half the
   * compressions. Use through preparedMac(), which falls back to hmacSha256.
   */
  readonly hmacStateBytes?: number;
  hmacPrepare?(key: Uint8Array, state: Uint8Array): void;
  hmacPrepared?(state: Uint8Array, data: Uint8Array, out: Uint8Array): void;
}

/** HMAC-SHA256 under one fixed key, prepared once when the digests can (no allocation per call). */
export interface PreparedMac {
  /** out[0..32) = HMAC-SHA256(key, data). */
  mac(data: Uint8Array, out: Uint8Array): void;
}

/**
 * One class for every prepared key, its method on the prototype: a closure per key (the
 * former `{ mac: (data, out) => ... }`) is a different call target for each key, so V8's
 * code for a pass that calls pk.mac() was thrown away ("wrong call target") whenever a new
 * pair key (a new peer, PU or token) first came by.
 */
class PreparedKey implements PreparedMac {
  constructor(
    private readonly digests: Digests,
    /** The raw key (a copy), used when the digests cannot prepare one. */
    private readonly key: Uint8Array,
    /** The prepared state, or null. */
    private readonly state: Uint8Array | null,
  ) {}
  mac(data: Uint8Array, out: Uint8Array): void {
    if (this.state !== null) this.digests.hmacPrepared!(this.state, data, out);
    else this.digests.hmacSha256(this.key, data, out);
  }
}

const NO_KEY = new Uint8Array(0);

export function preparedMac(key: Uint8Array, digests: Digests = NODE_DIGESTS): PreparedMac {
  const prepare = digests.hmacPrepare;
  if (prepare && digests.hmacPrepared && digests.hmacStateBytes) {
    const state = new Uint8Array(digests.hmacStateBytes);
    prepare.call(digests, key, state);
    return new PreparedKey(digests, NO_KEY, state);
  }
  return new PreparedKey(digests, new Uint8Array(key), null);
}

/** The reference implementation: node:crypto. */
export const NODE_DIGESTS: Digests = Object.freeze({
  hmacSha256(key: Uint8Array, data: Uint8Array, out: Uint8Array): void {
    out.set(createHmac('sha256', key).update(data).digest());
  },
});

// Scratch for digests (a worker is single-threaded; every function copies what it returns).
const digestOut = new Uint8Array(32);
const prkOut = new Uint8Array(32);
let macInput = new Uint8Array(256);

function concatInto(first: Uint8Array | null, parts: readonly Uint8Array[], label = -1): Uint8Array {
  let n = label >= 0 ? 1 : 0;
  if (first) n += first.byteLength;
  for (const p of parts) n += p.byteLength;
  if (n > macInput.length) macInput = new Uint8Array(Math.max(n, macInput.length * 2));
  let at = 0;
  if (label >= 0) macInput[at++] = label;
  if (first) {
    macInput.set(first, at);
    at += first.byteLength;
  }
  for (const p of parts) {
    macInput.set(p, at);
    at += p.byteLength;
  }
  return macInput.subarray(0, n);
}

export interface NonceSource {
  /**
   * HMAC-SHA256(hostSecret, label ‖ parts[0] ‖ parts[1] ‖ ...) truncated to 16 bytes, where
   * label is one byte (0..255). Parts are concatenated without lengths: give each label a
   * fixed layout (fixed-size fields, or a family byte first) so two inputs never collide.
   */
  nonce(label: number, parts: readonly Uint8Array[]): Uint8Array;
}

/** Stateless, SYN-cookie style nonces keyed by a per-host secret (>= 32 bytes). */
export function createNonceSource(hostSecret: Uint8Array, digests: Digests = NODE_DIGESTS): NonceSource {
  if (!(hostSecret instanceof Uint8Array) || hostSecret.byteLength < 32) {
    throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', 'the nonce host secret must be at least 32 bytes: create one with createSecret()');
  }
  const key = new Uint8Array(hostSecret); // our own copy: the caller's array may change
  return Object.freeze({
    nonce(label: number, parts: readonly Uint8Array[]): Uint8Array {
      if (!Number.isInteger(label) || label < 0 || label > 255) {
        throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `nonce label must be an integer 0..255, got ${String(label)}`);
      }
      digests.hmacSha256(key, concatInto(null, parts, label), digestOut);
      return digestOut.slice(0, NONCE_BYTES);
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

/**
 * One per datapath worker: shared secrets repeat for every connection between two PUs.
 * Cached by key object identity (the verifier hands out the same KeyObject for a cached
 * token, and a PU keeps its private key until rotation), in weak maps, so an entry lives
 * exactly as long as both keys and no lookup builds a string. The token cache bounds the
 * peer keys, the PU table the own keys; `cacheSize` bounds the peers cached per own key.
 */
export function createKeyAgreement(options: { cacheSize?: number } = {}): KeyAgreement {
  const perOwnKey = options.cacheSize ?? 1024;
  const cache = new WeakMap<KeyObject, { peers: WeakMap<KeyObject, Uint8Array>; count: number }>();
  let hits = 0;
  let misses = 0;
  let size = 0;
  return Object.freeze({
    sharedSecret(privateKey: KeyObject, peerPublicKey: KeyObject): Uint8Array {
      let own = cache.get(privateKey);
      const cached = own?.peers.get(peerPublicKey);
      if (cached !== undefined) {
        hits++;
        return cached;
      }
      misses++;
      keyId(privateKey); // type checks (X25519) with a clear error, once per key object
      keyId(peerPublicKey);
      let secret: Buffer;
      try {
        secret = diffieHellman({ privateKey, publicKey: peerPublicKey });
      } catch (err) {
        throw new TesseraError('TESSERA_ERR_TOKEN', 'X25519 failed: the peer ephemeral key is a low-order point or not an X25519 key', { cause: err });
      }
      if (!own || own.count >= perOwnKey) {
        // New own key, or too many peers for this one: start a fresh map (old entries are collected).
        if (own) size -= own.count;
        own = { peers: new WeakMap(), count: 0 };
        cache.set(privateKey, own);
      }
      own.peers.set(peerPublicKey, secret);
      own.count++;
      size++;
      return secret;
    },
    stats(): KeyAgreementStats {
      return { hits, misses, size };
    },
  });
}

const HKDF_BLOCK_1 = new Uint8Array([1]);
const utf8 = new TextEncoder();

/**
 * K = HKDF-SHA256(ikm = shared, salt = nonceC ‖ nonceS, info) → 32 bytes (RFC 5869).
 * With L = 32 the expand step is one HMAC block, so this is exactly
 * HMAC(HMAC(salt, ikm), info ‖ 0x01): computed as two HMACs because crypto.hkdfSync
 * costs about twice as much per call in Node 20 (bench/crypto.bench.ts); a unit test checks
 * both agree.
 */
export function sessionKey(
  shared: Uint8Array,
  nonceC: Uint8Array,
  nonceS: Uint8Array,
  info: Uint8Array | string,
  digests: Digests = NODE_DIGESTS,
): Uint8Array {
  const salt = concatInto(nonceC, [nonceS]).slice();
  digests.hmacSha256(salt, shared, prkOut);
  digests.hmacSha256(prkOut, concatInto(typeof info === 'string' ? utf8.encode(info) : info, [HKDF_BLOCK_1]), digestOut);
  return digestOut.slice();
}

/** HMAC-SHA256(key, parts[0] ‖ parts[1] ‖ ...) truncated to 16 bytes. */
export function mac(key: Uint8Array, parts: readonly Uint8Array[], digests: Digests = NODE_DIGESTS): Uint8Array {
  digests.hmacSha256(key, concatInto(null, parts), digestOut);
  return digestOut.slice(0, MAC_BYTES);
}

/** Constant-time comparison (for equal lengths); different lengths are simply unequal. */
export function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}
