// Host certificates: a compact JWS signed by the operator's CA (ES256) saying
// "host H holds key hpk from iat to exp". Issued with jose (control plane, async);
// verified synchronously with node:crypto because tokens carry them on the hot path.

import { SignJWT, importJWK } from 'jose';
import { verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { TesseraError } from '../errors.js';
import {
  checkId,
  decodeB64url,
  decodeJsonObject,
  ecPublicKey,
  isEcPublicJwkShape,
  isTime,
  splitCompactString,
  type EcPublicJwk,
} from './jws.js';
import type { CaKeyPair } from './keys.js';

export const CERT_TYP = 'tessera-cert';

export interface CertificateClaims {
  /** Host id the certificate is for. */
  readonly sub: string;
  /** The host's public key (EC P-256: kty, crv, x, y only). */
  readonly hpk: EcPublicJwk;
  /** CA name. */
  readonly iss: string;
  readonly iat: number;
  readonly exp: number;
}

export interface IssueHostCertificateOptions {
  readonly host: string;
  readonly hostPublicJwk: EcPublicJwk;
  readonly validityDays: number;
  /** Seconds since the epoch; defaults to the clock. */
  readonly now?: number;
}

/** Signs a host certificate with the CA's private key (jose, async). */
export async function issueHostCertificate(ca: CaKeyPair, opts: IssueHostCertificateOptions): Promise<string> {
  checkId(opts.host, 'host id', 'TESSERA_ERR_INVALID_ARGUMENT');
  if (!isEcPublicJwkShape(opts.hostPublicJwk) || ecPublicKey(opts.hostPublicJwk) === null) {
    throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', 'hostPublicJwk must be an EC P-256 public JWK with only kty, crv, x, y (a point on the curve)');
  }
  if (!(typeof opts.validityDays === 'number' && opts.validityDays > 0 && opts.validityDays <= 3650)) {
    throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `validityDays must be a number in (0, 3650], got ${String(opts.validityDays)}`);
  }
  const iat = Math.floor(opts.now ?? Date.now() / 1000);
  const exp = iat + Math.round(opts.validityDays * 86400);
  const { kty, crv, x, y } = opts.hostPublicJwk;
  let key: Awaited<ReturnType<typeof importJWK>>;
  try {
    key = await importJWK({ ...ca.privateJwk }, 'ES256');
  } catch (err) {
    throw new TesseraError('TESSERA_ERR_KEY_FILE', 'the CA private key could not be imported', { cause: err });
  }
  // Claim order is fixed so that certificates have a stable, minimal layout.
  return new SignJWT({ sub: opts.host, hpk: { kty, crv, x, y }, iss: ca.name, iat, exp })
    .setProtectedHeader({ alg: 'ES256', typ: CERT_TYP })
    .sign(key);
}

/** Decodes a certificate WITHOUT checking its signature (for display and consistency checks). */
export function inspectCertificate(cert: string): CertificateClaims {
  const parsed = parseCertificate(cert);
  if (parsed === null) {
    throw new TesseraError('TESSERA_ERR_KEY_FILE', 'the host certificate is not a tessera certificate (compact JWS with typ tessera-cert, alg ES256 and sub/hpk/iss/iat/exp claims)');
  }
  return parsed.claims;
}

interface ParsedCertificate {
  readonly claims: CertificateClaims;
  readonly signingInput: Buffer;
  readonly signature: Buffer;
}

/** Structure only; null on anything unexpected. */
export function parseCertificate(cert: string): ParsedCertificate | null {
  if (typeof cert !== 'string' || cert.length > 2048) return null;
  const parts = splitCompactString(cert);
  if (parts === null) return null;
  const header = decodeJsonObject(cert.slice(0, parts.dot1));
  if (header === null || header.alg !== 'ES256' || header.typ !== CERT_TYP || header.crit !== undefined) return null;
  const signature = decodeB64url(cert.slice(parts.dot2 + 1));
  if (signature === null || signature.length !== 64) return null;
  const p = decodeJsonObject(cert.slice(parts.dot1 + 1, parts.dot2));
  if (p === null) return null;
  if (typeof p.sub !== 'string' || typeof p.iss !== 'string' || !isTime(p.iat) || !isTime(p.exp)) return null;
  if (p.sub.length === 0 || p.sub.length > 64 || p.iss.length > 64 || p.exp <= p.iat) return null;
  if (!isEcPublicJwkShape(p.hpk)) return null;
  const claims: CertificateClaims = Object.freeze({
    sub: p.sub,
    hpk: Object.freeze({ kty: 'EC', crv: 'P-256', x: p.hpk.x, y: p.hpk.y }),
    iss: p.iss,
    iat: p.iat,
    exp: p.exp,
  });
  return { claims, signingInput: Buffer.from(cert.slice(0, parts.dot2), 'latin1'), signature };
}

export interface VerifiedCertificate {
  readonly claims: CertificateClaims;
  /** The host public key, created once per certificate. */
  readonly hostKey: KeyObject;
}

export type CertificateCheck =
  | { readonly ok: true; readonly cert: VerifiedCertificate }
  | { readonly ok: false; readonly reason: 'malformed' | 'untrusted-issuer' };

/**
 * Checks structure and the CA signature (any of `caKeys`), not time: callers check
 * iat/exp on every use, since a cached certificate can expire later.
 */
export function verifyCertificateSignature(cert: string, caKeys: readonly KeyObject[]): CertificateCheck {
  const parsed = parseCertificate(cert);
  if (parsed === null) return { ok: false, reason: 'malformed' };
  let trusted = false;
  for (const key of caKeys) {
    try {
      if (cryptoVerify('sha256', parsed.signingInput, { key, dsaEncoding: 'ieee-p1363' }, parsed.signature)) {
        trusted = true;
        break;
      }
    } catch {
      // A key of the wrong type cannot verify: try the next.
    }
  }
  if (!trusted) return { ok: false, reason: 'untrusted-issuer' };
  const hostKey = ecPublicKey(parsed.claims.hpk);
  if (hostKey === null) return { ok: false, reason: 'malformed' };
  return { ok: true, cert: Object.freeze({ claims: parsed.claims, hostKey }) };
}

/** Full synchronous check of one certificate against trust anchors at time `now` (seconds). */
export function verifyHostCertificate(
  cert: string,
  caPublicJwks: EcPublicJwk | readonly EcPublicJwk[],
  now: number = Date.now() / 1000,
  clockSkewSeconds = 30,
): CertificateClaims {
  const keys = (Array.isArray(caPublicJwks) ? caPublicJwks : [caPublicJwks]).map((j: EcPublicJwk) => ecPublicKey(j));
  if (keys.some((k) => k === null)) throw new TesseraError('TESSERA_ERR_KEY_FILE', 'a CA public key is not a P-256 point');
  const r = verifyCertificateSignature(cert, keys as KeyObject[]);
  if (!r.ok) {
    throw new TesseraError('TESSERA_ERR_KEY_FILE', r.reason === 'malformed' ? 'the host certificate is malformed' : 'the host certificate was not signed by a trusted CA');
  }
  const c = r.cert.claims;
  if (now >= c.exp + clockSkewSeconds) throw new TesseraError('TESSERA_ERR_KEY_FILE', `the host certificate for ${c.sub} expired at ${new Date(c.exp * 1000).toISOString()}: issue a new one`);
  if (now < c.iat - clockSkewSeconds) throw new TesseraError('TESSERA_ERR_KEY_FILE', `the host certificate for ${c.sub} is not valid before ${new Date(c.iat * 1000).toISOString()}: check the clock`);
  return c;
}
