// Shared fixtures for the identity tests: one CA, hosts, PSK and a reference PU.
import { createHmac } from 'node:crypto';
import { SignJWT, importJWK } from 'jose';
import {
  createCa,
  createEphemeralKey,
  createHostKey,
  issueHostCertificate,
  type CaHostIdentity,
  type CaKeyPair,
  type EcPrivateJwk,
} from '../../../src/identity/index.js';

export const NOW = 1_800_000_000; // fixed clock, seconds
export const LABELS = ['app=nginx', 'env=prod', 'tier=web', 'team=core'];

export async function caHost(ca: CaKeyPair, host: string, opts: { now?: number; validityDays?: number } = {}): Promise<CaHostIdentity> {
  const kp = await createHostKey();
  const certificate = await issueHostCertificate(ca, {
    host,
    hostPublicJwk: kp.publicJwk,
    validityDays: opts.validityDays ?? 365,
    now: opts.now ?? NOW - 86400,
  });
  return { mode: 'ca', hostId: host, ...kp, certificate };
}

export async function world() {
  const ca = await createCa('acme-ca');
  const otherCa = await createCa('evil-ca');
  const hostA = await caHost(ca, 'host-a');
  const hostB = await caHost(ca, 'host-b');
  const rogue = await caHost(otherCa, 'host-a');
  const psk = new Uint8Array(32).fill(0x42);
  const epk = createEphemeralKey();
  return { ca, otherCa, hostA, hostB, rogue, psk, epk };
}

export function claimsFor(epkRaw: Uint8Array, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    iss: 'host-a',
    sub: 'pu-1',
    lbl: ['app=nginx', 'env=prod'],
    epk: Buffer.from(epkRaw).toString('base64url'),
    iat: NOW,
    exp: NOW + 300,
    v: 1,
    ...over,
  };
}

/** Signs arbitrary claims/headers with jose, bypassing the issuer's checks. */
export async function signPsk(psk: Uint8Array, claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', ...header }).sign(psk);
}

export async function signCa(priv: EcPrivateJwk, cert: string, claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', hc: cert, ...header }).sign(await importJWK({ ...priv }, 'ES256'));
}

export const bytes = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));

/** Replaces one segment of a compact JWS. */
export function withSegment(token: string, index: 0 | 1 | 2, segment: string): string {
  const parts = token.split('.');
  parts[index] = segment;
  return parts.join('.');
}

export const b64json = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
export const unb64json = (s: string): Record<string, unknown> => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));

/** HS256 compact JWS built by hand, for headers jose refuses to produce. */
export function rawHs256(psk: Uint8Array, header: unknown, claims: unknown): string {
  const input = `${b64json(header)}.${b64json(claims)}`;
  return `${input}.${createHmac('sha256', psk).update(input).digest('base64url')}`;
}
