// Learn mode with the cluster store: an etcd member in namespace host e, daemons with
// --cluster on hosts a and b, the pushed policy in learn mode. Each daemon publishes its
// edges under flows/<host>/<slot>; `tessera policy suggest` on a sees an edge only b
// observed (b's PU calling a resolver without Tessera), merged with a's own.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCluster, waitFor, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, uniquePrefix } from '../../scripts/lib/netns.js';
import { skipBecause } from '../helpers/skip.js';
import { startFleetStore, type FleetStore } from '../helpers/etcd-member.js';

skipBecause(!isRoot, 'learn mode with etcd (needs root)', 'integration tests need root: run npm test as root');

describe.runIf(isRoot)('learn mode with the cluster store: edges of several hosts merged', () => {
  let cluster: Cluster;
  let a: TesseraHost, b: TesseraHost, e: TesseraHost;
  let dir: string;
  let store: FleetStore | undefined;
  const wget = (addr: string, port: number) => ['timeout', '5', 'busybox', 'wget', '-q', '-O', '-', `http://${addr}:${port}/hostname`];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-learn-etcd-'));
    cluster = await createCluster({ prefix: uniquePrefix('lrn'), hosts: ['e', 'a', 'b'], subnet: 161, trust: 'ca', start: false });
    e = cluster.host('e');
    [a, b] = [cluster.host('a'), cluster.host('b')];
    store = await startFleetStore({ host: e, cli: a, dir, clientPort: 23830, peerPort: 23840 });
    const file = join(dir, 'learn.yaml');
    writeFileSync(file, 'version: 1\nmode: learn\nrules: []\n');
    const push = await a.tessera(['policy', 'push', '--cluster', store.url, '--operator-key', store.operatorKey, '--json', file]);
    expect(push.code, push.stderr).toBe(0);
    await Promise.all([a.startDaemon(store.daemonArgs), b.startDaemon(store.daemonArgs)]);
    await waitFor('both daemons in learn mode', async () => (await a.tessera(['policy', 'show'])).stdout.includes('mode: learn') && (await b.tessera(['policy', 'show'])).stdout.includes('mode: learn'), 20_000);
    b.spawnPu(['app=db'], ['busybox', 'httpd', '-f', '-p', '5432', '-h', '/etc']);
    // A resolver without Tessera on e, reached by address.
    e.spawn(['busybox', 'httpd', '-f', '-p', '53', '-h', '/etc']);
    await b.waitForListener(5432);
  }, 120_000);

  afterAll(async () => {
    await store?.stop();
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
