// `npm run demo -- --learn`: learn mode on a three-tier application across three namespace
// hosts, with processes (docs/learning.md).
//
//   host a (10.213.165.1)      host b (10.213.165.2)        host c (10.213.165.3)
//   web clients app=web        api server app=api :8080     db server app=db :5432
//                              (two versions of clients)    resolver WITHOUT Tessera :53
//
// 1. Every daemon runs `mode: learn` with no rules: everything is allowed and observed.
// 2. Traffic: web → api, api → db (two versions, several replicas), api → resolver.
// 3. `tessera policy suggest` over the three hosts' edges prints a policy with its evidence.
// 4. The suggestion is installed (enforce): every learned flow still works, and web → db
//    directly — never seen — is refused, by the rule the db host names in its flow record.
// 5. With --docker (npm run demo -- --learn --docker): the same with containers in the
//    namespace where dockerd runs — replicas, versions and a renamed container make one group
//    (scripts/demo-learn-docker.ts).
// Everything is torn down at the end, also on failure or Ctrl-C.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCluster, waitFor, type Cluster, type TesseraHost } from './lib/cluster.js';
import { isRoot, uniquePrefix } from './lib/netns.js';
import { containersAct } from './demo-learn-docker.js';

const tty = process.stdout.isTTY;
const bold = (s: string): string => (tty ? `\x1b[1m${s}\x1b[0m` : s);
const ok = (s: string): string => (tty ? `\x1b[32m${s}\x1b[0m` : s);
const no = (s: string): string => (tty ? `\x1b[31m${s}\x1b[0m` : s);
const dim = (s: string): string => (tty ? `\x1b[2m${s}\x1b[0m` : s);
const say = (line = ''): void => void process.stdout.write(line + '\n');

interface Flow {
  verdict: string;
  reason: string;
  ruleId: string;
  mode?: string;
  direction: string;
  localPort: number;
  localLabels: string[] | null;
  remoteLabels: string[] | null;
  remoteAddr: string;
}

