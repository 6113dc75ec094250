// `npm run demo -- --cluster`: the walkthrough on a fleet (docs/cluster.md). Six namespace
// hosts the demo creates: e1, e2, e3 run a three-member etcd (Debian's etcd-server; setup.sh
// installs it), a, b, c run `tessera daemon --cluster`. Then: a policy push every host applies
// (shown converging with `tessera cluster status`), a host revoked and refused, all of etcd
// stopped with enforcement unchanged, etcd back and a new push applied. Ends with a one-line
// verdict; everything is torn down at the end, also on failure or Ctrl-C.

import { type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCluster, waitFor, type Cluster, type FlowJson, type TesseraHost } from './lib/cluster.js';
import { isRoot, uniquePrefix } from './lib/netns.js';

const ETCD = ['/usr/bin/etcd', '/usr/local/bin/etcd'].find((p) => existsSync(p)) ?? null;
const CLIENT_PORT = 23811;
const PEER_PORT = 23821;
const tty = process.stdout.isTTY;
const bold = (s: string): string => (tty ? `\x1b[1m${s}\x1b[0m` : s);
const green = (s: string): string => (tty ? `\x1b[32m${s}\x1b[0m` : s);
const red = (s: string): string => (tty ? `\x1b[31m${s}\x1b[0m` : s);
const say = (line = ''): void => void process.stdout.write(line + '\n');

interface Fleet {
  cluster: Cluster;
  dir: string;
  etcd: Map<string, ChildProcess>;
  url: string;
}

function startEtcd(f: Fleet, name: string): void {
  const members = ['e1', 'e2', 'e3'].map((n) => `${n}=http://${f.cluster.host(n).addr}:${PEER_PORT}`).join(',');
  const h = f.cluster.host(name);
  f.etcd.set(name, h.spawn([
    ETCD!,
    `--name=${name}`,
    `--data-dir=${join(f.dir, `etcd-${name}`)}`,
    `--listen-client-urls=http://${h.addr}:${CLIENT_PORT}`,
    `--advertise-client-urls=http://${h.addr}:${CLIENT_PORT}`,
    `--listen-peer-urls=http://${h.addr}:${PEER_PORT}`,
    `--initial-advertise-peer-urls=http://${h.addr}:${PEER_PORT}`,
    `--initial-cluster=${members}`,
    '--initial-cluster-state=new',
    '--log-level=error',
    '--logger=zap',
  ]));
}

async function stopEtcd(f: Fleet): Promise<void> {
  for (const [name, p] of f.etcd) {
    f.etcd.delete(name);
    if (p.pid === undefined || p.exitCode !== null || p.signalCode !== null) continue;
    const gone = new Promise((r) => p.once('exit', r));
    process.kill(p.pid, 'SIGKILL');
    await gone;
  }
}

