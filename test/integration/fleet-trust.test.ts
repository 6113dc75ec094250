// The fleet's trust bundle on the real kernel path (docs/cluster.md "Trust bundle"): an etcd
// member in namespace host e, daemons with --cluster on hosts a and b. Attacks from host a:
// - a revoked host keeps connecting (a PU whose token b verified and cached before the
//   revocation, and fresh PUs): `tessera cluster revoke host-a` must make b refuse them with
//   reason `revoked`, without restarting anything;
// - a low-trust host claims a label bound to other hosts (`app=admin` bound to host-c):
//   refused with `label-not-allowed`, while its other labels still pass.

import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, createCluster, waitFor, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, uniquePrefix } from '../../scripts/lib/netns.js';
import { skipBecause } from '../helpers/skip.js';
import { sigkillAndWait, startFleetStore, type FleetStore } from '../helpers/etcd-member.js';

skipBecause(!isRoot, 'fleet trust bundle (needs root)', 'integration tests need root: run npm test as root');

const CLIENT_PORT = 23810;
const PEER_PORT = 23820;

describe.runIf(isRoot)('fleet trust bundle: revocation and labels bound to hosts, across namespace hosts', () => {
  let cluster: Cluster;
  let a: TesseraHost, b: TesseraHost;
  let dir: string;
  let store: FleetStore | undefined;
  let url: string;
  const loops: ChildProcess[] = [];
  const wget = (addr: string) => ['timeout', '5', 'busybox', 'wget', '-q', '-O', '-', `http://${addr}/hostname`];
  const op = (): string[] => ['--cluster', url, '--operator-key', join(dir, 'op.key.json')];

  async function cli(h: TesseraHost, args: string[]): Promise<Record<string, unknown>> {
    const r = await h.tessera([...args, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  }
  const trustRevisionOf = async (h: TesseraHost): Promise<number | null> => {
    const r = await h.tessera(['cluster', 'status', '--cluster', url, '--json']);
    if (r.code !== 0) return null;
    const v = JSON.parse(r.stdout) as { hosts: { host: string; trustRevision: number | null }[] };
    return v.hosts.find((x) => x.host === `host-${h.name}`)?.trustRevision ?? null;
  };
  const applied = (rev: number) => waitFor(`both daemons to apply trust revision ${rev}`, async () => (await trustRevisionOf(a)) === rev && (await trustRevisionOf(b)) === rev, 20_000, 200);
  const refusedOnB = (reason: string) =>
    waitFor(`b to refuse host-a with reason ${reason}`, async () => (await b.flows()).some((f) => f.verdict !== 'accept' && f.reason === reason && f.remoteAddr === a.addr), 20_000, 200);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-fleet-trust-'));
    cluster = await createCluster({ prefix: uniquePrefix('fl'), hosts: ['e', 'a', 'b'], subnet: 150, trust: 'ca', start: false });
    [a, b] = [cluster.host('a'), cluster.host('b')];
    store = await startFleetStore({ host: cluster.host('e'), cli: a, dir, clientPort: CLIENT_PORT, peerPort: PEER_PORT });
    url = store.url;
    writeFileSync(join(dir, 'policy.yaml'), 'version: 1\nrules:\n  - id: web-to-db\n    from: {app: web}\n    to: {app: db}\n    ports: 80\n    action: allow\n  - id: admin-to-db\n    from: {app: admin}\n    to: {app: db}\n    ports: 80\n    action: allow\n');
    const pushed = await cli(a, ['policy', 'push', ...op(), join(dir, 'policy.yaml')]);
    await Promise.all([a.startDaemon(store.daemonArgs), b.startDaemon(store.daemonArgs)]);
    b.spawnPu(['app=db'], ['busybox', 'httpd', '-f', '-p', '80', '-h', '/etc']);
    await b.waitForListener(80);
    const policyRevisionOf = async (h: TesseraHost): Promise<string> => ((await h.status()) as unknown as { policy: { revision: string } }).policy.revision;
    await waitFor('both daemons to apply the pushed policy', async () => (await policyRevisionOf(a)) === String(pushed.revision) && (await policyRevisionOf(b)) === String(pushed.revision), 20_000, 200);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(loops.map((l) => sigkillAndWait(l)));
    await store?.stop();
    await cluster?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('a revoked host is refused by its peer (reason revoked), its cached token included, and lifting it lets it back', async () => {
    const probe = await a.runPu(['app=web'], ['sh', '-c', `for i in 1 2; do if timeout 3 busybox wget -q -O /dev/null http://${b.addr}/hostname; then echo ok; else echo fail; fi; done`]);
    expect(probe).toMatchObject({ stdout: 'ok\nok\n' });
    // One PU on a that connects every 300 ms (bounded: 400 tries): its token is verified once by b, then cached.
    const loop = a.spawnPu(['app=web'], ['sh', '-c', `for i in $(seq 1 400); do if timeout 3 busybox wget -q -O /dev/null http://${b.addr}/hostname; then echo ok; else echo fail; fi; sleep 0.3; done`]);
    loops.push(loop);
    let out = '';
    loop.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor('the looping PU on a to reach b', async () => out.includes('ok'), 20_000, 100);
    expect((await a.runPu(['app=web'], wget(b.addr))).stderr).toBe('');

    const r = await cli(a, ['cluster', 'revoke', 'host-a', ...op()]);
    expect(r).toMatchObject({ host: 'host-a', revoked: true, changed: true });
    await applied(r.revision as number);
    const mark = out.length;
    await waitFor('the looping PU (cached token) to be refused', async () => out.slice(mark).includes('fail\nfail\n'), 20_000, 100);
    expect((await a.runPu(['app=web'], wget(b.addr))).stderr).toMatch(/refused|timed out/i);
    await refusedOnB('revoked');
    expect(((await b.status()) as unknown as { health: { state: string } }).health.state).toBeDefined();

    const undo = await cli(a, ['cluster', 'revoke', 'host-a', '--undo', ...op()]);
    expect(undo).toMatchObject({ changed: true });
    await applied(undo.revision as number);
    await waitFor('a fresh PU of host-a to reach b again', async () => (await a.runPu(['app=web'], wget(b.addr))).stderr === '', 20_000, 300);
    loop.kill('SIGKILL');
  }, 120_000);

  it('a label bound to other hosts is refused (label-not-allowed); the host\'s other labels still pass', async () => {
    expect((await a.runPu(['app=admin'], wget(b.addr))).stderr).toBe('');
    const r = await cli(a, ['trust', 'push', ...op(), '--bind', 'app=admin:host-c']);
    expect(r.labelBindings).toEqual([{ label: 'app=admin', hosts: ['host-c'] }]);
    await applied(r.revision as number);
    expect((await a.runPu(['app=admin'], wget(b.addr))).stderr).toMatch(/refused|timed out/i);
    await refusedOnB('label-not-allowed');
    expect((await a.runPu(['app=web'], wget(b.addr))).stderr).toBe('');

    // Binding the label to host-a too lets it claim it again.
    const again = await cli(a, ['trust', 'push', ...op(), '--bind', 'app=admin:host-a,host-c']);
    await applied(again.revision as number);
    expect((await a.runPu(['app=admin'], wget(b.addr))).stderr).toBe('');
  }, 120_000);

  it('cluster join enrolls a host with a short-lived certificate, renews it with the same key; daemons publish their entries', async () => {
    type View = { directory: { host: string; addresses: string[]; handshakeKey: boolean; expires: string | null; revoked: boolean }[] };
    const view = async (): Promise<View> => (await cli(a, ['cluster', 'status', '--cluster', url, '--operator-pub', join(dir, 'op.pub.json')])) as unknown as View;
    const both = await waitFor('both daemons in the directory', async () => {
      const v = await view();
      return v.directory.filter((d) => d.host === 'host-a' || d.host === 'host-b').length === 2 ? v : null;
    }, 20_000, 300);
    expect(both.directory.find((d) => d.host === 'host-a')!.addresses).toEqual([a.addr]);
    expect(both.directory.find((d) => d.host === 'host-b')!.addresses).toEqual([b.addr]);

    const args = ['cluster', 'join', '--cluster', url, '--ca', join(cluster.dir, 'keys', 'ca.json'), '--host', 'host-j', '--out', join(dir, 'j'), '--address', '10.213.150.99'];
    const first = await cli(a, args);
    expect(first).toMatchObject({ host: 'host-j', renewed: false, addresses: ['10.213.150.99'] });
    const days = (Date.parse(first.expires as string) - Date.now()) / 86_400_000;
    expect(Math.round(days)).toBe(7);
    const keyOf = () => (JSON.parse(readFileSync(join(dir, 'j', 'host-j.key.json'), 'utf8')) as { publicJwk: unknown }).publicJwk;
    const key = keyOf();
    const again = await cli(a, args);
    expect(again).toMatchObject({ renewed: true });
    expect(keyOf()).toEqual(key);
    expect((await view()).directory.find((d) => d.host === 'host-j')).toMatchObject({ addresses: ['10.213.150.99'], revoked: false });
    // A bad address is one clear error, nothing published.
    const bad = await a.tessera([...args.slice(0, -1), 'not-an-ip']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/not an IP address/);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  }, 60_000);

  it('a trust bundle with a bad signature written straight into etcd is refused and reported; the applied one stays', async () => {
    // The revision b applied (a status read can fail on a loaded machine: read until it answers).
    let before: number | null = null;
    await waitFor('b to report its trust revision', async () => (before = await trustRevisionOf(b)) !== null, 20_000, 200);
    // etcd's own client from inside host a (no etcdctl in Debian's etcd-server): read, forge, write.
    const etcdJs = join(REPO, 'dist', 'src', 'fleet', 'etcd.js');
    const script = `
      import { EtcdClient } from ${JSON.stringify(etcdJs)};
      const c = new EtcdClient({ endpoints: [{ host: ${JSON.stringify(cluster.host('e').addr)}, port: ${CLIENT_PORT} }] });
      const key = Buffer.from('/tessera/v1/bundles/trust');
      const { kv } = await c.get(key);
      const env = JSON.parse(kv.value.toString());
      const body = JSON.parse(Buffer.from(env.body, 'base64url').toString());
      // The attacker drops the bindings and bumps the revision; the signature is the old one.
      body.revision += 1000;
      body.payload.labelBindings = [];
      const forged = JSON.stringify({ ...env, body: Buffer.from(JSON.stringify(body)).toString('base64url') });
      const r = await c.putIfUnchanged(key, Buffer.from(forged), kv.mod_revision);
      console.log(r.succeeded ? 'written' : 'lost');
      c.close();`;
    const w = await a.exec([process.execPath, '--input-type=module', '-e', script], { timeoutMs: 20_000 });
    expect(w.stderr).toBe('');
    expect(w.stdout.trim()).toBe('written');
    await waitFor('b to report the refused trust bundle', async () => {
      const s = (await b.status()) as unknown as { health: { problems: { component: string; message: string }[] } };
      return s.health.problems.some((p) => p.component === 'fleet-bundle' && /bad-signature/.test(p.message));
    }, 20_000, 300);
    // b still reports the revision it applied before (its status key is rewritten after the refusal).
    await waitFor(`b to report trust revision ${before} still`, async () => (await trustRevisionOf(b)) === before, 10_000, 200);
    // The binding of the applied bundle still holds: host-a may claim app=admin, as bound before.
    expect((await a.runPu(['app=admin'], wget(b.addr))).stderr).toBe('');
  }, 120_000);

  it('past --cluster-max-stale without etcd, b refuses identities it has not verified before (stale-trust); known ones continue', async () => {
    await b.stopDaemon();
    await b.startDaemon([...store!.daemonArgs, '--cluster-max-stale', '3']);
    await b.waitForListener(80).catch(async () => {
      b.spawnPu(['app=db'], ['busybox', 'httpd', '-f', '-p', '80', '-h', '/etc']);
      await b.waitForListener(80);
    });
    const loop = a.spawnPu(['app=web'], ['sh', '-c', `for i in $(seq 1 400); do if timeout 3 busybox wget -q -O /dev/null http://${b.addr}/hostname; then echo ok; else echo fail; fi; sleep 0.3; done`]);
    loops.push(loop);
    let out = '';
    loop.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor('the looping PU on a to reach b', async () => out.includes('ok'), 20_000, 100);

    await store!.stop();
    await waitFor('b to pass its staleness bound', async () => {
      const st = (await b.status()) as unknown as { health: { problems: { component: string }[] } };
      return st.health.problems.some((x) => x.component === 'fleet-stale');
    }, 40_000, 300).catch(async (err: unknown) => {
      console.log(JSON.stringify((await b.status() as unknown as { health: unknown }).health), readFileSync(b.logFile, 'utf8').split('\n').slice(-30).join('\n'));
      throw err;
    });
    expect((await a.runPu(['app=web'], wget(b.addr))).stderr).toMatch(/refused|timed out/i);
    await refusedOnB('stale-trust');
    const mark = out.length;
    await waitFor('the looping PU (verified before) to keep reaching b', async () => out.slice(mark).includes('ok\nok\n'), 20_000, 100);
    expect(out.slice(mark)).not.toMatch(/fail/);
    loop.kill('SIGKILL');
  }, 120_000);
});