async function main(): Promise<number> {
  if (!isRoot) {
    process.stderr.write('tessera demo --learn: needs root (network namespaces, iptables, NFQUEUE, cgroups): run it as root, e.g. sudo npm run demo -- --learn\n');
    return 1;
  }
  let cluster: Cluster | null = null;
  const dir = mkdtempSync(join(tmpdir(), 'tessera-demo-learn-'));
  const stop = async (): Promise<void> => {
    const c = cluster;
    cluster = null;
    if (c) await c.destroy();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void stop().finally(() => process.exit(130)));
  process.once('SIGTERM', () => void stop().finally(() => process.exit(143)));
  const results: boolean[] = [];
  const check = (what: string, pass: boolean, detail = ''): void => {
    results.push(pass);
    say(`  ${pass ? ok('✓') : no('✗')} ${what}${detail ? dim(` — ${detail}`) : ''}`);
  };
  try {
    say(bold('Tessera demo: learn a three-tier application, suggest its policy, enforce it'));
    const policyFile = join(dir, 'policy.yaml');
    writeFileSync(policyFile, 'version: 1\nname: learning\nmode: learn\nrules: []\n');
    say(`Building three namespace hosts with a daemon each, all on ${policyFile}:`);
    say(dim('  version: 1 / mode: learn / rules: []   (allow everything, record every edge)'));
    cluster = await createCluster({ prefix: uniquePrefix('lrn'), hosts: ['a', 'b', 'c'], subnet: 165, trust: 'ca', daemonArgs: ['--policy', policyFile] });
    const [a, b, c] = [cluster.host('a'), cluster.host('b'), cluster.host('c')];
    for (const h of cluster.hosts) say(`  host ${h.name}: ${h.addr}`);
    const serve = (port: number): string[] => ['busybox', 'httpd', '-f', '-p', String(port), '-h', '/etc'];
    const get = (h: TesseraHost, port: number): string[] => ['timeout', '5', 'busybox', 'wget', '-q', '-O', '-', `http://${h.addr}:${port}/hostname`];

    say(bold('\n▶ Start the application'));
    say('  [host b] $ tessera run --label app=api --label version=2.3.1 -- busybox httpd -p 8080');
    b.spawnPu(['app=api', 'version=2.3.1'], serve(8080));
    say('  [host c] $ tessera run --label app=db -- busybox httpd -p 5432');
    c.spawnPu(['app=db'], serve(5432));
    say('  [host c] $ busybox httpd -p 53          (a resolver WITHOUT Tessera, reached by address)');
    c.spawn(serve(53));
    await b.waitForListener(8080);
    await c.waitForListener(5432);

    say(bold('\n▶ Traffic while learning (3 web replicas, 4 api clients over two versions, the resolver)'));
    const calls: Array<[TesseraHost, string[], TesseraHost, number, string]> = [];
    for (let i = 1; i <= 3; i++) calls.push([a, ['app=web', 'version=1.0.0', `instance=web-${i}`], b, 8080, `web-${i} → api:8080`]);
    for (let i = 1; i <= 4; i++) {
      const labels = ['app=api', `version=${i <= 2 ? '2.3.1' : '2.4.0'}`, `instance=api-${i}`];
      calls.push([b, labels, c, 5432, `api-${i} (${labels[1]}) → db:5432`]);
      calls.push([b, labels, c, 53, `api-${i} → resolver ${c.addr}:53`]);
    }
    let learnt = 0;
    for (const [h, labels, to, port, what] of calls) {
      const r = await h.runPu(labels, get(to, port));
      if (r.code === 0) learnt++;
      else say(`  ${no('✗')} ${what}: ${r.stderr.trim().split('\n')[0]}`);
    }
    check(`${learnt} of ${calls.length} connections made while learning`, learnt === calls.length);
    const rec = ((await c.flows()) as unknown as Flow[]).filter((f) => f.localPort === 5432).at(-1);
    if (rec) say(dim(`  flow record on c: ${rec.verdict} (${rec.reason}) mode=${rec.mode ?? 'enforce'} by ${rec.ruleId}`));

    say(bold('\n▶ Collect what each daemon observed (workers hand their edges over every 5 s)'));
    // Connections each host saw: a is the client of 3; b the server of 3 and the client of 8; c the server of 4.
    const expected: Array<[TesseraHost, number]> = [[a, 3], [b, 11], [c, 4]];
    const edgesOf = (h: TesseraHost): string => join(dir, `edges-${h.name}.json`);
    for (const [h, n] of expected) {
      await waitFor(`the edges of host ${h.name}`, async () => {
        const r = await h.tessera(['policy', 'edges']);
        if (r.code !== 0) return false;
        const t = JSON.parse(r.stdout) as { edges: Array<{ ingress: number; egress: number }> };
        if (t.edges.reduce((s, e) => s + e.ingress + e.egress, 0) < n) return false;
        writeFileSync(edgesOf(h), r.stdout);
        return true;
      }, 30_000, 500);
      say(`  [host ${h.name}] $ tessera policy edges > ${edgesOf(h)}`);
    }

    say(bold('\n▶ Suggest a least-privilege policy from the three hosts\' edges'));
    const suggested = join(dir, 'suggested.yaml');
    const args = ['policy', 'suggest', '--out', suggested, ...[a, b, c].flatMap((h) => ['--edges', edgesOf(h)])];
    say(`  $ tessera ${args.join(' ')}`);
    const s = await a.tessera(args);
    if (s.code !== 0) throw new Error(`suggest failed: ${s.stderr}`);
    const text = readFileSync(suggested, 'utf8');
    for (const l of text.trimEnd().split('\n')) say(`  ${l.startsWith('#') || l.includes('  #') ? dim(l) : l}`);
    const body = text.split('\n').filter((l) => !l.trimStart().startsWith('#') && l !== 'version: 1').join('\n');
    check('the suggestion generalizes versions and instances away', /#   api \{app: api\}/.test(text) && !/version|instance/.test(body));
    check('the resolver is allowed by address, on its port only', text.includes(`toNetworks: [${c.addr}]`) && /ports: \[53\]/.test(text));

    say(bold('\n▶ Enforce it: install the suggestion as the policy file (the daemons reload it)'));
    const before = JSON.parse((await c.tessera(['status', '--json'])).stdout).policy.revision as string;
    writeFileSync(policyFile, text);
    await waitFor('the new policy everywhere', async () => {
      for (const h of [a, b, c]) if (JSON.parse((await h.tessera(['status', '--json'])).stdout).policy.revision === before) return false;
      return true;
    }, 10_000, 100);

    say(bold('\n▶ Every learned flow still works'));
    const again: Array<[TesseraHost, string[], TesseraHost, number, string]> = [
      [a, ['app=web', 'version=1.0.0', 'instance=web-9'], b, 8080, 'a new web replica → api:8080'],
      [b, ['app=api', 'version=2.5.0', 'instance=api-new'], c, 5432, 'api at a version never seen (2.5.0) → db:5432'],
      [b, ['app=api', 'version=2.3.1', 'instance=api-1'], c, 53, `api → resolver ${c.addr}:53`],
    ];
    for (const [h, labels, to, port, what] of again) {
      const r = await h.runPu(labels, get(to, port));
      check(what, r.code === 0, r.code === 0 ? 'connected' : r.stderr.trim().split('\n')[0]);
    }

    say(bold('\n▶ A flow never seen: web → db directly'));
    say(`  [host a] $ tessera run --label app=web -- busybox wget http://${c.addr}:5432/`);
    const n0 = ((await c.flows()) as unknown as Flow[]).length;
    const bad = await a.runPu(['app=web', 'version=1.0.0'], get(c, 5432));
    const refusal = await waitFor(
      'the refusal on c',
      async () => ((await c.flows()) as unknown as Flow[]).slice(n0).find((f) => f.verdict !== 'accept' && f.localPort === 5432 && (f.remoteLabels ?? []).includes('app=web')),
      5000,
    ).catch(() => undefined);
    check('web → db is refused', bad.code !== 0, bad.stderr.trim().split('\n')[0] ?? '');
    check('the db host names the refusing rule', refusal?.ruleId === 'default:reject', refusal ? `flow record on c: ${refusal.verdict} (${refusal.reason}) by ${refusal.ruleId}: no rule of the suggestion allows app=web → app=db` : 'no flow record');
    const d = await c.tessera(['policy', 'diff', policyFile, ...[a, b, c].flatMap((h) => ['--edges', edgesOf(h)])]);
    say(dim(`  $ tessera policy diff ${policyFile}  (the observed edges replayed through the enforced file)`));
    for (const l of d.stdout.trimEnd().split('\n')) say(dim(`    ${l}`));
    // The processes' hosts go first: the containers act has its own daemon in tessera-docker.
    await stop();
    if (process.argv.includes('--docker')) await containersAct(say, bold, dim, check);

    const passed = results.every(Boolean);
    say(passed ? ok(bold('\nAll steps behaved as the learn walkthrough says: learned, suggested with evidence, enforced; the unseen web → db refused.')) : no(bold('\nSome step did not behave as expected (see above).')));
    return passed ? 0 : 1;
  } catch (err) {
    process.stderr.write(`tessera demo --learn failed: ${(err as Error).message}\n`);
    return 1;
  } finally {
    say('\nTearing down: stopping daemons, removing their rules, deleting namespaces and cgroups…');
    await stop();
    say('Done.');
  }
}

process.exitCode = await main();
