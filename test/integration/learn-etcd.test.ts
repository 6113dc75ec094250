// Learn mode with the cluster store: an etcd member in namespace host e, daemons with
// --cluster on hosts a and b, the pushed policy in learn mode. Each daemon publishes its
// edges under flows/<host>/<slot>; `tessera policy suggest` on a sees an edge only b
// observed (b's PU calling a resolver without Tessera), merged with a's own.

import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCluster, waitFor, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, uniquePrefix } from '../../scripts/lib/netns.js';
import { skipBecause } from '../helpers/skip.js';
import { ETCD_BIN } from './fleet-etcd.js';

skipBecause(!isRoot, 'learn mode with etcd (needs root)', 'integration tests need root: run npm test as root');

describe.runIf(isRoot)('learn mode with the cluster store: edges of several hosts merged', () => {
  let cluster: Cluster;
  let a: TesseraHost, b: TesseraHost, e: TesseraHost;
  let dir: string;
  let etcd: ChildProcess | null = null;
  let url: string;
  const wget = (addr: string, port: number) => ['timeout', '5', 'busybox', 'wget', '-q', '-O', '-', `http://${addr}:${port}/hostname`];

  beforeAll(async () => {
    if (!ETCD_BIN) throw new Error('etcd is not installed (scripts/setup.sh installs etcd-server)');
    dir = mkdtempSync(join(tmpdir(), 'tessera-learn-etcd-'));
    cluster = await createCluster({ prefix: uniquePrefix('lrn'), hosts: ['e', 'a', 'b'], subnet: 161, trust: 'ca', start: false });
    e = cluster.host('e');
    [a, b] = [cluster.host('a'), cluster.host('b')];
    url = `etcd://${e.addr}:23830`;
    etcd = e.spawn([
      ETCD_BIN,
      '--name=e',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=http://${e.addr}:23830`,
      `--advertise-client-urls=http://${e.addr}:23830`,
      `--listen-peer-urls=http://${e.addr}:23840`,
      `--initial-advertise-peer-urls=http://${e.addr}:23840`,
      `--initial-cluster=e=http://${e.addr}:23840`,
      '--log-level=warn',
      '--logger=zap',
    ]);
    expect((await a.tessera(['cluster', 'keygen', '--out', join(dir, 'op')])).code).toBe(0);
    await waitFor('etcd in host e', async () => (await a.tessera(['cluster', 'status', '--cluster', url, '--json'])).code === 0, 30_000, 300);
    const file = join(dir, 'learn.yaml');
    writeFileSync(file, 'version: 1\nmode: learn\nrules: []\n');
    const push = await a.tessera(['policy', 'push', '--cluster', url, '--operator-key', join(dir, 'op.key.json'), '--json', file]);
    expect(push.code, push.stderr).toBe(0);
    const fleetArgs = ['--cluster', url, '--operator-pub', join(dir, 'op.pub.json')];
    await Promise.all([a.startDaemon(fleetArgs), b.startDaemon(fleetArgs)]);
    await waitFor('both daemons in learn mode', async () => (await a.tessera(['policy', 'show'])).stdout.includes('mode: learn') && (await b.tessera(['policy', 'show'])).stdout.includes('mode: learn'), 20_000);
    b.spawnPu(['app=db'], ['busybox', 'httpd', '-f', '-p', '5432', '-h', '/etc']);
    // A resolver without Tessera on e, reached by address.
    e.spawn(['busybox', 'httpd', '-f', '-p', '53', '-h', '/etc']);
    await b.waitForListener(5432);
  }, 120_000);

  afterAll(async () => {
    const p = etcd;
    if (p && p.exitCode === null && p.signalCode === null && p.pid !== undefined) {
      const gone = new Promise((r) => p.once('exit', r));
      process.kill(p.pid, 'SIGKILL');
      await gone;
    }
    await cluster?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('suggest on a includes the edge only b observed, and the shared one once', async () => {
    expect((await a.runPu(['app=web'], wget(b.addr, 5432))).stderr).toBe('');
    expect((await b.runPu(['app=db-client'], wget(e.addr, 53))).stderr).toBe('');
    // b hands its edges over within 5 s and publishes within 30 s more.
    const s = await waitFor(
      'b’s edge in a’s suggestion',
      async () => {
        const r = await a.tessera(['policy', 'suggest', '--json']);
        if (r.code !== 0) throw new Error(r.stderr);
        const j = JSON.parse(r.stdout) as { rules: Array<{ id: string; connections: number }> };
        return j.rules.some((x) => x.id === 'db-client-to-net-53') && j.rules.some((x) => x.id === 'web-to-db') ? j : null;
      },
      60_000,
      1000,
    );
    // Seen by both hosts (a's egress, b's ingress): one connection, not two.
    expect(s.rules.find((x) => x.id === 'web-to-db')!.connections).toBe(1);
    const text = JSON.parse((await a.tessera(['policy', 'suggest', '--json'])).stdout).text as string;
    expect(text).toContain(`toNetworks: [${e.addr}]`);
  });
});
