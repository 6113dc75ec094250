// Learn mode on the real path (issue 15), three namespace hosts: web on a, api on b, db on
// c plus a resolver on c without Tessera. Everything runs in learn mode and is observed;
// the edges survive a daemon restart; promote moves db to audit then enforce; the suggested
// policy is applied: every learned flow still works, web → db directly is refused by
// default:reject, named in the server's flow record.

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCluster, waitFor, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, uniquePrefix } from '../../scripts/lib/netns.js';
import { skipBecause } from '../helpers/skip.js';
import { parseTable } from '../../src/learn/index.js';

skipBecause(!isRoot, 'learn mode on the real path (needs root)', 'integration tests need root: run npm test as root');

interface Flow {
  time: string;
  verdict: string;
  reason: string;
  ruleId: string;
  mode?: string;
  localPort: number;
  remoteLabels: string[] | null;
}

describe.runIf(isRoot)('learn mode across three hosts: observe, restart, promote, suggest, enforce', () => {
  let cluster: Cluster;
  let a: TesseraHost, b: TesseraHost, c: TesseraHost;
  let dir: string;
  let policyFile: string;
  const wget = (addr: string, port: number) => ['timeout', '5', 'busybox', 'wget', '-q', '-O', '-', `http://${addr}:${port}/hostname`];
  const stateEdges = (h: TesseraHost): string => join(cluster.dir, 'state', h.name, 'edges.json');
  const flows = async (h: TesseraHost): Promise<Flow[]> => (await h.flows()) as unknown as Flow[];
  const policyRevision = async (h: TesseraHost): Promise<string> => ((await h.status()) as unknown as { policy: { revision: string } }).policy.revision;

  async function install(text: string): Promise<void> {
    const before = await policyRevision(c);
    writeFileSync(policyFile, text);
    await waitFor('every daemon to load the new policy', async () => {
      for (const h of [a, b, c]) if ((await policyRevision(h)) === before) return false;
      return true;
    }, 10_000, 50);
  }

  /** The three learned flows and the resolver, from the PUs that make them. */
  async function traffic(): Promise<Array<{ code: number; stderr: string }>> {
    return [
      await a.runPu(['app=web', 'version=1.0.0'], wget(b.addr, 8080)),
      await b.runPu(['app=api', 'version=2.0.0', 'replica=x'], wget(c.addr, 5432)),
      await b.runPu(['app=api', 'version=2.1.0', 'replica=y'], wget(c.addr, 5432)),
      await b.runPu(['app=api', 'version=2.0.0'], wget(c.addr, 53)),
    ];
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-learn-'));
    policyFile = join(dir, 'policy.yaml');
    writeFileSync(policyFile, 'version: 1\nmode: learn\nrules: []\n');
    cluster = await createCluster({ prefix: uniquePrefix('lrn'), hosts: ['a', 'b', 'c'], subnet: 160, trust: 'ca', daemonArgs: ['--policy', policyFile] });
    [a, b, c] = [cluster.host('a'), cluster.host('b'), cluster.host('c')];
    b.spawnPu(['app=api', 'version=2.0.0'], ['busybox', 'httpd', '-f', '-p', '8080', '-h', '/etc']);
    c.spawnPu(['app=db'], ['busybox', 'httpd', '-f', '-p', '5432', '-h', '/etc']);
    // The resolver: a plain process on c, no Tessera PU (reached by address).
    c.spawn(['busybox', 'httpd', '-f', '-p', '53', '-h', '/etc']);
    await b.waitForListener(8080);
    await c.waitForListener(5432);
  }, 120_000);

  afterAll(async () => {
    await cluster?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('learn mode lets flows no rule allows through, records them with mode learn, and status shows each PU’s mode', async () => {
    for (const r of await traffic()) expect(r.stderr).toBe('');
    // Not learned, but allowed while learning: web → db directly (made only now, before enforcing, to be refused later).
    const st = (await c.status()) as unknown as { learn: { modes: Record<string, string>; maxEdges: number } };
    expect(Object.values(st.learn.modes)).toContain('learn');
    expect(st.learn.maxEdges).toBe(4096);
    await waitFor('learn records on c', async () => (await flows(c)).some((f) => f.verdict === 'accept' && f.reason === 'learn' && f.mode === 'learn' && f.localPort === 5432), 5000);
  });

  it('keeps the observed edges across a daemon restart', async () => {
    // Handed over by the worker within 5 s, saved within 10 s.
    await waitFor('b to save its edges', async () => existsSync(stateEdges(b)) && parseTable(JSON.parse(readFileSync(stateEdges(b), 'utf8'))).edges.some((e) => e.port === 5432), 30_000, 500);
    // A connection just before a clean stop, still in its worker's table (handed over every
    // 5 s): the stop hands it over and saves it too.
    expect((await b.runPu(['app=api', 'version=2.0.0', 'replica=last'], wget(c.addr, 53))).stderr).toBe('');
    await b.stopDaemon();
    const saved = parseTable(JSON.parse(readFileSync(stateEdges(b), 'utf8'))).edges;
    expect(saved.some((e) => e.port === 53 && 'labels' in e.client && e.client.labels.includes('replica=last'))).toBe(true);
    await b.startDaemon();
    const r = await b.tessera(['policy', 'suggest', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as { rules: Array<{ id: string; ports: number[] }> };
    expect(s.rules.map((x) => x.id)).toEqual(expect.arrayContaining(['web-to-api', 'api-to-db', 'api-to-net-53']));
  });

  it('promote moves db from learn to audit to enforce without a restart', async () => {
    await b.waitForListener(8080, 20_000); // re-adopted after the restart
    const p1 = await c.tessera(['policy', 'promote', 'app=db']);
    expect(p1.stderr).toMatch(/app=db: learn → audit/);
    await waitFor('audit on c', async () => ((await c.status()) as unknown as { learn: { modes: Record<string, string> } }).learn.modes && (await c.tessera(['policy', 'show'])).stdout.includes('mode: audit'), 10_000, 100);
    expect((await a.runPu(['app=web'], wget(c.addr, 5432))).stderr).toBe('');
    await waitFor('an audit record on c', async () => (await flows(c)).some((f) => f.reason === 'audit' && f.mode === 'audit' && f.localPort === 5432), 5000);
    const p2 = await c.tessera(['policy', 'promote', 'app=db']);
    expect(p2.stderr).toMatch(/app=db: audit → enforce/);
    await waitFor('enforce on c', async () => (await c.tessera(['policy', 'show'])).stdout.includes('mode: enforce'), 10_000, 100);
    expect((await a.runPu(['app=web'], wget(c.addr, 5432))).stderr).toMatch(/refused|timed out/i);
    // The guard: a burst of refusals right after the promotion to enforce is reported in status.
    const burst = await a.runPu(['app=web'], ['sh', '-c', `for i in $(seq 30); do timeout 3 busybox wget -q -O /dev/null http://${c.addr}:5432/ 2>/dev/null; done; true`], 120_000);
    expect(burst.code).toBe(0);
    const guard = await waitFor('the guard report on c', async () => ((await c.status()) as unknown as { learn: { guard?: { message: string } } }).learn.guard, 15_000, 500);
    expect(guard.message).toMatch(/refusals spiked after 1 PU\(s\) moved to enforce/);
  });

  it('suggest → enforce: every learned flow still works, web → db is refused by the rule named', async () => {
    for (const h of [a, c]) await waitFor(`${h.name} to save its edges`, async () => existsSync(stateEdges(h)), 30_000, 500);
    await waitFor('c to save the api → db edge', async () => parseTable(JSON.parse(readFileSync(stateEdges(c), 'utf8'))).edges.some((e) => e.port === 5432 && 'labels' in e.client && e.client.labels.includes('app=api')), 30_000, 500);
    const out = join(dir, 'suggested.yaml');
    const r = await a.tessera(['policy', 'suggest', '--out', out, ...[a, b, c].flatMap((h) => ['--edges', stateEdges(h)])]);
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(out, 'utf8');
    // Evidence, generalization (version and replica dropped), the resolver by address.
    expect(text).toMatch(/#   api \{app: api\}: app stable across \d+ PUs/);
    expect(text).toMatch(/version version-like: dropped/);
    expect(text).toContain(`toNetworks: [${c.addr}]`);
    expect(text).not.toContain('version:  ');
    // The web → db flow made while db was in audit was learnt as well: the operator sees it as a rule of its own.
    const withoutProbe = text.replace(/\n  # [^\n]*\n(  # [^\n]*\n)*  - id: web-to-db\n(    [^\n]*\n)*/, '\n');
    expect(withoutProbe).not.toContain('web-to-db');
    await install(withoutProbe);
    // diff against the observed edges names the refused one. diff reads c's daemon, which
    // gets the audited web → db connection of the previous test with its worker's next edge
    // handover (every 5 s, docs/learning.md): when that test was quick, not yet.
    await waitFor('c to hold the web → db edge', async () => {
      const e = await c.tessera(['policy', 'edges']);
      return e.code === 0 && parseTable(JSON.parse(e.stdout)).edges.some((x) => x.port === 5432 && 'labels' in x.client && x.client.labels.includes('app=web'));
    }, 20_000, 250);
    const d = await c.tessera(['policy', 'diff', policyFile]);
    expect(d.stdout).toMatch(/REFUSE app=web → app=db:5432\/tcp by default:reject/);
    for (const res of await traffic()) expect(res.stderr).toBe('');
    // A new replica with a new version is covered without relearning.
    expect((await b.runPu(['app=api', 'version=9.9.9', 'replica=new'], wget(c.addr, 5432))).stderr).toBe('');
    // Refusals of web → db from the previous test (db enforced, no rules) are on c as well: only a new one counts.
    const since = Date.now();
    const refused = await a.runPu(['app=web', 'version=1.0.0'], wget(c.addr, 5432));
    expect(refused.stderr).toMatch(/refused/i);
    await waitFor('the refusal named on c', async () => (await flows(c)).some((f) => Date.parse(f.time) >= since && f.verdict !== 'accept' && f.ruleId === 'default:reject' && f.localPort === 5432 && (f.remoteLabels ?? []).includes('app=web')), 5000);
  });
});
