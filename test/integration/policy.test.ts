// A policy file on the real path: label rules on both hosts (mutual authorization), network
// rules for peers without Tessera, hot reload of a good and a bad file, revoking an
// established connection the new policy refuses, and audit mode.

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, writeFileSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createCluster, waitFor, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, uniquePrefix } from '../../scripts/lib/netns.js';
import { skipBecause } from '../helpers/skip.js';

skipBecause(!isRoot, 'policy on the real path (needs root)', 'integration tests need root: run npm test as root');

describe.runIf(isRoot)('policy on the real path: reload, revoke, networks, audit', () => {
  let cluster: Cluster;
  let a: TesseraHost, b: TesseraHost;
  let dir: string;
  let policyFile: string;
  const wget = (addr: string) => ['timeout', '5', 'busybox', 'wget', '-q', '-O', '-', `http://${addr}/hostname`];

  const allowWeb = (aAddr: string) => `version: 1
rules:
  - id: web-to-db
    from: {app: web}
    to: {app: db}
    ports: [80, 81]
    action: allow
  - id: host-a-probe
    to: {app: db}
    fromNetworks: [${aAddr}/32]
    ports: 80
    action: allow
`;

  async function write(text: string): Promise<void> {
    writeFileSync(policyFile + '.tmp', text);
    // Replace atomically, as editors and config managers do.
    rmSync(policyFile, { force: true });
    writeFileSync(policyFile, text);
  }

  async function policyName(h: TesseraHost): Promise<string> {
    const p = ((await h.status()) as unknown as { policy: { source: string; revision: string } }).policy;
    return `${p.source} (sha256 ${p.revision})`;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-policy-'));
    policyFile = join(dir, 'policy.yaml');
    // Host addresses are known before the cluster exists: 10.213.43.1 and .2.
    writeFileSync(policyFile, allowWeb('10.213.43.1'));
    cluster = await createCluster({ prefix: uniquePrefix('po'), hosts: ['a', 'b'], subnet: 43, trust: 'ca', daemonArgs: ['--policy', policyFile] });
    [a, b] = [cluster.host('a'), cluster.host('b')];
    expect(a.addr).toBe('10.213.43.1');
    b.spawnPu(['app=db'], ['busybox', 'httpd', '-f', '-p', '80', '-h', '/etc']);
    b.spawnPu(['app=db'], ['busybox', 'nc', '-l', '-p', '81']);
    await b.waitForListener(80);
    await b.waitForListener(81);
  }, 120_000);

  afterAll(async () => {
    await cluster?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('allows by label rule on both hosts, and a peer without Tessera by network rule', async () => {
    expect(await policyName(b)).toContain(policyFile);
    const web = await a.runPu(['app=web'], wget(b.addr));
    expect(web.stderr).toBe('');
    const bare = await a.exec(wget(b.addr));
    expect(bare.stderr).toBe('');
    await waitFor('the network-rule accept on b', async () => (await b.flows()).some((f) => f.verdict === 'accept' && (f as unknown as { ruleId: string }).ruleId === 'host-a-probe'), 5000);
    const other = await a.runPu(['app=other'], wget(b.addr));
    expect(other.stderr).toMatch(/refused/i);
  });

  it('reloads a good file for new connections, keeps established ones until revoked, then cuts them', async () => {
    // An established connection web -> db:81 that stays open.
    // Its stdin stays open (a pipe we hold), so nc keeps the connection until it is cut.
    const long: ChildProcess = a.spawnPu(['app=web'], ['busybox', 'nc', b.addr, '81']);
    long.stdin!.write('hello\n');
    let exited = false;
    long.once('exit', () => (exited = true));
    await waitFor('the long connection to be authorized', async () => (await b.flows()).some((f) => f.verdict === 'accept' && f.stage === 'syn' && (f as unknown as { localPort: number }).localPort === 81), 10_000);

    const before = await policyName(b);
    await write('version: 1\nrules: []\n');
    await waitFor('both daemons to load the new policy', async () => (await policyName(b)) !== before && (await policyName(a)) !== before, 5000, 50);
    const refused = await a.runPu(['app=web'], wget(b.addr));
    expect(refused.stderr).toMatch(/refused/i);
    // The established connection is untouched by the reload...
    expect(exited).toBe(false);
    // ...until revoked: the dry run lists it, the real run cuts it.
    const dry = await b.tessera(['flows', '--revoke', '--dry-run', '--json']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('"localPort":81');
    const cut = await b.tessera(['flows', '--revoke']);
    expect(cut.stdout).toMatch(/CUT ingress .*:81 <- /);
    await waitFor('the cut client to exit', async () => exited, 5000);
  });

  it('refuses a bad file with line and column and keeps the running policy', async () => {
    const before = await policyName(b);
    await write(allowWeb(a.addr).replace('action: allow', 'acton: allow'));
    // The log is JSON, so the quotes arrive escaped.
    await waitFor('the refusal in the daemon log', async () => /unknown key \\"acton\\".*did you mean \\"action\\"/.test(readFileSync(b.logFile, 'utf8')), 5000, 50);
    expect(readFileSync(b.logFile, 'utf8')).toMatch(/policy\.yaml:\d+:\d+: unknown key \\"acton\\"/);
    expect(await policyName(b)).toBe(before);
    // Still the running (deny-all) policy:
    expect((await a.runPu(['app=web'], wget(b.addr))).stderr).toMatch(/refused/i);
  });

  it('audit mode lets a refused connection through and records it as audit', async () => {
    await write('version: 1\nmodes:\n  - select: {app: db}\n    mode: audit\nrules: []\n');
    await waitFor('audit policy', async () => (await b.tessera(['policy', 'show'])).stdout.includes('mode: audit'), 5000, 50);
    const bare = await a.exec(wget(b.addr));
    expect(bare.stderr).toBe('');
    await waitFor('the audit record', async () => (await b.flows()).some((f) => f.verdict === 'accept' && f.reason === 'audit'), 5000);
  });
});
