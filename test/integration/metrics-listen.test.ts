// --metrics-listen on the real kernel path: a daemon in a namespace host serves /metrics,
// /healthz and /readyz on that host's loopback; the scrape of a daemon whose workers judged
// real handshakes passes promtool check metrics (Debian's prometheus package, which
// scripts/setup.sh installs); the unix socket keeps serving the same families.

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCluster, waitFor, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, killAndWait, run, uniquePrefix } from '../../scripts/lib/netns.js';
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
    expect(body).toMatch(/^tessera_verdicts_total\{queue="0",verdict="accept"\} [1-9]\d*$/m);
    expect(body).toMatch(/^# TYPE tessera_reasons_total counter$/m);
    expect(body).toMatch(/^tessera_pus 1$/m);
    expect(body).toMatch(/^tessera_ready 1$/m);
    const check = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
    expect({ status: check.status, error: check.error?.message, problems: `${check.stdout ?? ''}${check.stderr ?? ''}`.trim() }).toEqual({ status: 0, error: undefined, problems: '' });
    // The unix socket serves the same families.
    const viaSocket = await createApiClient(b.socket).metrics();
    expect(viaSocket).toMatch(/^# TYPE tessera_reasons_total counter$/m);
  });

  it('a failing rule transaction makes health degraded and /readyz 503 until a later one succeeds', async () => {
    // iptables-restore that fails while a marker file exists (as lifecycle.test.ts injects it).
    const dir = mkdtempSync(join(tmpdir(), 'tessera-ml-'));
    const fail = join(dir, 'fail');
    try {
      const real = (await run(['sh', '-c', 'command -v iptables-restore'])).stdout.trim();
      expect(real).not.toBe('');
      writeFileSync(join(dir, 'iptables-restore'), `#!/bin/sh\nif [ -e ${fail} ]; then echo "iptables-restore: injected failure" >&2; exit 1; fi\nexec ${real} "$@"\n`, { mode: 0o755 });
      await b.stopDaemon();
      await b.startDaemon([], { PATH: `${dir}:${process.env.PATH ?? ''}` });
      expect((await get(b, '/readyz')).status).toBe(200);
      // A PU that starts listening once transactions fail: its new port is wanted and cannot
      // be applied. (A PU refused at creation would not do: it is removed, and the kernel again
      // matches what is wanted.)
      const pu = b.spawnPu(['app=other'], ['sh', '-c', 'sleep 2; exec busybox httpd -f -p 8088 -h /etc']);
      try {
        await waitFor('the late listener\'s PU', async () => (await createApiClient(b.socket).status()).pus.some((p) => p.labels.includes('app=other')));
        writeFileSync(fail, '');
        const degraded = await waitFor('health degraded', async () => {
          const h = (await createApiClient(b.socket).status()).health;
          return h.state === 'degraded' ? h : null;
        }, 20_000).catch(async (err: unknown) => {
          console.error(JSON.stringify((await createApiClient(b.socket).status()).rules), readFileSync(b.logFile, 'utf8').slice(-3000));
          throw err;
        });
        expect(degraded.problems).toEqual([{ component: 'rules', message: expect.stringContaining('injected failure'), since: expect.any(String) }]);
        const notReady = await get(b, '/readyz');
        expect(notReady.status).toBe(503);
        expect(JSON.parse(notReady.body)).toEqual({ ready: false, reasons: ['host rules not applied'] });
        expect((await get(b, '/healthz')).status).toBe(200); // the process is up all along
        rmSync(fail);
        await waitFor('health ok again', async () => (await createApiClient(b.socket).status()).health.state === 'ok', 20_000);
        expect((await get(b, '/readyz')).status).toBe(200);
      } finally {
        await killAndWait(pu, 2000);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is not reachable from another host (loopback only by default)', async () => {
    const r = await a.exec(['timeout', '5', 'busybox', 'wget', '-q', '-O', '-', `http://${b.addr}:9464/healthz`]);
    expect(r.code).not.toBe(0);
  });
});
