// Key material and its file formats. This module only turns objects into JSON text and
// back (the daemon and CLI do the file I/O and permission checks); every parse error is a
// TESSERA_ERR_KEY_FILE whose message names the file kind and the field that is wrong.

import { exportJWK, generateKeyPair } from 'jose';
import { createPrivateKey, createPublicKey, randomBytes, sign, verify } from 'node:crypto';
import { TesseraError } from '../errors.js';
import { inspectCertificate } from './certificate.js';
import { checkId, decodeB64url, ecPublicKey, isEcPublicJwkShape, type EcPublicJwk } from './jws.js';

export type { EcPublicJwk } from './jws.js';

export interface EcPrivateJwk extends EcPublicJwk {
  readonly d: string;
}

/** The operator's certificate authority. The private half stays with the operator. */
export interface CaKeyPair {
  readonly name: string;
  readonly privateJwk: EcPrivateJwk;
  readonly publicJwk: EcPublicJwk;
}

/** What every host needs to trust a CA: its name and public key. */
export interface CaPublic {
  readonly name: string;
  readonly publicJwk: EcPublicJwk;
}

export interface HostKeyPair {
  readonly privateJwk: EcPrivateJwk;
  readonly publicJwk: EcPublicJwk;
}

export interface PskHostIdentity {
  readonly mode: 'psk';
  readonly hostId: string;
  /** Shared by every host of the deployment, at least 32 bytes. */
  readonly psk: Uint8Array;
}

export interface CaHostIdentity {
  readonly mode: 'ca';
  readonly hostId: string;
  readonly privateJwk: EcPrivateJwk;
  readonly publicJwk: EcPublicJwk;
  /** Compact JWS issued by the CA for (hostId, publicJwk). */
  readonly certificate: string;
}

export type HostIdentity = PskHostIdentity | CaHostIdentity;

export type SecretPurpose = 'psk' | 'host-secret';

export const MIN_SECRET_BYTES = 32;
const FORMAT_VERSION = 1;

async function newEcKeyPair(): Promise<HostKeyPair> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const priv = await exportJWK(privateKey);
  const pub = await exportJWK(publicKey);
  const publicJwk: EcPublicJwk = Object.freeze({ kty: 'EC', crv: 'P-256', x: pub.x as string, y: pub.y as string });
  const privateJwk: EcPrivateJwk = Object.freeze({ ...publicJwk, d: priv.d as string });
  return Object.freeze({ privateJwk, publicJwk });
}

/** A new CA (ES256 key pair). */
export async function createCa(name: string): Promise<CaKeyPair> {
  checkId(name, 'CA name', 'TESSERA_ERR_INVALID_ARGUMENT');
  const kp = await newEcKeyPair();
  return Object.freeze({ name, ...kp });
}

/** A new host key pair (ES256); the CA then certifies its public half. */
export function createHostKey(): Promise<HostKeyPair> {
  return newEcKeyPair();
}

/** A new random shared secret (PSK mode) or nonce host secret: 32 bytes. */
export function createSecret(): Uint8Array {
  return new Uint8Array(randomBytes(MIN_SECRET_BYTES));
}

// ---- file formats ---------------------------------------------------------------------

function keyFileError(kind: string, message: string, cause?: unknown): TesseraError {
  return new TesseraError('TESSERA_ERR_KEY_FILE', `${kind}: ${message}`, cause === undefined ? undefined : { cause });
}

function parseJson(text: string, kind: string, type: string): Record<string, unknown> {
  if (typeof text !== 'string') throw keyFileError(kind, 'expected the file text as a string');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw keyFileError(kind, 'not valid JSON', err);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw keyFileError(kind, 'expected a JSON object');
  const o = v as Record<string, unknown>;
  if (o.type !== type) throw keyFileError(kind, `field "type" must be "${type}", got ${JSON.stringify(o.type)} (is this the right file?)`);
  if (o.version !== FORMAT_VERSION) throw keyFileError(kind, `field "version" must be ${FORMAT_VERSION}, got ${JSON.stringify(o.version)}`);
  return o;
}

function str(o: Record<string, unknown>, field: string, kind: string): string {
  const v = o[field];
  if (typeof v !== 'string' || v.length === 0) throw keyFileError(kind, `field "${field}" must be a non-empty string`);
  return v;
}

function id(o: Record<string, unknown>, field: string, kind: string): string {
  const v = str(o, field, kind);
  try {
    return checkId(v, `field "${field}"`, 'TESSERA_ERR_KEY_FILE');
  } catch (err) {
    throw keyFileError(kind, (err as Error).message);
  }
}

function publicJwk(o: Record<string, unknown>, field: string, kind: string): EcPublicJwk {
  const v = o[field];
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw keyFileError(kind, `field "${field}" must be a JWK object`);
  const j = v as Record<string, unknown>;
  const shape = { kty: j.kty, crv: j.crv, x: j.x, y: j.y };
  if (!isEcPublicJwkShape(shape)) {
    throw keyFileError(kind, `field "${field}" must be an EC P-256 JWK with base64url x and y of 32 bytes (kty "EC", crv "P-256")`);
  }
  if (ecPublicKey(shape) === null) throw keyFileError(kind, `field "${field}" is not a point on P-256`);
  return Object.freeze({ kty: 'EC', crv: 'P-256', x: shape.x, y: shape.y });
}

