// The fleet against a REAL three-member etcd (Debian's etcd-server) on loopback ports
// 23790-23792 (peers 23800-23802): signed pushes reach followers, the leader dies mid-push,
// a member freezes (half-open stream), all of etcd stops (fail-static, restart from disk),
// compaction forces a relist, and a forged bundle written straight into etcd is refused.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../scripts/lib/cluster.js';
import { signBundle } from '../../src/fleet/bundle.js';
import { createBundleCache } from '../../src/fleet/cache.js';
import { EtcdClient } from '../../src/fleet/etcd.js';
import { Follower, type AppliedBundle, type Refusal } from '../../src/fleet/follower.js';
import { createLayout } from '../../src/fleet/layout.js';
import { createOperatorKey } from '../../src/fleet/operator-key.js';
import { pushBundle } from '../../src/fleet/push.js';
import { readHostStatuses, StatusPublisher } from '../../src/fleet/status.js';
import { startFleetLink } from '../../src/fleet/link.js';
import { checkHostEntry, readHostEntries } from '../../src/fleet/hosts.js';
import { createCa, createHostKey, issueHostCertificate } from '../../src/identity/index.js';
import { createPublicKey } from 'node:crypto';
import { readClusterView, renderClusterView, writeOperatorKeyPair } from '../../src/fleet/operator.js';

import { startEtcdCluster, type EtcdCluster } from './fleet-etcd.js';

const layout = createLayout('/tessera-it/v1/');
const op = createOperatorKey();
const policy = (n: number) => ({ text: `# push ${n}\nversion: 1\n`, source: `push-${n}.yaml` });

interface Harness {
  follower: Follower;
  client: EtcdClient;
  applied: AppliedBundle[];
  refused: Refusal[];
}

