// The fleet end to end on the real kernel path: an etcd member in namespace host e, tessera
// daemons with --cluster on hosts a and b. `tessera policy push` (run on host a) reaches both
// daemons, which enforce it on real connections; `tessera cluster status` shows them in sync;
// with etcd stopped, a restarted daemon enforces the last pushed policy from disk.

import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCluster, waitFor, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, uniquePrefix } from '../../scripts/lib/netns.js';
import { skipBecause } from '../helpers/skip.js';
import { ETCD_BIN } from './fleet-etcd.js';

skipBecause(!isRoot, 'fleet end to end (needs root)', 'integration tests need root: run npm test as root');

describe.runIf(isRoot)('fleet end to end: policy push through etcd to namespace hosts', () => {
  let cluster: Cluster;
  let a: TesseraHost, b: TesseraHost;
  let dir: string;
  let etcd: ChildProcess | null = null;
  let url: string;
  const wget = (addr: string) => ['timeout', '5', 'busybox', 'wget', '-q', '-O', '-', `http://${addr}/hostname`];

  async function push(text: string, name: string, from: TesseraHost = a): Promise<number> {
    const file = join(dir, name);
    writeFileSync(file, text);
    const r = await from.tessera(['policy', 'push', '--cluster', url, '--operator-key', join(dir, 'op.key.json'), '--json', file]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return (JSON.parse(r.stdout) as { revision: number }).revision;
  }

  const revisionOf = async (h: TesseraHost): Promise<string> => ((await h.status()) as unknown as { policy: { revision: string } }).policy.revision;
  const bothApply = (rev: number) => waitFor(`both daemons to apply policy revision ${rev}`, async () => (await revisionOf(a)) === String(rev) && (await revisionOf(b)) === String(rev), 20_000);

  async function stopEtcd(): Promise<void> {
    const p = etcd;
    etcd = null;
    if (!p || p.exitCode !== null || p.signalCode !== null || p.pid === undefined) return;
    const gone = new Promise((r) => p.once('exit', r));
    process.kill(p.pid, 'SIGKILL');
    await gone;
  }

  beforeAll(async () => {
    if (!ETCD_BIN) throw new Error('etcd is not installed (scripts/setup.sh installs etcd-server)');
    dir = mkdtempSync(join(tmpdir(), 'tessera-fleet-e2e-'));
    cluster = await createCluster({ prefix: uniquePrefix('fl'), hosts: ['e', 'a', 'b'], subnet: 57, trust: 'ca', start: false });
    const e = cluster.host('e');
    [a, b] = [cluster.host('a'), cluster.host('b')];
    url = `etcd://${e.addr}:23797`;
    etcd = e.spawn([
      ETCD_BIN,
      '--name=e',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=http://${e.addr}:23797`,
      `--advertise-client-urls=http://${e.addr}:23797`,
      `--listen-peer-urls=http://${e.addr}:23798`,
      `--initial-advertise-peer-urls=http://${e.addr}:23798`,
      `--initial-cluster=e=http://${e.addr}:23798`,
      '--log-level=warn',
      '--logger=zap',
    ]);
    const key = await a.tessera(['cluster', 'keygen', '--out', join(dir, 'op')]);
    expect(key.code).toBe(0);
    await waitFor('etcd in host e', async () => (await a.tessera(['cluster', 'status', '--cluster', url, '--json'])).code === 0, 30_000, 300);
    const fleetArgs = ['--cluster', url, '--operator-pub', join(dir, 'op.pub.json')];
    await Promise.all([a.startDaemon(fleetArgs), b.startDaemon(fleetArgs)]);
    b.spawnPu(['app=db'], ['busybox', 'httpd', '-f', '-p', '80', '-h', '/etc']);
    await b.waitForListener(80);
  }, 120_000);

  afterAll(async () => {
    await stopEtcd().catch(() => undefined);
    await cluster?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('a push reaches both daemons, which enforce it; cluster status shows them in sync', async () => {
    const allow = await push('version: 1\nrules:\n  - id: web-to-db\n    from: {app: web}\n    to: {app: db}\n    ports: 80\n    action: allow\n', 'allow.yaml');
    await bothApply(allow);
    expect((await a.runPu(['app=web'], wget(b.addr))).stderr).toBe('');
    expect((await a.runPu(['app=other'], wget(b.addr))).stderr).toMatch(/refused/i);
    const view = await waitFor(
      'both hosts in sync in cluster status',
      async () => {
        const r = await a.tessera(['cluster', 'status', '--cluster', url, '--operator-pub', join(dir, 'op.pub.json'), '--json']);
        const v = JSON.parse(r.stdout) as { stored: { revision: number; verified: boolean }; hosts: { host: string; policyRevision: number; behind: boolean }[] };
        return v.hosts.filter((h) => h.policyRevision === allow && h.behind === false).length === 2 ? v : null;
      },
      20_000,
      300,
    );
    expect(view.stored).toMatchObject({ revision: allow, verified: true });
    expect(view.hosts.map((h) => h.host).sort()).toEqual(['host-a', 'host-b']);
  });

  it('a policy that does not compile never reaches etcd', async () => {
    const before = await revisionOf(b);
    writeFileSync(join(dir, 'bad.yaml'), 'version: 1\nrules:\n  - id: x\n    acton: allow\n');
    const r = await a.tessera(['policy', 'push', '--cluster', url, '--operator-key', join(dir, 'op.key.json'), join(dir, 'bad.yaml')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/unknown key "acton"/);
    expect(r.stderr.split('\n').filter((l) => l.includes('    at ')).length).toBe(0);
    expect(await revisionOf(b)).toBe(before);
  });

  it('a host partitioned from etcd keeps its policy, says so, and converges when healed', async () => {
    const e = cluster.host('e');
    // Both directions: with only its output dropped, a would still receive the watch events.
    const out = ['OUTPUT', '-d', e.addr, '-p', 'tcp', '--dport', '23797', '-j', 'DROP'];
    const inp = ['INPUT', '-s', e.addr, '-p', 'tcp', '--sport', '23797', '-j', 'DROP'];
    const heal = async (): Promise<void> => {
      await a.exec(['iptables', '-D', ...out]);
      await a.exec(['iptables', '-D', ...inp]);
    };
    const before = await revisionOf(a);
    expect((await a.exec(['iptables', '-I', ...out])).code).toBe(0);
    expect((await a.exec(['iptables', '-I', ...inp])).code).toBe(0);
    let healed = false;
    try {
      const next = await push('version: 1\nrules:\n  - id: web-to-db\n    from: {app: web}\n    to: {app: db}\n    ports: [80, 8080]\n    action: allow\n', 'allow2.yaml', b);
      await waitFor(`b to apply ${next}`, async () => (await revisionOf(b)) === String(next), 20_000);
      expect(await revisionOf(a)).toBe(before);
      await waitFor('a to report etcd away in its health', async () => ((await a.status()) as unknown as { health: { problems: { component: string }[] } }).health.problems.some((p) => p.component === 'fleet'), 40_000, 500);
      expect(await revisionOf(a)).toBe(before);
      await heal();
      healed = true;
      await waitFor(`a to converge on ${next} after the partition healed`, async () => (await revisionOf(a)) === String(next), 60_000, 500);
    } finally {
      if (!healed) await heal();
    }
  }, 150_000);

  it('etcd stopped: a restarted daemon enforces the last pushed policy from disk', async () => {
    const deny = await push('version: 1\nrules: []\n', 'deny.yaml');
    await bothApply(deny);
    expect((await a.runPu(['app=web'], wget(b.addr))).stderr).toMatch(/refused/i);
    await stopEtcd();
    await b.stopDaemon();
    await b.startDaemon(['--cluster', url, '--operator-pub', join(dir, 'op.pub.json')]);
    // Not the built-in default (same user labels, which would allow root to root): the pushed one.
    expect(await revisionOf(b)).toBe(String(deny));
    b.spawnPu(['app=db'], ['busybox', 'httpd', '-f', '-p', '80', '-h', '/etc']);
    await b.waitForListener(80);
    expect((await a.runPu(['app=web'], wget(b.addr))).stderr).toMatch(/refused/i);
    await waitFor('b to report etcd away in its health', async () => ((await b.status()) as unknown as { health: { problems: { component: string }[] } }).health.problems.some((p) => p.component === 'fleet'), 15_000);
  });
});
