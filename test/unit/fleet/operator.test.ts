import { mkdtempSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connectCluster } from '../../../src/fleet/link.js';
import { renderClusterView, writeOperatorKeyPair } from '../../../src/fleet/operator.js';
import { readOperatorKeyFile } from '../../../src/fleet/files.js';

const dir = mkdtempSync(join(tmpdir(), 'tessera-fleet-op-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('operator side', () => {
  it('writes the key pair with the private file 0600 and refuses to overwrite it', () => {
    const k = writeOperatorKeyPair(join(dir, 'op'));
    expect(statSync(k.keyFile).mode & 0o777).toBe(0o600);
    expect(readOperatorKeyFile(k.keyFile).keyId).toBe(k.keyId);
    expect(() => writeOperatorKeyPair(join(dir, 'op'))).toThrow(/not overwriting/);
  });

  it('renders convergence: in sync, behind, unknown', () => {
    const base = { version: '0.1.0', problems: [], trustRevision: null, etcdRevision: 5, staleSeconds: 0.4, updatedAt: 'T' };
    const text = renderClusterView({
      stored: { revision: 20, verified: true, problem: null },
      etcdRevision: 9,
      hosts: [
        { ...base, host: 'a', health: 'ok', policyRevision: 20, behind: false },
        { ...base, host: 'b', health: 'degraded', problems: ['refused policy bundle: bad-signature'], policyRevision: 19, behind: true },
        { ...base, host: 'c', health: 'ok', policyRevision: null, staleSeconds: null, behind: null },
      ],
      directory: [{ host: 'a', addresses: ['10.0.0.1'], handshakeKey: true, expires: '2030-01-01T00:00:00.000Z', revoked: true }],
    });
    expect(text).toMatch(/^stored policy: revision 20 \(signature verified\)/);
    expect(text).toMatch(/\na\s+20\s+in sync\s+ok\s+0\.4s/);
    expect(text).toMatch(/\nb\s+19\s+behind\s+degraded \(refused policy bundle: bad-signature\)/);
    expect(text).toMatch(/\nc\s+-\s+-\s+ok\s+-/);
    expect(text).toMatch(/\ndirectory:\n  a REVOKED  10\.0\.0\.1  handshake key: yes/);
    expect(renderClusterView({ stored: null, etcdRevision: 1, hosts: [], directory: [] })).toMatch(/stored policy: none\n[^]*no host has published/);
  });

  it('refuses a bad cluster URL, TLS without a CA, and a client key others can read', () => {
    expect(() => connectCluster('http://x:1')).toThrow(/etcd:\/\/HOST:PORT/);
    expect(() => connectCluster('etcds://x:1')).toThrow(/--cluster-ca/);
    const ca = join(dir, 'ca.pem');
    const key = join(dir, 'client.key');
    writeFileSync(ca, 'x');
    writeFileSync(key, 'x');
    chmodSync(key, 0o644);
    expect(() => connectCluster('etcd://x:1', { caFile: ca, certFile: ca, keyFile: key })).toThrow(/chmod 600/);
    expect(() => connectCluster('etcd://x:1', { caFile: ca, certFile: ca })).toThrow(/go together/);
  });
});
