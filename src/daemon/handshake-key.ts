// The host's static X25519 handshake key (protocol v2): clients prove possession of their
// token's key, in the SYN, under a key agreed with this one (docs/protocol.md). Kept at
// <stateDir>/handshake.key (mode 600, created on first start, refused when group or others
// may read it, like every key file), handed to the datapath workers, and published by the
// fleet (fleet-service's `handshakePublicKey`) so that clients know it before first contact.
//
// File format: one JSON object, an RFC 8037 OKP JWK: {"kty":"OKP","crv":"X25519","x":..,"d":..}.

import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TesseraError } from '../errors.js';
import { readPrivateFile } from './trust.js';

export interface HandshakeKey {
  /** Raw 32-byte public key. */
  readonly publicRaw: Uint8Array;
  readonly privateKey: KeyObject;
}

export const HANDSHAKE_KEY_FILE = 'handshake.key';

function fromJwk(text: string, path: string): HandshakeKey {
  const bad = (why: string): never => {
    throw new TesseraError('TESSERA_ERR_KEY_FILE', `handshake key ${path}: ${why} (delete it to have a new one made at the next start)`);
  };
  let jwk: Record<string, unknown>;
  try {
    jwk = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return bad('not JSON');
  }
  if (jwk === null || typeof jwk !== 'object' || jwk.kty !== 'OKP' || jwk.crv !== 'X25519' || typeof jwk.d !== 'string' || typeof jwk.x !== 'string') {
    return bad('not an X25519 private JWK');
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: jwk.d, x: jwk.x }, format: 'jwk' });
  } catch {
    return bad('not a valid X25519 key');
  }
  const x = createPublicKey(privateKey).export({ format: 'jwk' }).x;
  // The public half must be the private key's: a file edited by hand must not publish a key
  // whose proofs this host cannot check.
  if (x !== jwk.x) bad('its public key (x) does not belong to its private key (d)');
  return { privateKey, publicRaw: new Uint8Array(Buffer.from(x!, 'base64url')) };
}

/** Read the host's handshake key, or create it (first start). Throws TESSERA_ERR_KEY_FILE. */
export function loadHandshakeKey(stateDir: string): HandshakeKey {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const path = join(stateDir, HANDSHAKE_KEY_FILE);
  if (existsSync(path)) return fromJwk(readPrivateFile(path, 'handshake key'), path);
  const { privateKey } = generateKeyPairSync('x25519');
  const jwk = privateKey.export({ format: 'jwk' });
  writeFileSync(path, JSON.stringify({ kty: 'OKP', crv: 'X25519', x: jwk.x, d: jwk.d }) + '\n', { mode: 0o600, flag: 'wx' });
  return fromJwk(readPrivateFile(path, 'handshake key'), path);
}