function privateJwk(o: Record<string, unknown>, field: string, kind: string, pub: EcPublicJwk): EcPrivateJwk {
  const v = o[field];
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw keyFileError(kind, `field "${field}" must be a JWK object`);
  const j = v as Record<string, unknown>;
  if (typeof j.d !== 'string' || decodeB64url(j.d)?.length !== 32) throw keyFileError(kind, `field "${field}.d" must be base64url of 32 bytes`);
  if (j.x !== pub.x || j.y !== pub.y) throw keyFileError(kind, `field "${field}" has x/y that differ from "publicJwk"`);
  const jwk: EcPrivateJwk = Object.freeze({ ...pub, d: j.d });
  // Node takes x/y from the JWK as given, so a d from another key pair would import fine:
  // prove the pair by signing and verifying.
  try {
    const probe = Buffer.from('tessera key pair check');
    const sig = sign('sha256', probe, createPrivateKey({ key: { ...jwk }, format: 'jwk' }));
    if (!verify('sha256', probe, createPublicKey({ key: { ...pub }, format: 'jwk' }), sig)) {
      throw keyFileError(kind, `field "${field}.d" does not belong to the public key`);
    }
  } catch (err) {
    if (err instanceof TesseraError) throw err;
    throw keyFileError(kind, `field "${field}" is not a valid P-256 private key`, err);
  }
  return jwk;
}

function secretField(o: Record<string, unknown>, field: string, kind: string): Uint8Array {
  const s = str(o, field, kind);
  const buf = decodeB64url(s);
  if (buf === null) throw keyFileError(kind, `field "${field}" must be unpadded base64url`);
  if (buf.length < MIN_SECRET_BYTES) throw keyFileError(kind, `field "${field}" holds ${buf.length} bytes, at least ${MIN_SECRET_BYTES} are required`);
  return new Uint8Array(buf);
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

function text(o: object): string {
  return `${JSON.stringify(o, null, 2)}\n`;
}

/** CA file (private: keep it off the hosts). */
export function serializeCa(ca: CaKeyPair): string {
  return text({ type: 'tessera-ca', version: FORMAT_VERSION, name: ca.name, publicJwk: ca.publicJwk, privateJwk: ca.privateJwk });
}

export function parseCaFile(fileText: string): CaKeyPair {
  const kind = 'CA file';
  const o = parseJson(fileText, kind, 'tessera-ca');
  const name = id(o, 'name', kind);
  const pub = publicJwk(o, 'publicJwk', kind);
  return Object.freeze({ name, publicJwk: pub, privateJwk: privateJwk(o, 'privateJwk', kind, pub) });
}

/** CA public file: the trust anchor copied to every host. */
export function serializeCaPublic(ca: CaPublic): string {
  return text({ type: 'tessera-ca-public', version: FORMAT_VERSION, name: ca.name, publicJwk: ca.publicJwk });
}

export function parseCaPublicFile(fileText: string): CaPublic {
  const kind = 'CA public file';
  const o = parseJson(fileText, kind, 'tessera-ca-public');
  return Object.freeze({ name: id(o, 'name', kind), publicJwk: publicJwk(o, 'publicJwk', kind) });
}

/** Host identity file (private to one host). */
export function serializeHostIdentity(identity: HostIdentity): string {
  if (identity.mode === 'psk') {
    return text({ type: 'tessera-host', version: FORMAT_VERSION, mode: 'psk', host: identity.hostId, psk: b64(identity.psk) });
  }
  return text({
    type: 'tessera-host',
    version: FORMAT_VERSION,
    mode: 'ca',
    host: identity.hostId,
    publicJwk: identity.publicJwk,
    privateJwk: identity.privateJwk,
    certificate: identity.certificate,
  });
}

/**
 * Parses a host identity file and checks that it is self-consistent (in CA mode: the key
 * pair matches, and the certificate names this host and this key). It does NOT check the
 * certificate's CA signature or dates: do that with verifyHostCertificate and the trust anchor.
 */
export function parseHostIdentityFile(fileText: string): HostIdentity {
  const kind = 'host identity file';
  const o = parseJson(fileText, kind, 'tessera-host');
  const hostId = id(o, 'host', kind);
  if (o.mode === 'psk') return Object.freeze({ mode: 'psk', hostId, psk: secretField(o, 'psk', kind) });
  if (o.mode !== 'ca') throw keyFileError(kind, `field "mode" must be "ca" or "psk", got ${JSON.stringify(o.mode)}`);
  const pub = publicJwk(o, 'publicJwk', kind);
  const priv = privateJwk(o, 'privateJwk', kind, pub);
  const certificate = str(o, 'certificate', kind);
  let claims: { sub: string; hpk: EcPublicJwk };
  try {
    claims = inspectCertificate(certificate);
  } catch (err) {
    throw keyFileError(kind, `field "certificate": ${(err as Error).message}`, err);
  }
  if (claims.sub !== hostId) throw keyFileError(kind, `the certificate is for host "${claims.sub}", not "${hostId}"`);
  if (claims.hpk.x !== pub.x || claims.hpk.y !== pub.y) throw keyFileError(kind, 'the certificate was issued for a different key than "publicJwk"');
  return Object.freeze({ mode: 'ca', hostId, publicJwk: pub, privateJwk: priv, certificate });
}

/** A bare secret: the PSK shared by all hosts, or a host's nonce secret. */
export function serializeSecret(secret: Uint8Array, purpose: SecretPurpose): string {
  if (secret.byteLength < MIN_SECRET_BYTES) {
    throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `a ${purpose} must be at least ${MIN_SECRET_BYTES} bytes, got ${secret.byteLength}`);
  }
  return text({ type: 'tessera-secret', version: FORMAT_VERSION, purpose, secret: b64(secret) });
}

export function parseSecretFile(fileText: string, purpose: SecretPurpose): Uint8Array {
  const kind = `${purpose} file`;
  const o = parseJson(fileText, kind, 'tessera-secret');
  if (o.purpose !== purpose) throw keyFileError(kind, `field "purpose" is ${JSON.stringify(o.purpose)}, expected "${purpose}" (is this the right file?)`);
  return secretField(o, 'secret', kind);
}
