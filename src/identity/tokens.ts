// Tokens: "PU `sub` with labels `lbl`, on host `iss`, ephemeral key `epk`" as a compact JWS.
// Issued with jose once per rotation (async, control plane; here); verified synchronously with
// node:crypto on the packet path (token-verifier.ts), where a verified token is cached by the
// SHA-256 of its bytes so the common case is one hash and one Map lookup (MEASURED.md: jose
// verify is ~6 k/s, far too slow per packet).

import { SignJWT, importJWK } from 'jose';
import type { KeyObject } from 'node:crypto';
import { TesseraError } from '../errors.js';
import { inspectCertificate } from './certificate.js';
import type { EcPublicJwk } from './jws.js';
import { MIN_SECRET_BYTES, type HostIdentity } from './keys.js';
import { canonicalLabels, type CanonicalLabels, type Label } from './labels.js';
import type { HostTrust } from './revocation.js';

/** Tokens longer than this are refused by the issuer and reported malformed by verifiers. */
export const MAX_TOKEN_BYTES = 1200;
export const TOKEN_VERSION = 1;

export interface TokenClaims {
  /** Host id of the issuer. */
  readonly iss: string;
  /** PU id. */
  readonly sub: string;
  /** Canonical labels (sorted "k=v"), system labels included. */
  readonly lbl: CanonicalLabels;
  /** base64url of the PU's raw 32-byte X25519 public key. */
  readonly epk: string;
  readonly iat: number;
  readonly exp: number;
  readonly v: 1;
  /**
   * base64url of the issuing host's raw 32-byte X25519 static handshake key (protocol v2):
   * a client that verified this token learns the key proofs to this host are made under.
   * Optional: tokens without it (older issuers) verify as before.
   */
  readonly hk?: string;
}

export interface TokenPu {
  readonly id: string;
  readonly labels: Iterable<string | Label>;
  /** Raw X25519 public key, 32 bytes. */
  readonly epkPublicRaw: Uint8Array;
  /** The host's raw 32-byte X25519 static handshake key, signed into the token as `hk` (protocol v2). */
  readonly hostKeyRaw?: Uint8Array;
}

export interface TokenIssuer {
  readonly mode: 'psk' | 'ca';
  readonly hostId: string;
  /** Signs a token valid from `now` (seconds since the epoch) for `ttlSeconds`. */
  issue(pu: TokenPu, now: number, ttlSeconds: number): Promise<string>;
}

export type VerifyFailureReason = 'malformed' | 'bad-signature' | 'untrusted-issuer' | 'expired' | 'not-yet-valid' | 'revoked' | 'label-not-allowed' | 'stale-trust';

export interface VerifiedToken {
  readonly ok: true;
  readonly claims: TokenClaims;
  /** X25519 public key from `epk`, created once per token. */
  readonly epkKey: KeyObject;
  /** SHA-256 of the token bytes. Shared with the cache: do not modify. */
  readonly tokenHash: Uint8Array;
  /** The `hk` claim decoded (32 bytes), or null when the token has none. Shared: do not modify. */
  readonly hostKey?: Uint8Array | null;
  /** The earlier of the token's `exp` and (CA mode) its host certificate's `exp`, seconds: for callers that reuse a verified token. */
  readonly validUntil?: number;
}

export interface VerifyFailure {
  readonly ok: false;
  readonly reason: VerifyFailureReason;
}

export type VerifyResult = VerifiedToken | VerifyFailure;

export interface VerifyStats {
  readonly hits: number;
  readonly misses: number;
  readonly cacheSize: number;
  readonly certHits: number;
  readonly certMisses: number;
  readonly certCacheSize: number;
  /** Refusals answered from the negative cache (no signature verified). */
  readonly negativeHits: number;
  readonly negativeCacheSize: number;
  readonly rejected: Readonly<Record<VerifyFailureReason, number>>;
}

export interface TokenVerifier {
  readonly mode: 'psk' | 'ca';
  /** Synchronous; never throws. `offset`/`length` select the token inside a larger buffer. */
  verify(tokenBytes: Uint8Array, offset?: number, length?: number): VerifyResult;
  /**
   * The answer of the caches alone, positive or negative (time still checked), or null when
   * only a signature verification could tell. What a caller asks before spending a
   * verification from a budget.
   */
  cached(tokenBytes: Uint8Array, offset?: number, length?: number): VerifyResult | null;
  verifyStats(): VerifyStats;
  /**
   * Replace the revocations and label bindings (revocation.ts). Applies at once to every
   * token, cached ones included: the next hit of a token verified earlier is refused.
   */
  setHostTrust(trust: HostTrust): void;
}

