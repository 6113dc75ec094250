// --metrics-listen on the real kernel path: a daemon in a namespace host serves /metrics,
// /healthz and /readyz on that host's loopback; the scrape of a daemon whose workers judged
// real handshakes passes promtool check metrics (Debian's prometheus package, which
// scripts/setup.sh installs); the unix socket keeps serving the same families.

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createCluster, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, uniquePrefix } from '../../scripts/lib/netns.js';
import { createApiClient } from '../../src/api/index.js';
import { skipBecause } from '../helpers/skip.js';

skipBecause(!isRoot, 'metrics over TCP (needs root)', 'integration tests need root: run npm test as root');

describe.runIf(isRoot)('--metrics-listen', () => {
  let cluster: Cluster;
  let a: TesseraHost, b: TesseraHost;

  /** GET inside the host's namespace: its loopback is the daemon's. */
  async function get(h: TesseraHost, path: string): Promise<{ status: number; body: string }> {
    const script = `fetch('http://127.0.0.1:9464${path}').then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() })))`;
    const r = await h.exec([process.execPath, '-e', script], { timeoutMs: 10_000 });
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { status: number; body: string };
  }

  beforeAll(async () => {
    cluster = await createCluster({ prefix: uniquePrefix('ml'), hosts: ['a', 'b'], subnet: 47, trust: 'psk', daemonArgs: ['--metrics-listen', '9464'] });
    [a, b] = [cluster.host('a'), cluster.host('b')];
    b.spawnPu(['app=web'], ['busybox', 'httpd', '-f', '-p', '80', '-h', '/etc']);
    await b.waitForListener(80);
    const r = await a.runPu(['app=web'], ['timeout', '5', 'busybox', 'wget', '-q', '-O', '/dev/null', `http://${b.addr}/hostname`]);
    expect(r.code).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it('answers /healthz and /readyz (rules applied, workers bound, policy loaded)', async () => {
    expect(await get(b, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
    expect(await get(b, '/readyz')).toEqual({ status: 200, body: 'ready\n' });
    const status = await createApiClient(b.socket).status();
    expect(status.health).toEqual({ state: 'ok', problems: [] });
    expect(status.policy).toMatchObject({ source: 'built-in', revision: 'default', warnings: [] });
  });

  it('serves Prometheus text that promtool accepts, with the real handshake counted', async () => {
    const { status, body } = await get(b, '/metrics');
    expect(status).toBe(200);
    expect(body).toMatch(/^tessera_reasons_total\{queue="0",reason="[^"]+"\} [1-9]\d*$/m);
    expect(body).toMatch(/^tessera_pus 1$/m);
    expect(body).toMatch(/^tessera_ready 1$/m);
    const check = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
    expect({ status: check.status, error: check.error?.message, problems: `${check.stdout ?? ''}${check.stderr ?? ''}`.trim() }).toEqual({ status: 0, error: undefined, problems: '' });
    // The unix socket serves the same families.
    const viaSocket = await createApiClient(b.socket).metrics();
    expect(viaSocket).toMatch(/^# TYPE tessera_reasons_total counter$/m);
  });

  it('is not reachable from another host (loopback only by default)', async () => {
    const r = await a.exec(['timeout', '5', 'busybox', 'wget', '-q', '-O', '-', `http://${b.addr}:9464/healthz`]);
    expect(r.code).not.toBe(0);
  });
});