async function tessera(h: TesseraHost, args: string[], show = true): Promise<string> {
  if (show) say(`  [host ${h.name}] $ tessera ${args.join(' ')}`);
  const r = await h.tessera(args);
  if (r.code !== 0) throw new Error(`tessera ${args[0]} ${args[1] ?? ''} on host ${h.name}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout.trim();
}

/** Connect from `from` with `labels` to the web server on b; compare with what the walkthrough says. */
async function attempt(title: string, from: TesseraHost, labels: string[], b: TesseraHost, expect: 'connected' | 'refused', reason?: string): Promise<boolean> {
  say(bold(`\n▶ ${title}`));
  say(`  [host ${from.name}] $ tessera run ${labels.map((l) => `--label ${l}`).join(' ')} -- busybox wget -q -O - http://${b.addr}/hostname`);
  const before = (await b.flows()).length;
  const r = await from.runPu(labels, ['timeout', '5', 'busybox', 'wget', '-q', '-O', '-', `http://${b.addr}/hostname`]);
  const got = r.code === 0 ? 'connected' : 'refused';
  let flow: FlowJson | undefined;
  if (reason) {
    flow = await waitFor('the flow record on b', async () => (await b.flows()).slice(before).find((x) => x.reason === reason), 5000).catch(() => undefined);
  } else {
    flow = (await b.flows()).slice(before).at(-1);
  }
  say(`  → ${got === 'connected' ? green('connected') : red('refused')}${flow ? `; flow record on host b: ${flow.verdict.toUpperCase()} (${flow.reason}) from ${flow.remoteHost ?? flow.remoteAddr ?? '?'}` : ''}`);
  const pass = got === expect && (reason === undefined || flow !== undefined);
  say(`  ${pass ? green('✓ as expected') : red(`✗ NOT as expected (wanted ${expect}${reason ? `, reason ${reason}` : ''})`)}`);
  return pass;
}

async function push(f: Fleet, from: TesseraHost, text: string, name: string): Promise<number> {
  const file = join(f.dir, name);
  writeFileSync(file, text);
  say(`  ${name}: ${text.split('\n').filter((l) => l.includes('from:') || l.includes('to:')).map((l) => l.trim()).join(' ') || '(no rules: default deny)'}`);
  const out = await tessera(from, ['policy', 'push', '--cluster', f.url, '--operator-key', join(f.dir, 'op.key.json'), '--json', file]);
  return (JSON.parse(out) as { revision: number }).revision;
}

/** Wait until every tessera host applied `rev`, then print `tessera cluster status`. */
async function converge(f: Fleet, hosts: TesseraHost[], rev: number): Promise<boolean> {
  const ok = await waitFor(`every host to apply policy revision ${rev}`, async () => {
    const r = await hosts[0]!.tessera(['cluster', 'status', '--cluster', f.url, '--json']);
    if (r.code !== 0) return null;
    const v = JSON.parse(r.stdout) as { hosts: { host: string; policyRevision: number | null }[] };
    return hosts.every((h) => v.hosts.some((x) => x.host === `host-${h.name}` && x.policyRevision === rev)) || null;
  }, 30_000, 300).catch(() => false);
  say((await tessera(hosts[0]!, ['cluster', 'status', '--cluster', f.url, '--operator-pub', join(f.dir, 'op.pub.json')])).split('\n').map((l) => `    ${l}`).join('\n'));
  say(`  ${ok ? green(`✓ every host applied revision ${rev}`) : red(`✗ not every host applied revision ${rev}`)}`);
  return ok === true;
}

const ALLOW_WEB = 'version: 1\nrules:\n  - id: web-to-nginx\n    from: {app: web}\n    to: {app: nginx}\n    ports: 80\n    action: allow\n';
const ALLOW_BOTH = ALLOW_WEB + '  - id: other-to-nginx\n    from: {app: other}\n    to: {app: nginx}\n    ports: 80\n    action: allow\n';
const DENY_ALL = 'version: 1\nrules: []\n';

async function run(f: Fleet): Promise<boolean[]> {
  const [a, b, c] = [f.cluster.host('a'), f.cluster.host('b'), f.cluster.host('c')];
  const results: boolean[] = [];
  say(bold('\n▶ A three-member etcd on hosts e1, e2, e3; the operator key; the first policy'));
  for (const n of ['e1', 'e2', 'e3']) startEtcd(f, n);
  say(`  etcd members: ${['e1', 'e2', 'e3'].map((n) => `${f.cluster.host(n).addr}:${CLIENT_PORT}`).join(', ')}`);
  await tessera(a, ['cluster', 'keygen', '--out', join(f.dir, 'op')]);
  await waitFor('etcd to answer', async () => (await a.tessera(['cluster', 'status', '--cluster', f.url, '--json'])).code === 0, 60_000, 500);
  const first = await push(f, a, ALLOW_WEB, 'web-only.yaml');

  say(bold('\n▶ A daemon on hosts a, b, c follows the fleet (tessera daemon --cluster … --operator-pub op.pub.json)'));
  const fleetArgs = ['--cluster', f.url, '--operator-pub', join(f.dir, 'op.pub.json')];
  await Promise.all([a, b, c].map((h) => h.startDaemon(fleetArgs)));
  say(`  [host b] $ tessera run --label app=nginx -- busybox httpd -f -p 80`);
  b.spawnPu(['app=nginx'], ['busybox', 'httpd', '-f', '-p', '80', '-h', '/etc']);
  await b.waitForListener(80);
  results.push(await converge(f, [a, b, c], first));
  results.push(await attempt('app=web on host a reaches app=nginx on host b', a, ['app=web'], b, 'connected'));
  results.push(await attempt('app=other on host c is refused', c, ['app=other'], b, 'refused', 'policy'));

  say(bold('\n▶ A policy push every host applies: app=other may reach app=nginx too'));
  const second = await push(f, a, ALLOW_BOTH, 'web-and-other.yaml');
  results.push(await converge(f, [a, b, c], second));
  results.push(await attempt('app=other on host c now reaches host b', c, ['app=other'], b, 'connected'));

  say(bold('\n▶ Host c revoked: its peers refuse its tokens'));
  await tessera(a, ['cluster', 'revoke', 'host-c', '--cluster', f.url, '--operator-key', join(f.dir, 'op.key.json')]);
  await waitFor('host b to refuse host c', async () => (await c.runPu(['app=other'], ['timeout', '5', 'busybox', 'wget', '-q', '-O', '-', `http://${b.addr}/hostname`])).code !== 0, 20_000, 500).catch(() => null);
  results.push(await attempt('app=other on the revoked host c', c, ['app=other'], b, 'refused', 'revoked'));
  results.push(await attempt('app=web on host a still reaches host b', a, ['app=web'], b, 'connected'));

  say(bold('\n▶ All of etcd stopped: enforcement unchanged'));
  await stopEtcd(f);
  say('  (the three etcd members killed)');
  results.push(await attempt('app=web on host a still reaches host b', a, ['app=web'], b, 'connected'));
  results.push(await attempt('revoked host c is still refused', c, ['app=other'], b, 'refused', 'revoked'));
  const health = await waitFor('host b to report etcd away', async () => {
    const s = (await b.status()) as unknown as { health: { state: string; problems: { component: string; message: string }[] } };
    return s.health.problems.find((p) => p.component === 'fleet') ?? null;
  }, 40_000, 500).catch(() => null);
  say(`  [host b] $ tessera status → health: ${health ? `degraded (${health.component}: ${health.message})` : '?'}`);
  results.push(health !== null);

  say(bold('\n▶ etcd back; a new push (deny everything) every host applies'));
  for (const n of ['e1', 'e2', 'e3']) startEtcd(f, n);
  await waitFor('etcd to answer again', async () => (await a.tessera(['cluster', 'status', '--cluster', f.url, '--json'])).code === 0, 60_000, 500);
  const third = await push(f, a, DENY_ALL, 'deny-all.yaml');
  results.push(await converge(f, [a, b, c], third));
  results.push(await attempt('app=web on host a is refused by the new policy', a, ['app=web'], b, 'refused', 'policy'));
  return results;
}

async function main(): Promise<number> {
  if (!isRoot) {
    process.stderr.write('tessera demo --cluster: needs root (network namespaces, iptables, NFQUEUE, cgroups): run it as root, e.g. sudo npm run demo -- --cluster\n');
    return 1;
  }
  if (!ETCD) {
    process.stderr.write('tessera demo --cluster: etcd is not installed: apt-get install etcd-server (npm run demo runs scripts/setup.sh, which does)\n');
    return 1;
  }
  say(bold('Tessera demo --cluster: a fleet of three hosts following a three-member etcd'));
  let f: Fleet | null = null;
  const stop = async (): Promise<void> => {
    const g = f;
    f = null;
    if (!g) return;
    await stopEtcd(g).catch(() => undefined);
    await g.cluster.destroy();
    rmSync(g.dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void stop().finally(() => process.exit(130)));
  process.once('SIGTERM', () => void stop().finally(() => process.exit(143)));
  try {
    const cluster = await createCluster({ prefix: uniquePrefix('flde'), hosts: ['e1', 'e2', 'e3', 'a', 'b', 'c'], subnet: 151, trust: 'ca', start: false });
    f = { cluster, dir: mkdtempSync(join(tmpdir(), 'tessera-demo-cluster-')), etcd: new Map(), url: '' };
    f.url = `etcd://${['e1', 'e2', 'e3'].map((n) => `${cluster.host(n).addr}:${CLIENT_PORT}`).join(',')}`;
    for (const h of cluster.hosts) say(`  host ${h.name}: ${h.addr}`);
    const results = await run(f);
    const passed = results.filter(Boolean).length;
    say(results.every(Boolean) ? green(bold(`\nAll ${passed} steps behaved as the walkthrough says.`)) : red(bold(`\n${results.length - passed} of ${results.length} steps did not behave as expected (see above).`)));
    return results.every(Boolean) ? 0 : 1;
  } catch (err) {
    process.stderr.write(`tessera demo --cluster failed: ${(err as Error).message}\n`);
    return 1;
  } finally {
    say('\nTearing down: stopping etcd and the daemons, removing their rules, namespaces and cgroups…');
    await stop();
    say('Done.');
  }
}

process.exitCode = await main();