export type TokenVerifierOptions = {
  /** Tolerance for iat/exp of tokens and certificates, seconds. */
  readonly clockSkewSeconds?: number;
  /** Verified tokens kept (certificates: a quarter of it, at least 64). */
  readonly cacheSize?: number;
  /** Tokens whose verification failed, kept to refuse a repeat at the cost of a lookup. */
  readonly negativeCacheSize?: number;
  /** Clock in seconds since the epoch (tests inject one). */
  readonly now?: () => number;
  /** Revoked hosts/certificates and label bindings (default: none). */
  readonly hostTrust?: HostTrust;
} & (
  | {
      readonly mode: 'psk';
      /** The current secret; during a rotation, the new and the old one. */
      readonly psk: Uint8Array | readonly Uint8Array[];
    }
  | {
      readonly mode: 'ca';
      /** The trusted CA public key; during a CA rotation, the new and the old one. */
      readonly caPublicJwk: EcPublicJwk | readonly EcPublicJwk[];
    }
);

const PU_ID = /^[\x21-\x7e]{1,128}$/;

function tokenError(message: string, cause?: unknown): TesseraError {
  return new TesseraError('TESSERA_ERR_TOKEN', message, cause === undefined ? undefined : { cause });
}

function configError(message: string): TesseraError {
  return new TesseraError('TESSERA_ERR_INVALID_CONFIG', message);
}

// ---- issuing --------------------------------------------------------------------------

/** Signs tokens for the PUs of one host (jose; async, off the packet path). */
export function createTokenIssuer(identity: HostIdentity): TokenIssuer {
  let keyPromise: Promise<Awaited<ReturnType<typeof importJWK>> | Uint8Array>;
  let header: { alg: 'HS256' } | { alg: 'ES256'; hc: string };
  if (identity.mode === 'psk') {
    if (!(identity.psk instanceof Uint8Array) || identity.psk.byteLength < MIN_SECRET_BYTES) {
      throw configError(`the PSK must be at least ${MIN_SECRET_BYTES} bytes: create one with createSecret()`);
    }
    keyPromise = Promise.resolve(new Uint8Array(identity.psk));
    header = { alg: 'HS256' };
  } else if (identity.mode === 'ca') {
    const cert = inspectCertificate(identity.certificate);
    if (cert.sub !== identity.hostId) {
      throw new TesseraError('TESSERA_ERR_KEY_FILE', `the host certificate is for "${cert.sub}", but this host is "${identity.hostId}"`);
    }
    if (cert.hpk.x !== identity.publicJwk.x || cert.hpk.y !== identity.publicJwk.y) {
      throw new TesseraError('TESSERA_ERR_KEY_FILE', 'the host certificate was issued for a different key than this host identity holds');
    }
    keyPromise = importJWK({ ...identity.privateJwk }, 'ES256');
    // Unhandled rejections would crash the daemon before issue() is awaited.
    keyPromise.catch(() => undefined);
    header = { alg: 'ES256', hc: identity.certificate };
  } else {
    throw configError(`unknown trust mode ${JSON.stringify((identity as { mode: unknown }).mode)}: use "psk" or "ca"`);
  }
  const hostId = identity.hostId;

  return Object.freeze({
    mode: identity.mode,
    hostId,
    async issue(pu: TokenPu, now: number, ttlSeconds: number): Promise<string> {
      if (typeof pu.id !== 'string' || !PU_ID.test(pu.id)) throw tokenError(`PU id must be 1..128 printable ASCII characters, got ${JSON.stringify(pu.id)}`);
      if (!(pu.epkPublicRaw instanceof Uint8Array) || pu.epkPublicRaw.byteLength !== 32) throw tokenError('epkPublicRaw must be a 32-byte X25519 public key');
      if (!(typeof now === 'number' && Number.isFinite(now) && now >= 0)) throw tokenError(`now must be seconds since the epoch, got ${String(now)}`);
      if (!(Number.isInteger(ttlSeconds) && ttlSeconds > 0 && ttlSeconds <= 86400)) throw tokenError(`ttlSeconds must be an integer in 1..86400, got ${String(ttlSeconds)}`);
      const hk = pu.hostKeyRaw;
      if (hk !== undefined && !(hk instanceof Uint8Array && hk.byteLength === 32)) throw tokenError('hostKeyRaw must be a 32-byte X25519 public key');
      const lbl = canonicalLabels(pu.labels);
      const iat = Math.floor(now);
      const claims = {
        iss: hostId,
        sub: pu.id,
        lbl: [...lbl],
        epk: Buffer.from(pu.epkPublicRaw.buffer, pu.epkPublicRaw.byteOffset, 32).toString('base64url'),
        iat,
        exp: iat + ttlSeconds,
        v: TOKEN_VERSION,
        ...(hk ? { hk: Buffer.from(hk.buffer, hk.byteOffset, 32).toString('base64url') } : {}),
      };
      let token: string;
      try {
        token = await new SignJWT(claims).setProtectedHeader(header).sign(await keyPromise);
      } catch (err) {
        throw tokenError(`signing the token for PU ${pu.id} failed`, err);
      }
      if (token.length > MAX_TOKEN_BYTES) {
        throw tokenError(`the token for PU ${pu.id} is ${token.length} bytes, more than ${MAX_TOKEN_BYTES}: use fewer or shorter labels`);
      }
      return token;
    },
  });
}
