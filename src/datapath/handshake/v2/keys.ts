// Protocol v2's long-lived keys and caches: host static keys (ours and the servers' we know),
// per-pair keys (one X25519 + HKDF per client token × server host key, then cached), and
// verified peer tokens by reference. Everything bounded; nothing here runs per packet except
// lookups.

import { createPublicKey, diffieHellman, hash as cryptoHash, type KeyObject } from 'node:crypto';
import { Lru, sessionKey, x25519PublicKey, type Digests, type VerifiedToken } from '../../../identity/index.js';
import { KEY_ID_LENGTH, TOKEN_REF_LENGTH } from './wire.js';
import type { HostStaticKey, KeyStats } from './types.js';
import type { PairKey, Proofs } from './proof.js';
import type { IssuedToken } from '../types.js';

/** HKDF info of the pair key (docs/protocol.md, "Keys"). */
export const PAIR_INFO = 'tessera/2 pair';

const units: number[] = [];
/**
 * Bytes as a string of 16-bit units (even lengths): a compact Map key, built flat in one call
 * (a string grown a character at a time is a rope every lookup must flatten first).
 */
export function unitsKey(b: Uint8Array, start = 0, end = b.length): string {
  units.length = 0;
  for (let i = start; i < end; i += 2) units.push((b[i]! << 8) | b[i + 1]!);
  return String.fromCharCode.apply(null, units);
}

/** Four bytes at b[p..p+4) as an int32 (big endian): ids and references as Map keys without a string. */
export function word32(b: Uint8Array, p: number): number {
  return (b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!;
}

/** a[i..i+n) equals b[j..j+n): no early exit (MACs, references). */
export function sameBytes(a: Uint8Array, i: number, b: Uint8Array, j: number, n: number): boolean {
  let d = 0;
  for (let k = 0; k < n; k++) d |= a[i + k]! ^ b[j + k]!;
  return d === 0;
}

/** A host static public key as a client knows it. */
export interface KnownHostKey {
  readonly raw: Uint8Array;
  /** First 4 bytes of SHA-256(raw): what a SYN names it by. */
  readonly id: Uint8Array;
  readonly idKey: string;
  /** The id as an int32 (word32). */
  readonly idWord: number;
  readonly key: KeyObject;
  /** The host it belongs to (directory entry, or the `iss` of the token that taught it). */
  readonly host: string;
}

export function keyIdOf(raw: Uint8Array): Uint8Array {
  return new Uint8Array(cryptoHash('sha256', raw, 'buffer').subarray(0, KEY_ID_LENGTH));
}

/** null when `raw` is no X25519 public key. */
export function knownHostKey(raw: Uint8Array, host: string): KnownHostKey | null {
  try {
    const copy = new Uint8Array(raw);
    const id = keyIdOf(copy);
    return { raw: copy, id, idKey: unitsKey(id), idWord: word32(id, 0), key: x25519PublicKey(copy), host };
  } catch {
    return null;
  }
}

/** One of our own static keys, ready for the server side. */
export interface OwnHostKey {
  readonly raw: Uint8Array;
  readonly idKey: string;
  /** First 4 bytes of SHA-256(raw) as an int32: compared with a SYN's keyId in place. */
  readonly idWord: number;
  readonly privateKey: KeyObject;
  readonly notAfter: number;
}

export function ownHostKeys(keys: readonly HostStaticKey[]): OwnHostKey[] {
  return keys.map((k) => ({
    raw: new Uint8Array(k.publicRaw),
    idKey: unitsKey(keyIdOf(k.publicRaw)),
    idWord: word32(keyIdOf(k.publicRaw), 0),
    privateKey: k.privateKey,
    notAfter: k.notAfter ?? Number.POSITIVE_INFINITY,
  }));
}

/**
 * PK = HKDF-SHA256(ikm = X25519(own private, peer public), salt = epkC ‖ hk, info = PAIR_INFO).
 * The same on both sides: the client holds epkC's private key, the server hk's. null when the
 * agreement fails (a low-order point).
 */
export function derivePairKey(own: KeyObject, peer: KeyObject, epkC: Uint8Array, hk: Uint8Array, digests?: Digests): Uint8Array | null {
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey: own, publicKey: peer });
  } catch {
    return null;
  }
  return sessionKey(shared, epkC, hk, PAIR_INFO, digests);
}

