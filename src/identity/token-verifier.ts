// The token verifier: synchronous, node:crypto, on the packet path. Verified tokens are
// cached (positive LRU keyed by the signature segment, negative LRU for refusals, and a
// certificate cache in CA mode); time and host trust (revocation.ts) are rechecked on every
// hit. The token format, its claims and the issuer are in tokens.ts.

import {
  createHmac,
  createPublicKey,
  createSecretKey,
  hash as cryptoHash,
  timingSafeEqual,
  verify as cryptoVerify,
  type KeyObject,
} from 'node:crypto';
import { TesseraError } from '../errors.js';
import { verifyCertificateSignature, type VerifiedCertificate } from './certificate.js';
import { decodeB64url, decodeJsonObject, ecPublicKey, isTime, splitCompactBytes, type EcPublicJwk } from './jws.js';
import { MIN_SECRET_BYTES } from './keys.js';
import { isCanonical } from './labels.js';
import { Lru } from './lru.js';
import { CERT_ID_PREFIX, NO_HOST_TRUST, checkHostTrust, type HostTrust } from './revocation.js';
import {
  MAX_TOKEN_BYTES,
  TOKEN_VERSION,
  type TokenClaims,
  type TokenVerifier,
  type TokenVerifierOptions,
  type VerifiedToken,
  type VerifyFailure,
  type VerifyFailureReason,
  type VerifyResult,
  type VerifyStats,
} from './tokens.js';

const MAX_CLAIM_STRING = 128;

function configError(message: string): TesseraError {
  return new TesseraError('TESSERA_ERR_INVALID_CONFIG', message);
}

/** A token whose signature or certificate failed: the same bytes always fail the same way. */
interface FailedEntry {
  readonly bytes: Buffer;
  readonly reason: VerifyFailureReason;
}

interface CacheEntry {
  /** The whole token (a copy): a hit needs these exact bytes, not only the same signature. */
  readonly bytes: Buffer;
  readonly result: VerifiedToken;
  /** Certificate validity (CA mode), rechecked on every hit like the token's. */
  readonly certIat: number;
  readonly certExp: number;
  /** Certificate id ("sha256:<hex>", CA mode) for revocation lists; null in PSK mode. */
  readonly certId: string | null;
  /** The host-trust verdict for this token, valid while `trustGeneration` is the verifier's. */
  trustGeneration: number;
  trustRefusal: VerifyFailureReason | null;
}

const FAIL: Readonly<Record<VerifyFailureReason, VerifyFailure>> = Object.freeze({
  malformed: Object.freeze({ ok: false, reason: 'malformed' }),
  'bad-signature': Object.freeze({ ok: false, reason: 'bad-signature' }),
  'untrusted-issuer': Object.freeze({ ok: false, reason: 'untrusted-issuer' }),
  expired: Object.freeze({ ok: false, reason: 'expired' }),
  'not-yet-valid': Object.freeze({ ok: false, reason: 'not-yet-valid' }),
  revoked: Object.freeze({ ok: false, reason: 'revoked' }),
  'label-not-allowed': Object.freeze({ ok: false, reason: 'label-not-allowed' }),
  'stale-trust': Object.freeze({ ok: false, reason: 'stale-trust' }),
});

function claimString(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_CLAIM_STRING;
}

/** Token claims from a signed payload; null if any claim is missing or of the wrong shape. */
function parseClaims(payloadB64: string): { claims: TokenClaims; epkRaw: Buffer; hkRaw: Buffer | null } | null {
  const p = decodeJsonObject(payloadB64);
  if (p === null) return null;
  if (p.v !== TOKEN_VERSION || !claimString(p.iss) || !claimString(p.sub) || !isTime(p.iat) || !isTime(p.exp)) return null;
  if (p.exp <= p.iat || typeof p.epk !== 'string' || !Array.isArray(p.lbl) || !isCanonical(p.lbl)) return null;
  const epkRaw = decodeB64url(p.epk);
  if (epkRaw === null || epkRaw.length !== 32) return null;
  let hkRaw: Buffer | null = null;
  if (p.hk !== undefined) {
    hkRaw = typeof p.hk === 'string' ? decodeB64url(p.hk) : null;
    if (hkRaw === null || hkRaw.length !== 32) return null;
  }
  const claims: TokenClaims = Object.freeze({
    iss: p.iss,
    sub: p.sub,
    lbl: Object.freeze([...(p.lbl as string[])]),
    epk: p.epk,
    iat: p.iat,
    exp: p.exp,
    v: TOKEN_VERSION,
    ...(hkRaw ? { hk: p.hk as string } : {}),
  });
  return { claims, epkRaw, hkRaw };
}

