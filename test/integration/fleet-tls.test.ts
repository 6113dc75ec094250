// TLS client certificates to etcd (docs/cluster.md "The client"): a real etcd started by the
// test with --client-cert-auth, certificates made with openssl here. The fleet's client with
// the right CA and client certificate reads and writes; without a client certificate, or
// trusting another CA, etcd is refused with one clear error.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectCluster } from '../../src/fleet/link.js';
import { ETCD_BIN } from './fleet-etcd.js';
import { sigkillAndWait } from '../helpers/etcd-member.js';

const CLIENT_PORT = 23812;
const PEER_PORT = 23822;
const OPENSSL = spawnSync('openssl', ['version']).status === 0;

describe('fleet client to an etcd that requires TLS client certificates', () => {
  let dir: string;
  let etcd: ChildProcess | null = null;
  const f = (n: string): string => join(dir, n);
  const ssl = (args: string[]): void => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  };
  /** A CA, and a certificate NAME signed by it (with extensions EXT). */
  const issue = (ca: string, name: string, cn: string, ext: string): void => {
    ssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
    writeFileSync(f(`${name}.ext`), ext);
    ssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`]);
    chmodSync(f(`${name}.key`), 0o600);
  };
  const newCa = (name: string): void => {
    ssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`]);
  };

  beforeAll(async () => {
    // Missing tools fail the test loudly rather than skip it.
    if (!ETCD_BIN) throw new Error('etcd is not installed (scripts/setup.sh installs etcd-server)');
    if (!OPENSSL) throw new Error('openssl is not installed');
    dir = mkdtempSync(join(tmpdir(), 'tessera-fleet-tls-'));
    newCa('ca');
    newCa('other-ca');
    issue('ca', 'server', 'etcd', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    issue('ca', 'client', 'tessera', 'extendedKeyUsage=clientAuth\n');
    issue('other-ca', 'stranger', 'stranger', 'extendedKeyUsage=clientAuth\n');
    etcd = spawn(ETCD_BIN!, [
      '--name=tls',
      `--data-dir=${f('etcd')}`,
      `--listen-client-urls=https://127.0.0.1:${CLIENT_PORT}`,
      `--advertise-client-urls=https://127.0.0.1:${CLIENT_PORT}`,
      `--listen-peer-urls=http://127.0.0.1:${PEER_PORT}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${PEER_PORT}`,
      `--initial-cluster=tls=http://127.0.0.1:${PEER_PORT}`,
      '--client-cert-auth',
      `--trusted-ca-file=${f('ca.crt')}`,
      `--cert-file=${f('server.crt')}`,
      `--key-file=${f('server.key')}`,
      '--log-level=warn',
      '--logger=zap',
    ], { stdio: 'ignore' });
    const end = Date.now() + 30_000;
    for (;;) {
      const c = connectCluster(`etcds://127.0.0.1:${CLIENT_PORT}`, { caFile: f('ca.crt'), certFile: f('client.crt'), keyFile: f('client.key') });
      try {
        await c.get(Buffer.from('/probe'));
        break;
      } catch (err) {
        if (Date.now() > end) throw err;
        await new Promise((r) => setTimeout(r, 300));
      } finally {
        c.close();
      }
    }
  }, 60_000);

  afterAll(async () => {
    await sigkillAndWait(etcd);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('with the CA and a client certificate of that CA: writes and reads', async () => {
    const c = connectCluster(`etcds://127.0.0.1:${CLIENT_PORT}`, { caFile: f('ca.crt'), certFile: f('client.crt'), keyFile: f('client.key') });
    try {
      await c.put(Buffer.from('/tessera/v1/tls-test'), Buffer.from('hello'));
      expect((await c.get(Buffer.from('/tessera/v1/tls-test'))).kv?.value.toString()).toBe('hello');
    } finally {
      c.close();
    }
  });

  it('refused: no client certificate, a client certificate of another CA, a server of another CA', async () => {
    const attempts = [
      { caFile: f('ca.crt') },
      { caFile: f('ca.crt'), certFile: f('stranger.crt'), keyFile: f('stranger.key') },
      { caFile: f('other-ca.crt'), certFile: f('client.crt'), keyFile: f('client.key') },
    ];
    for (const tls of attempts) {
      const c = connectCluster(`etcds://127.0.0.1:${CLIENT_PORT}`, tls);
      try {
        await expect(c.get(Buffer.from('/tessera/v1/tls-test'))).rejects.toThrow();
      } finally {
        c.close();
      }
    }
  }, 60_000);

  it('a client key that others can read is refused before connecting', () => {
    chmodSync(f('client.key'), 0o644);
    expect(() => connectCluster(`etcds://127.0.0.1:${CLIENT_PORT}`, { caFile: f('ca.crt'), certFile: f('client.crt'), keyFile: f('client.key') })).toThrow(/readable by group or others/);
    chmodSync(f('client.key'), 0o600);
  });
});
