// The host's static handshake key file (<stateDir>/handshake.key): made once, mode 600, read
// back the same; a file group or others can read, or one that does not hold an X25519 key
// whose public half matches, is refused with TESSERA_ERR_KEY_FILE and one clear line.
import { afterEach, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPublicKey, diffieHellman, generateKeyPairSync } from 'node:crypto';
import { loadHandshakeKey } from '../../../src/daemon/handshake-key.js';

const dirs: string[] = [];
const stateDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'tessera-hk-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('loadHandshakeKey', () => {
  it('creates an X25519 pair at first start (mode 600) and reads the same key back', () => {
    const dir = stateDir();
    const k = loadHandshakeKey(dir);
    expect(k.publicRaw).toHaveLength(32);
    expect(statSync(join(dir, 'handshake.key')).mode & 0o777).toBe(0o600);
    const again = loadHandshakeKey(dir);
    expect(Buffer.from(again.publicRaw).equals(Buffer.from(k.publicRaw))).toBe(true);
    // The pair agrees with a peer: what a client's proof key is derived from.
    const peer = generateKeyPairSync('x25519');
    const ours = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(k.publicRaw).toString('base64url') }, format: 'jwk' });
    expect(diffieHellman({ privateKey: again.privateKey, publicKey: peer.publicKey }).equals(diffieHellman({ privateKey: peer.privateKey, publicKey: ours }))).toBe(true);
  });

  it('refuses a key file group or others can read', () => {
    const dir = stateDir();
    loadHandshakeKey(dir);
    chmodSync(join(dir, 'handshake.key'), 0o640);
    expect(() => loadHandshakeKey(dir)).toThrow(/readable by group or others.*chmod 600/);
  });

  it('refuses a file that is not an X25519 key, or whose public half is not its own', () => {
    const dir = stateDir();
    const path = join(dir, 'handshake.key');
    writeFileSync(path, 'not json', { mode: 0o600 });
    expect(() => loadHandshakeKey(dir)).toThrow(expect.objectContaining({ code: 'TESSERA_ERR_KEY_FILE', message: expect.stringMatching(/not JSON/) }));
    writeFileSync(path, JSON.stringify({ kty: 'EC', crv: 'P-256', d: 'x', x: 'y' }), { mode: 0o600 });
    expect(() => loadHandshakeKey(dir)).toThrow(/not an X25519 private JWK/);
    const a = loadHandshakeKey(stateDir());
    void a;
    const other = generateKeyPairSync('x25519').privateKey.export({ format: 'jwk' });
    const mine = JSON.parse(readFileSync(join(dirs[1]!, 'handshake.key'), 'utf8')) as { d: string };
    writeFileSync(path, JSON.stringify({ kty: 'OKP', crv: 'X25519', d: mine.d, x: other.x }), { mode: 0o600 });
    expect(() => loadHandshakeKey(dir)).toThrow(/does not belong to its private key/);
  });
});
