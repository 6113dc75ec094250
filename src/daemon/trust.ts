// Reads the daemon's trust material from files, refusing files that others can read, and
// turns it into a token issuer (control plane) and a TrustConfig (datapath workers).

import { readFileSync, statSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { TesseraError } from '../errors.js';
import {
  createSecret,
  createTokenIssuer,
  parseCaPublicFile,
  parseHostIdentityFile,
  parseSecretFile,
  serializeSecret,
  verifyHostCertificate,
  inspectCertificate,
  type HostIdentity,
  type TokenIssuer,
} from '../identity/index.js';
import type { TrustConfig } from '../datapath/messages.js';
import type { DaemonConfig } from './config.js';

export interface Trust {
  hostId: string;
  mode: 'psk' | 'ca';
  issuer: TokenIssuer;
  datapath: TrustConfig;
}

/** Read a secret-bearing file; refuse it when group or others may read it. */
export function readPrivateFile(path: string, what: string): string {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    throw new TesseraError('TESSERA_ERR_KEY_FILE', `${what} ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`, { cause: err });
  }
  if ((st.mode & 0o077) !== 0) {
    throw new TesseraError('TESSERA_ERR_KEY_FILE', `${what} ${path} is readable by group or others (mode ${(st.mode & 0o777).toString(8)}): run chmod 600 ${path}`);
  }
  return readFileSync(path, 'utf8');
}

function readPublicFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new TesseraError('TESSERA_ERR_KEY_FILE', `${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

export function defaultHostId(): string {
  return hostname().replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 63) || 'host';
}

export function loadTrust(config: DaemonConfig): Trust {
  const t = config.trust;
  if (t.mode === 'psk') {
    const psk = parseSecretFile(readPrivateFile(t.pskFile, 'PSK file'), 'psk');
    const identity: HostIdentity = { mode: 'psk', hostId: config.hostId, psk };
    return { hostId: config.hostId, mode: 'psk', issuer: createTokenIssuer(identity), datapath: { mode: 'psk', secret: psk } };
  }
  const ca = parseCaPublicFile(readPublicFile(t.caFile, 'CA public file'));
  const keyed = parseHostIdentityFile(readPrivateFile(t.keyFile, 'host key file'));
  if (keyed.mode !== 'ca') throw new TesseraError('TESSERA_ERR_KEY_FILE', `host key file ${t.keyFile} is a PSK identity; CA mode needs the file from tessera ca issue`);
  const certificate = readPublicFile(t.certFile, 'certificate file').trim();
  const claims = inspectCertificate(certificate);
  if (claims.hpk.x !== keyed.publicJwk.x || claims.hpk.y !== keyed.publicJwk.y) {
    throw new TesseraError('TESSERA_ERR_KEY_FILE', `certificate ${t.certFile} was issued for a different key than ${t.keyFile}`);
  }
  // Fail at start, not at the first handshake, when our own certificate would be refused.
  verifyHostCertificate(certificate, ca.publicJwk, Date.now() / 1000, config.clockSkewSeconds);
  const identity: HostIdentity = { ...keyed, hostId: claims.sub, certificate };
  return { hostId: claims.sub, mode: 'ca', issuer: createTokenIssuer(identity), datapath: { mode: 'ca', caPublicJwk: { ...ca.publicJwk } } };
}

/** The per-host nonce secret: created once, kept across restarts so handshakes in flight survive. */
export function loadHostSecret(stateDir: string): Uint8Array {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const path = join(stateDir, 'host-secret.json');
  if (existsSync(path)) return parseSecretFile(readPrivateFile(path, 'host secret'), 'host-secret');
  const secret = createSecret();
  writeFileSync(path, serializeSecret(secret, 'host-secret'), { mode: 0o600, flag: 'wx' });
  return secret;
}