function x25519Key(raw: Buffer): KeyObject | null {
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') }, format: 'jwk' });
  } catch {
    return null;
  }
}

/**
 * A synchronous verifier for the packet path.
 *
 * Caching: only tokens whose signature (and, in CA mode, certificate signature) verified
 * are cached, in a bounded LRU keyed by the token's signature segment; a hit also needs the
 * presented token to equal the cached bytes exactly, so the cache answers only for a token
 * it verified, byte for byte. (Keying by the signature spares hashing ~900 bytes per packet;
 * the SHA-256 of the token, which the handshake binds into its MACs, is computed on a miss
 * and kept in the entry.) Time (token iat/exp,
 * certificate iat/exp) is rechecked on every hit, so an authentic but expired token stays
 * cached yet is refused.
 *
 * Failed verifications are cached too, in a separate bounded LRU keyed the same way (so they
 * never evict good tokens): a forged token sent again — a replayed capture, or one forgery
 * flooded from many addresses — is refused with the same reason for a lookup instead of one
 * HMAC (PSK) or up to two ECDSA verifies (CA). Only outcomes that depend on the bytes alone
 * are kept (signature, certificate, shape), never time. Changing one byte still buys a fresh
 * verification: `cached()` lets the caller bound those with a budget of its own (the datapath
 * keeps one per source address, src/datapath/handshake/tables.ts).
 */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const skew = options.clockSkewSeconds ?? 30;
  if (!(typeof skew === 'number' && Number.isFinite(skew) && skew >= 0 && skew <= 3600)) {
    throw configError(`clockSkewSeconds must be a number in 0..3600, got ${String(skew)}`);
  }
  const cacheSize = options.cacheSize ?? 4096;
  if (!(Number.isInteger(cacheSize) && cacheSize >= 1)) throw configError(`cacheSize must be an integer >= 1, got ${String(cacheSize)}`);
  const now = options.now ?? (() => Date.now() / 1000);
  const cache = new Lru<string, CacheEntry>(cacheSize);
  const negativeSize = options.negativeCacheSize ?? 1024;
  if (!(Number.isInteger(negativeSize) && negativeSize >= 1)) throw configError(`negativeCacheSize must be an integer >= 1, got ${String(negativeSize)}`);
  const failed = new Lru<string, FailedEntry>(negativeSize);
  const certCache = new Lru<string, VerifiedCertificate>(Math.max(64, Math.ceil(cacheSize / 4)));
  const mode = options.mode;

  let hmacKeys: KeyObject[] = [];
  let caKeys: KeyObject[] = [];
  if (mode === 'psk') {
    const list = options.psk instanceof Uint8Array ? [options.psk] : [...options.psk];
    if (list.length === 0) throw configError('psk: give at least one shared secret');
    for (const s of list) {
      if (!(s instanceof Uint8Array) || s.byteLength < MIN_SECRET_BYTES) throw configError(`every PSK must be at least ${MIN_SECRET_BYTES} bytes`);
    }
    hmacKeys = list.map((s) => createSecretKey(s));
  } else if (mode === 'ca') {
    const jwks: readonly EcPublicJwk[] = Array.isArray(options.caPublicJwk) ? options.caPublicJwk : [options.caPublicJwk as EcPublicJwk];
    if (jwks.length === 0) throw configError('caPublicJwk: give at least one CA public key');
    caKeys = jwks.map((j) => {
      const k = j && typeof j === 'object' ? ecPublicKey(j) : null;
      if (k === null) throw configError('caPublicJwk must be an EC P-256 public JWK (kty "EC", crv "P-256", x, y)');
      return k;
    });
  } else {
    throw configError(`unknown trust mode ${JSON.stringify(mode)}: use "psk" or "ca"`);
  }

  let hits = 0;
  let misses = 0;
  let certHits = 0;
  let certMisses = 0;
  let negativeHits = 0;
  const rejected: Record<VerifyFailureReason, number> = {
    malformed: 0,
    'bad-signature': 0,
    'untrusted-issuer': 0,
    expired: 0,
    'not-yet-valid': 0,
    revoked: 0,
    'label-not-allowed': 0,
    'stale-trust': 0,
  };
  let hostTrust: HostTrust = options.hostTrust ?? NO_HOST_TRUST;
  const fail = (reason: VerifyFailureReason): VerifyFailure => {
    rejected[reason]++;
    return FAIL[reason];
  };

  /** Time checks, certificate first: an expired host certificate means the issuer is no longer trusted. */
  const checkTime = (entry: CacheEntry, t: number): VerifyResult => {
    if (t >= entry.certExp + skew || t < entry.certIat - skew) return fail('untrusted-issuer');
    const c = entry.result.claims;
    // Revocations and label bindings: re-asked only when they changed since this entry's last answer.
    if (entry.trustGeneration !== hostTrust.generation) {
      entry.trustRefusal = checkHostTrust(hostTrust, c.iss, entry.certId, c.lbl);
      entry.trustGeneration = hostTrust.generation;
    }
    if (entry.trustRefusal !== null) return fail(entry.trustRefusal);
    if (t >= c.exp + skew) return fail('expired');
    if (t < c.iat - skew) return fail('not-yet-valid');
    return entry.result;
  };

  const verifyPsk = (bytes: Buffer, token: string, dot1: number, dot2: number): { claims: TokenClaims; epkRaw: Buffer; hkRaw: Buffer | null } | VerifyFailureReason => {
    const header = decodeJsonObject(token.slice(0, dot1));
    if (header === null || header.alg !== 'HS256' || header.crit !== undefined) return 'malformed';
    const sig = decodeB64url(token.slice(dot2 + 1));
    if (sig === null || sig.length !== 32) return 'malformed';
    const input = bytes.subarray(0, dot2);
    let good = false;
    for (const key of hmacKeys) {
      const mac = createHmac('sha256', key).update(input).digest();
      if (timingSafeEqual(mac, sig)) {
        good = true;
        break;
      }
    }
    if (!good) return 'bad-signature';
    return parseClaims(token.slice(dot1 + 1, dot2)) ?? 'malformed';
  };

  const verifyCa = (
    bytes: Buffer,
    token: string,
    dot1: number,
    dot2: number,
  ): { claims: TokenClaims; epkRaw: Buffer; hkRaw: Buffer | null; cert: VerifiedCertificate; certId: string } | VerifyFailureReason => {
    const header = decodeJsonObject(token.slice(0, dot1));
    if (header === null || header.alg !== 'ES256' || header.crit !== undefined || typeof header.hc !== 'string') return 'malformed';
    const sig = decodeB64url(token.slice(dot2 + 1));
    if (sig === null || sig.length !== 64) return 'malformed';
    const certKey = cryptoHash('sha256', header.hc, 'hex');
    let cert = certCache.get(certKey);
    if (cert !== undefined) certHits++;
    else {
      certMisses++;
      const r = verifyCertificateSignature(header.hc, caKeys);
      if (!r.ok) return r.reason;
      cert = r.cert;
      certCache.set(certKey, cert);
    }
    let good = false;
    try {
      good = cryptoVerify('sha256', bytes.subarray(0, dot2), { key: cert.hostKey, dsaEncoding: 'ieee-p1363' }, sig);
    } catch {
      good = false;
    }
    if (!good) return 'bad-signature';
    const parsed = parseClaims(token.slice(dot1 + 1, dot2));
    if (parsed === null) return 'malformed';
    // The certificate vouches for one host: it cannot speak for another.
    if (parsed.claims.iss !== cert.claims.sub) return 'untrusted-issuer';
    return { ...parsed, cert, certId: CERT_ID_PREFIX + certKey };
  };

  // What locate() found, in two variables rather than a result object: it runs per packet.
  let bytes: Buffer = Buffer.alloc(0);
  let key = '';
  /** Sets `bytes` and `key` (the signature segment) and returns null, or a failure for a shape no cache could hold. */
  const locate = (tokenBytes: Uint8Array, offset: number, length: number | undefined): VerifyFailure | null => {
    if (!(tokenBytes instanceof Uint8Array)) return fail('malformed');
    const len = length ?? tokenBytes.byteLength - offset;
    if (!Number.isInteger(offset) || !Number.isInteger(len) || offset < 0 || len <= 0 || offset + len > tokenBytes.byteLength) {
      return fail('malformed');
    }
    if (len > MAX_TOKEN_BYTES) return fail('malformed');
    bytes = Buffer.from(tokenBytes.buffer, tokenBytes.byteOffset + offset, len);
    const lastDot = bytes.lastIndexOf(0x2e);
    if (lastDot <= 0) return fail('malformed');
    key = bytes.toString('latin1', lastDot + 1);
    return null;
  };

  /** What the positive and negative caches say about these exact bytes, or null. */
  const fromCaches = (bytes: Buffer, key: string, t: number): VerifyResult | null => {
    const hit = cache.get(key);
    if (hit !== undefined && hit.bytes.equals(bytes)) {
      hits++;
      return checkTime(hit, t);
    }
    const bad = failed.peek(key);
    if (bad !== undefined && bad.bytes.equals(bytes)) {
      negativeHits++;
      return fail(bad.reason);
    }
    return null;
  };

  /** Refuse, and remember that these bytes fail (a copy: `bytes` may be a view of a reused buffer). */
  const failBytes = (bytes: Buffer, key: string, reason: VerifyFailureReason): VerifyFailure => {
    failed.set(key, { bytes: Buffer.from(bytes), reason });
    return fail(reason);
  };

  return Object.freeze({
    mode,
    cached(tokenBytes: Uint8Array, offset = 0, length?: number): VerifyResult | null {
      try {
        return locate(tokenBytes, offset, length) ?? fromCaches(bytes, key, now());
      } catch {
        return fail('malformed');
      }
    },
    verify(tokenBytes: Uint8Array, offset = 0, length?: number): VerifyResult {
      try {
        const bad = locate(tokenBytes, offset, length);
        if (bad !== null) return bad;
        const t = now();
        const known = fromCaches(bytes, key, t);
        if (known !== null) return known;
        // Past the fleet's staleness bound only identities verified before are accepted.
        if (hostTrust.refuseNew) return fail('stale-trust');
        misses++;
        const len = bytes.length;
        const parts = splitCompactBytes(bytes, 0, len);
        if (parts === null) return fail('malformed');
        const token = bytes.toString('latin1');
        let claims: TokenClaims;
        let epkRaw: Buffer;
        let hkRaw: Buffer | null;
        let certIat = 0;
        let certExp = Number.MAX_SAFE_INTEGER;
        let certId: string | null = null;
        if (mode === 'psk') {
          const r = verifyPsk(bytes, token, parts.dot1, parts.dot2);
          if (typeof r === 'string') return failBytes(bytes, key, r);
          ({ claims, epkRaw, hkRaw } = r);
        } else {
          const r = verifyCa(bytes, token, parts.dot1, parts.dot2);
          if (typeof r === 'string') return failBytes(bytes, key, r);
          ({ claims, epkRaw, hkRaw } = r);
          certIat = r.cert.claims.iat;
          certExp = r.cert.claims.exp;
          certId = r.certId;
        }
        const epkKey = x25519Key(epkRaw);
        if (epkKey === null) return failBytes(bytes, key, 'malformed');
        const tokenHash = new Uint8Array(cryptoHash('sha256', bytes, 'buffer'));
        const hostKey = hkRaw === null ? null : new Uint8Array(hkRaw);
        const result: VerifiedToken = Object.freeze({ ok: true, claims, epkKey, tokenHash, hostKey, validUntil: Math.min(claims.exp, certExp) });
        // A copy: `bytes` may be a view of a queue's receive buffer, reused by the next batch.
        const entry: CacheEntry = { bytes: Buffer.from(bytes), result, certIat, certExp, certId, trustGeneration: -1, trustRefusal: null };
        cache.set(key, entry);
        return checkTime(entry, t);
      } catch {
        // Defence in depth: verify() is fed attacker bytes and must never throw.
        return fail('malformed');
      }
    },
    verifyStats(): VerifyStats {
      return {
        hits,
        misses,
        cacheSize: cache.size,
        certHits,
        certMisses,
        certCacheSize: certCache.size,
        negativeHits,
        negativeCacheSize: failed.size,
        rejected: { ...rejected },
      };
    },
    setHostTrust(trust: HostTrust): void {
      hostTrust = trust;
    },
  });
}