describe('fleet on a real three-member etcd', () => {
  let etcd: EtcdCluster;
  let dir: string;
  let admin: EtcdClient;
  const harnesses: Harness[] = [];

  function follow(name: string, endpoints = etcd.endpoints): Harness {
    const client = new EtcdClient({ endpoints, requestTimeoutMs: 2000 });
    const h: Harness = { client, applied: [], refused: [], follower: null as unknown as Follower };
    h.follower = new Follower({
      client,
      layout,
      trusted: [op],
      cache: createBundleCache(join(dir, name)),
      onBundle: (b) => h.applied.push(b),
      onRefused: (r) => h.refused.push(r),
      backoff: { baseMs: 100, maxMs: 1500 },
      progressIntervalMs: 400,
      progressTimeoutMs: 2000,
    });
    h.follower.start();
    harnesses.push(h);
    return h;
  }

  async function stopFollower(h: Harness): Promise<void> {
    await h.follower.stop();
    h.client.close();
    harnesses.splice(harnesses.indexOf(h), 1);
  }

  const policyRevision = (h: Harness): number => h.follower.status().applied.policy?.revision ?? 0;
  const waitApplied = (h: Harness, revision: number, what: string) =>
    waitFor(`${what}: policy revision ${revision} applied (has ${policyRevision(h)}; ${JSON.stringify(h.follower.status().lastError)})`, async () => policyRevision(h) === revision, 30_000);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-fleet-it-'));
    etcd = await startEtcdCluster({ basePort: 23790, name: 'fleet-it' });
    admin = new EtcdClient({ endpoints: etcd.endpoints, requestTimeoutMs: 2000 });
  }, 60_000);

  afterAll(async () => {
    for (const h of [...harnesses]) await stopFollower(h).catch(() => undefined);
    admin?.close();
    await etcd?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a push reaches every follower, which keeps it on disk', async () => {
    const a = follow('a');
    const b = follow('b');
    const r = await pushBundle(admin, layout, op, 'policy', policy(1));
    await waitApplied(a, r.revision, 'follower a');
    await waitApplied(b, r.revision, 'follower b');
    expect(a.applied.at(-1)?.bundle.payload).toEqual(policy(1));
    expect(a.applied.at(-1)?.source).toBe('etcd');
    expect(createBundleCache(join(dir, 'a')).loadBundle('policy')).not.toBeNull();
    expect(a.refused).toEqual([]);
  });

  it('the leader killed in the middle of a push: the push completes elsewhere and followers converge', async () => {
    const a = harnesses[0]!;
    const leader = await etcd.leaderIndex();
    expect(leader).toBeGreaterThanOrEqual(0);
    const pushing = pushBundle(admin, layout, op, 'policy', policy(2));
    await etcd.kill(leader);
    let revision: number;
    try {
      revision = (await pushing).revision;
    } catch {
      // The write was in flight on the dead leader: the operator pushes again.
      revision = (await waitFor('a push after the leader died', async () => pushBundle(admin, layout, op, 'policy', policy(2)).catch(() => null), 30_000)).revision;
    }
    await waitApplied(a, revision, 'follower a after the leader died');
    for (const h of harnesses) await waitApplied(h, revision, 'every follower');
    etcd.restart(leader);
    await etcd.waitHealthy();
  });

  it('a member that freezes (half-open stream) is left for another; the next push still arrives', async () => {
    const a = harnesses[0]!;
    const frozen = etcd.endpoints.findIndex((e) => `${e.host}:${e.port}` === a.client.current());
    expect(frozen).toBeGreaterThanOrEqual(0);
    const before = a.follower.status().counters;
    etcd.pause(frozen);
    try {
      const others = new EtcdClient({ endpoints: etcd.endpoints.filter((_, i) => i !== frozen), requestTimeoutMs: 3000 });
      try {
        const r = await waitFor('a push while one member is frozen', async () => pushBundle(others, layout, op, 'policy', policy(3)).catch(() => null), 30_000);
        await waitApplied(a, r.revision, 'follower a while its member is frozen');
      } finally {
        others.close();
      }
      const after = a.follower.status().counters;
      expect(after.halfOpen).toBeGreaterThan(before.halfOpen);
    } finally {
      etcd.resume(frozen);
    }
    await etcd.waitHealthy();
  });

  it('a bundle with a bad signature written straight into etcd is refused and reported; the applied one stays', async () => {
    const a = harnesses[0]!;
    const applied = policyRevision(a);
    const good = JSON.parse(signBundle(op, 'policy', applied + 100, policy(66))) as Record<string, string>;
    const body = JSON.parse(Buffer.from(good.body!, 'base64url').toString()) as { payload: { text: string } };
    body.payload.text = '# forged: allow everything\nversion: 1\n';
    const forged = JSON.stringify({ ...good, body: Buffer.from(JSON.stringify(body)).toString('base64url') });
    const refusedBefore = a.follower.status().counters.refused;
    await admin.put(Buffer.from(layout.bundle('policy')), Buffer.from(forged));
    await waitFor('the forged bundle refused', async () => a.follower.status().counters.refused > refusedBefore, 30_000);
    expect(a.follower.status().lastRefusal).toMatchObject({ kind: 'policy', reason: 'bad-signature', source: 'etcd' });
    expect(a.refused.at(-1)?.reason).toBe('bad-signature');
    expect(policyRevision(a)).toBe(applied);
    expect(a.applied.some((b) => (b.bundle.payload as { text: string }).text.includes('forged'))).toBe(false);
    // The disk copy is still the last verified bundle, not the forged value.
    expect(createBundleCache(join(dir, 'a')).loadBundle('policy')).not.toContain(body.payload.text.slice(0, 10));
    // The operator's next push overwrites the forged value and is applied.
    const r = await pushBundle(admin, layout, op, 'policy', policy(4));
    expect(r.replacedUnverified).toBe(true);
    await waitApplied(a, r.revision, 'follower a after the forged value');
  });

  it('compaction past a follower\'s revision: the restarted follower relists and applies the newest bundle', async () => {
    const b = harnesses[1]!;
    const resumeAt = b.follower.status().etcdRevision;
    await stopFollower(b);
    let last = 0;
    for (let i = 5; i < 8; i++) last = (await pushBundle(admin, layout, op, 'policy', policy(i))).revision;
    const head = Number((await admin.status()).header.revision);
    expect(head).toBeGreaterThan(resumeAt + 1);
    await admin.compact(head);
    const b2 = follow('b');
    // It starts with the disk copy, resumes from its saved revision, is told "compacted", relists.
    expect(b2.applied[0]?.source).toBe('disk');
    await waitApplied(b2, last, 'follower b after compaction');
    const s = b2.follower.status();
    expect(s.counters.compactions).toBeGreaterThanOrEqual(1);
    expect(s.counters.lists).toBeGreaterThanOrEqual(1);
  });

  it('publishes the host status under a lease; a clean stop removes it', async () => {
    const pub = new StatusPublisher({
      client: admin,
      layout,
      host: 'host-a',
      ttlSeconds: 5,
      status: () => ({ version: 'test', health: 'ok', problems: [], policyRevision: policyRevision(harnesses[0]!), trustRevision: null, etcdRevision: 0, staleSeconds: 0 }),
    });
    pub.start();
    const seen = await waitFor('the status key', async () => (await readHostStatuses(admin, layout)).statuses.find((s) => s.host === 'host-a'), 15_000);
    expect(seen.policyRevision).toBe(policyRevision(harnesses[0]!));
    expect(seen.health).toBe('ok');
    const { kv } = await admin.get(Buffer.from(layout.statusOf('host-a')));
    expect(kv?.lease).not.toBe('0');
    // One key, not a range: absent while keys after it exist (an empty range_end on the wire meant "from here on").
    expect((await admin.get(Buffer.from(layout.bundle('trust')))).kv).toBeNull();
    await pub.stop(true);
    expect((await readHostStatuses(admin, layout)).statuses.find((s) => s.host === 'host-a')).toBeUndefined();
  });

  it('a daemon link applies pushed policies through its callback and shows up in the cluster view as in sync', async () => {
    const keys = writeOperatorKeyPair(join(dir, 'op2'));
    const ca = await createCa('fleet-it-ca');
    const hostKey = await createHostKey();
    const certificate = await issueHostCertificate(ca, { host: 'host-link', hostPublicJwk: hostKey.publicJwk, validityDays: 1 });
    // A second operator key: the link trusts only it, so bundles signed by `op` are refused first.
    const appliedNames: string[] = [];
    const link = startFleetLink({
      url: etcd.url,
      operatorPubFiles: [keys.pubFile],
      cacheDir: join(dir, 'link'),
      hostId: 'host-link',
      certificate,
      prefix: layout.prefix,
      version: 'test',
      validatePolicy: (text) => (text.includes('does-not-compile') ? 'line 1: does not compile' : null),
      applyPolicy: (_text, name) => appliedNames.push(name),
      health: () => ({ state: 'ok', problems: [] }),
      log: () => undefined,
      progressIntervalMs: 400,
      progressTimeoutMs: 2000,
      statusTtlSeconds: 5,
    });
    try {
      await waitFor('the link to refuse the bundle signed by another key', async () => link.status().lastRefusal?.reason === 'unknown-key', 15_000);
      const { pushPolicy } = await import('../../src/fleet/operator.js');
      const bad = pushPolicy(admin, { keyFile: keys.keyFile, text: 'does-not-compile', source: 'x.yaml', prefix: layout.prefix, validate: (t) => (t.includes('does-not') ? 'nope' : null) });
      await expect(bad).rejects.toThrow(/policy file refused/);
      const r = await pushPolicy(admin, { keyFile: keys.keyFile, text: 'version: 1\n', source: 'good.yaml', prefix: layout.prefix, validate: () => null });
      await waitFor('the link to apply the push', async () => link.status().applied.policy?.revision === r.revision, 15_000);
      expect(appliedNames.at(-1)).toMatch(new RegExp(`^etcd policy revision ${r.revision} \\(good\\.yaml`));
      const view = await waitFor('the host in sync in the cluster view', async () => {
        const v = await readClusterView(admin, { prefix: layout.prefix, trusted: [(await import('../../src/fleet/files.js')).readOperatorPublicFile(keys.pubFile)] });
        const h = v.hosts.find((x) => x.host === 'host-link');
        return h && h.behind === false && h.health === 'ok' ? v : null;
      }, 15_000);
      expect(view.stored).toMatchObject({ revision: r.revision, verified: true });
      // The host directory: the entry verifies against the CA, and not against another CA.
      const entries = await waitFor('the host directory entry', async () => ((await readHostEntries(admin, layout)).length > 0 ? readHostEntries(admin, layout) : null), 15_000);
      const caKey = createPublicKey({ key: { ...ca.publicJwk }, format: 'jwk' });
      const otherCa = createPublicKey({ key: { ...(await createCa('other')).publicJwk }, format: 'jwk' });
      expect(checkHostEntry(entries[0]!.key, entries[0]!.value, layout, [caKey])).toMatchObject({ ok: true, entry: { host: 'host-link', certificate } });
      expect(checkHostEntry(entries[0]!.key, entries[0]!.value, layout, [otherCa])).toMatchObject({ ok: false });
      expect(renderClusterView(view)).toMatch(/host-link\s+\d+\s+in sync\s+ok/);
    } finally {
      await link.stop();
    }
    expect((await readHostStatuses(admin, layout)).statuses.find((s) => s.host === 'host-link')).toBeUndefined();
    // Back to the first operator's key for the following tests.
    // (after a key rotation back and forth, a push still goes above every applied revision)
    const back = await pushBundle(admin, layout, op, 'policy', policy(8));
    for (const h of harnesses) await waitApplied(h, back.revision, 'every follower after the other key');
    expect(harnesses[0]!.refused.some((r) => r.reason === 'unknown-key')).toBe(true);
  });

  it('all of etcd stopped: followers keep the last bundle; a restarted follower starts from disk; etcd back, a push converges', async () => {
    const a = harnesses[0]!;
    const kept = policyRevision(a);
    expect(kept).toBeGreaterThan(0);
    for (let i = 0; i < etcd.members.length; i++) await etcd.kill(i);
    await waitFor('follower a to notice etcd is gone', async () => a.follower.status().state === 'disconnected', 30_000);
    expect(policyRevision(a)).toBe(kept);
    const c = follow('a-restarted-' + Date.now());
    expect(c.applied).toEqual([]); // a fresh cache dir: nothing to start from
    await stopFollower(c);
    // The same host restarting (same cache dir) enforces its last verified bundle at once.
    await stopFollower(a);
    const a2 = follow('a');
    expect(a2.applied.map((x) => [x.source, x.bundle.revision])).toEqual([['disk', kept]]);
    expect(a2.follower.status().applied.policy?.source).toBe('disk');
    for (let i = 0; i < etcd.members.length; i++) etcd.restart(i);
    await etcd.waitHealthy();
    const r = await waitFor('a push after etcd is back', async () => pushBundle(admin, layout, op, 'policy', policy(9)).catch(() => null), 30_000);
    await waitApplied(a2, r.revision, 'the restarted follower after etcd came back');
    for (const h of harnesses) await waitApplied(h, r.revision, 'every follower after etcd came back');
    expect(a2.refused).toEqual([]);
  });
});
