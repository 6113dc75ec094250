// The operator's signing key for fleet bundles: Ed25519, separate from the CA's key (the CA
// certifies hosts; the operator key authorizes policy and trust). This module only turns keys
// into JSON text and back; files.ts does the file I/O and the 0600 check.

import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { TesseraError } from '../errors.js';

export interface OperatorKey {
  readonly keyId: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

export interface OperatorPublicKey {
  readonly keyId: string;
  readonly publicKey: KeyObject;
}

const PRIVATE_TYPE = 'tessera-operator-key';
const PUBLIC_TYPE = 'tessera-operator-public';

/** The key id: "op-" and the first 16 hex digits of SHA-256 over the raw public key. */
export function operatorKeyId(publicKey: KeyObject): string {
  const x = publicKey.export({ format: 'jwk' }).x as string;
  return `op-${createHash('sha256').update(Buffer.from(x, 'base64url')).digest('hex').slice(0, 16)}`;
}

export function createOperatorKey(): OperatorKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return Object.freeze({ keyId: operatorKeyId(publicKey), privateKey, publicKey });
}

export function operatorKeyToJson(key: OperatorKey): string {
  const jwk = key.privateKey.export({ format: 'jwk' });
  return `${JSON.stringify({ type: PRIVATE_TYPE, version: 1, keyId: key.keyId, privateJwk: { kty: 'OKP', crv: 'Ed25519', x: jwk.x, d: jwk.d } }, null, 2)}\n`;
}

export function operatorPublicToJson(key: OperatorPublicKey): string {
  const jwk = key.publicKey.export({ format: 'jwk' });
  return `${JSON.stringify({ type: PUBLIC_TYPE, version: 1, keyId: key.keyId, publicJwk: { kty: 'OKP', crv: 'Ed25519', x: jwk.x } }, null, 2)}\n`;
}

function fail(kind: string, message: string): TesseraError {
  return new TesseraError('TESSERA_ERR_KEY_FILE', `${kind}: ${message}`);
}

function parse(text: string, kind: string, type: string): Record<string, unknown> {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    throw fail(kind, 'not valid JSON');
  }
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw fail(kind, 'expected a JSON object');
  const r = o as Record<string, unknown>;
  if (r.type !== type) throw fail(kind, `field "type" must be "${type}", got ${JSON.stringify(r.type)} (is this the right file?)`);
  if (r.version !== 1) throw fail(kind, `field "version" must be 1, got ${JSON.stringify(r.version)}`);
  return r;
}

function jwkField(o: Record<string, unknown>, field: string, kind: string, withPrivate: boolean): Record<string, string> {
  const j = o[field] as Record<string, unknown> | undefined;
  const b64 = (v: unknown): boolean => typeof v === 'string' && /^[A-Za-z0-9_-]{43}$/.test(v);
  if (!j || j.kty !== 'OKP' || j.crv !== 'Ed25519' || !b64(j.x) || (withPrivate && !b64(j.d))) {
    throw fail(kind, `field "${field}" must be an Ed25519 JWK (kty OKP, crv Ed25519, x${withPrivate ? ', d' : ''})`);
  }
  return withPrivate ? { kty: 'OKP', crv: 'Ed25519', x: j.x as string, d: j.d as string } : { kty: 'OKP', crv: 'Ed25519', x: j.x as string };
}

function checkKeyId(o: Record<string, unknown>, publicKey: KeyObject, kind: string): string {
  const keyId = operatorKeyId(publicKey);
  if (o.keyId !== keyId) throw fail(kind, `field "keyId" is ${JSON.stringify(o.keyId)} but the key's id is ${keyId}`);
  return keyId;
}

export function parseOperatorKey(text: string): OperatorKey {
  const kind = 'operator key';
  const o = parse(text, kind, PRIVATE_TYPE);
  const jwk = jwkField(o, 'privateJwk', kind, true);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: jwk, format: 'jwk' });
  } catch {
    throw fail(kind, 'field "privateJwk" is not a usable Ed25519 key');
  }
  const publicKey = createPublicKey(privateKey);
  if (publicKey.export({ format: 'jwk' }).x !== jwk.x) throw fail(kind, 'the private key does not match its "x"');
  return Object.freeze({ keyId: checkKeyId(o, publicKey, kind), privateKey, publicKey });
}

export function parseOperatorPublic(text: string): OperatorPublicKey {
  const kind = 'operator public key';
  const o = parse(text, kind, PUBLIC_TYPE);
  const jwk = jwkField(o, 'publicJwk', kind, false);
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: jwk, format: 'jwk' });
  } catch {
    throw fail(kind, 'field "publicJwk" is not a usable Ed25519 key');
  }
  return Object.freeze({ keyId: checkKeyId(o, publicKey, kind), publicKey });
}