/** A peer token verified once, then accepted by reference; holds the pair keys derived for it. */
export interface PeerEntry {
  readonly token: VerifiedToken;
  /** First 16 bytes of the token's SHA-256: its reference on the wire. */
  readonly ref: Uint8Array;
  readonly epkRaw: Uint8Array;
  /** Server side: pair key (prepared) per own host key. */
  readonly pairKeys: Map<OwnHostKey, PairKey>;
}

/**
 * Verified peer tokens by reference, bounded (LRU). Keyed by the reference's first 4 bytes as
 * a number (no string per lookup), the whole 16 bytes compared on every hit: two references
 * that share the first 4 bytes only displace each other (the displaced one is asked for its
 * token in full, one retry), they are never taken for each other.
 */
export class PeerTokens {
  readonly #lru: Lru<number, PeerEntry>;
  hits = 0;
  misses = 0;

  constructor(entries: number) {
    this.#lru = new Lru(entries);
  }

  get size(): number {
    return this.#lru.size;
  }

  /** The entry whose reference is ref[at..at+16). */
  get(ref: Uint8Array, at = 0): PeerEntry | undefined {
    const e = this.#lru.get(word32(ref, at));
    if (e === undefined || !sameBytes(e.ref, 0, ref, at, TOKEN_REF_LENGTH)) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    return e;
  }

  /** The entry for a token just verified in full (the existing one when already known: its pair keys stay). */
  add(token: VerifiedToken): PeerEntry {
    const key = word32(token.tokenHash, 0);
    const known = this.#lru.get(key);
    if (known !== undefined && known.token === token) return known;
    const entry: PeerEntry = {
      token,
      ref: token.tokenHash.subarray(0, TOKEN_REF_LENGTH),
      epkRaw: new Uint8Array(Buffer.from(token.claims.epk, 'base64url')),
      pairKeys: new Map(),
    };
    this.#lru.set(key, entry);
    return entry;
  }

  delete(ref: Uint8Array): void {
    const key = word32(ref, 0);
    const e = this.#lru.peek(key);
    if (e !== undefined && sameBytes(e.ref, 0, ref, 0, TOKEN_REF_LENGTH)) this.#lru.delete(key);
  }

  clear(): void {
    this.#lru.clear();
  }
}

/** What a client keeps per issued token: its epk bytes and its pair keys per server host key. */
interface OwnTokenKeys {
  readonly epkRaw: Uint8Array;
  readonly pairs: WeakMap<KnownHostKey, PairKey>;
  /** The last pair asked for (most connections go to the host the previous one went to). */
  lastHk: KnownHostKey | null;
  lastPk: PairKey | null;
}

/** Client pair keys, cached per (issued token, host key) object pair; entries die with either. */
export class ClientPairKeys {
  readonly #byToken = new WeakMap<IssuedToken, OwnTokenKeys>();
  derivations = 0;
  constructor(
    private readonly proofs: Pick<Proofs, 'prepare'>,
    private readonly stats: KeyStats,
    private readonly digests?: Digests,
  ) {}

  get(token: IssuedToken, hk: KnownHostKey): PairKey | null {
    let own = this.#byToken.get(token);
    if (own === undefined) {
      const x = (createPublicKey(token.epkPrivate).export({ format: 'jwk' }) as { x: string }).x;
      own = { epkRaw: new Uint8Array(Buffer.from(x, 'base64url')), pairs: new WeakMap(), lastHk: null, lastPk: null };
      this.#byToken.set(token, own);
    }
    if (own.lastHk === hk) {
      this.stats.hits++;
      return own.lastPk;
    }
    let pk = own.pairs.get(hk);
    if (pk !== undefined) {
      this.stats.hits++;
    } else {
      const raw = derivePairKey(token.epkPrivate, hk.key, own.epkRaw, hk.raw, this.digests);
      if (raw === null) return null;
      this.derivations++;
      this.stats.misses++;
      pk = this.proofs.prepare(raw);
      own.pairs.set(hk, pk);
    }
    own.lastHk = hk;
    own.lastPk = pk;
    return pk;
  }
}
