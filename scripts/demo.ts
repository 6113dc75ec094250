// `npm run demo`: the seeds' walkthrough, with Linux processes, across three namespace hosts.
// Each host runs its own `tessera daemon` (a freshly made CA issued every host a certificate).
//
//   host a (10.213.1.1)          host b (10.213.1.2)              host c (10.213.1.3)
//   clients                      web server PU app=nginx :80      client PU app=other
//
// Every step prints what it ran, what happened, and the flow record the daemons wrote.
// Everything is torn down at the end, also on failure or Ctrl-C.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCluster, waitFor, type Cluster, type FlowJson, type TesseraHost } from './lib/cluster.js';
import { isRoot, uniquePrefix } from './lib/netns.js';

const bold = (s: string): string => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const ok = (s: string): string => (process.stdout.isTTY ? `\x1b[32m${s}\x1b[0m` : s);
const no = (s: string): string => (process.stdout.isTTY ? `\x1b[31m${s}\x1b[0m` : s);

function say(line = ''): void {
  process.stdout.write(line + '\n');
}

function describeFlow(f: FlowJson | undefined): string {
  if (!f) return '(no flow record)';
  const peer = f.remoteHost ? `${f.remoteHost} [${(f.remoteLabels ?? []).join(',')}]` : 'an unprotected peer (no token)';
  return `${f.verdict.toUpperCase()} (${f.reason}) ${f.direction} at ${f.stage}: local [${(f.localLabels ?? []).join(',')}] <-> ${peer}`;
}

async function lastFlow(h: TesseraHost, before: number): Promise<FlowJson | undefined> {
  const flows = await waitFor(`a new flow record on ${h.name}`, async () => {
    const all = await h.flows();
    return all.length > before ? all : null;
  }, 5000).catch(() => null);
  return flows?.at(-1);
}

async function step(title: string, h: TesseraHost, recorder: TesseraHost, argv: string[], labels: string[] | null, expectOk: boolean): Promise<boolean> {
  say(bold(`\n▶ ${title}`));
  const shown = labels ? `tessera run ${labels.map((l) => `--label ${l}`).join(' ')} -- ${argv.join(' ')}` : argv.join(' ');
  say(`  [host ${h.name}] $ ${shown}`);
  const before = (await recorder.flows()).length;
  const t0 = Date.now();
  const r = labels ? await h.runPu(labels, argv) : await h.exec(argv, { timeoutMs: 20_000 });
  const ms = Date.now() - t0;
  const got = r.code === 0;
  const out = (r.stdout.trim() || r.stderr.trim()).split('\n')[0] ?? '';
  say(`  → ${got ? ok('connected') : no('refused')} in ${ms} ms: ${out}`);
  say(`  flow record on host ${recorder.name}: ${describeFlow(await lastFlow(recorder, before))}`);
  const pass = got === expectOk;
  say(`  ${pass ? ok('✓ as expected') : no('✗ NOT as expected')}`);
  return pass;
}

async function main(): Promise<number> {
  if (!isRoot) {
    process.stderr.write('tessera demo: needs root (it creates network namespaces, iptables rules and cgroups): run it as root, e.g. sudo npm run demo\n');
    return 1;
  }
  say(bold('Tessera demo: identity-based authorization between processes on three hosts'));
  say('Building three namespace hosts, a CA, a certificate per host, and a daemon on each…');
  let cluster: Cluster | null = null;
  const stop = async (): Promise<void> => {
    if (cluster) await cluster.destroy();
    cluster = null;
  };
  process.once('SIGINT', () => void stop().finally(() => process.exit(130)));
  process.once('SIGTERM', () => void stop().finally(() => process.exit(143)));
  try {
    cluster = await createCluster({ prefix: uniquePrefix('dm'), hosts: ['a', 'b', 'c'], subnet: 1, trust: 'ca' });
    const [a, b, c] = [cluster.host('a'), cluster.host('b'), cluster.host('c')];
    for (const h of cluster.hosts) say(`  host ${h.name}: ${h.addr}, daemon on ${h.socket}`);

    const www = mkdtempSync(join(tmpdir(), 'tessera-demo-www-'));
    writeFileSync(join(www, 'index.html'), 'hello from the app=nginx web server on host b\n');
    say(bold('\n▶ Start a web server on host b as a protected process with label app=nginx'));
    say(`  [host b] $ tessera run --label app=nginx -- busybox httpd -f -p 80 -h ${www}`);
    b.spawnPu(['app=nginx'], ['busybox', 'httpd', '-f', '-p', '80', '-h', www]);
    await b.waitForListener(80);
    const pu = (await b.status()).pus.find((p) => p.ports.includes(80))!;
    say(`  → PU ${pu.id} labels [${pu.labels.join(',')}] classid ${pu.classid}, listening on :80`);

    const url = `http://${b.addr}/`;
    const wget = ['timeout', '5', 'busybox', 'wget', '-q', '-O', '-', url];
    const results = [
      await step('An unprotected client on host a is refused (the seeds: "This should fail")', a, b, wget, null, false),
      await step('A client with the same label app=nginx on host a gets the page', a, b, wget, ['app=nginx'], true),
      await step('A client with label app=other on host c is refused', c, b, wget, ['app=other'], false),
    ];
    const stats = await b.status();
    say(bold('\nHost b counters: ') + Object.entries(stats.counters).map(([k, v]) => `${k}=${v}`).join(' '));
    const passed = results.every(Boolean);
    say(passed ? ok(bold('\nAll steps behaved as the walkthrough says.')) : no(bold('\nSome step did not behave as expected (see above).')));
    return passed ? 0 : 1;
  } catch (err) {
    process.stderr.write(`tessera demo failed: ${(err as Error).message}\n`);
    return 1;
  } finally {
    say('\nTearing down: stopping daemons (they remove their rules), deleting namespaces and cgroups…');
    await stop();
    say('Done.');
  }
}

process.exitCode = await main();
