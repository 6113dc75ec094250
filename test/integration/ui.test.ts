// The flow map on the real kernel path: namespace hosts with tessera daemons, real allowed,
// audited and refused connections, and the daemon's --ui page in Debian's chromium (run inside
// the server host's namespace, where the listener is on loopback). Asserts through the page
// that each edge shows the class of what happened, and that a click explains the refusal.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { createCluster, REPO, waitFor, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, uniquePrefix } from '../../scripts/lib/netns.js';
import { CHROMIUM, haveChromium } from '../../bench/lib/ui-fixture.js';
import { skipBecause } from '../helpers/skip.js';

skipBecause(!isRoot, 'flow map on namespace hosts (needs root)', 'integration tests need root: run npm test as root');
skipBecause(isRoot && !haveChromium, 'flow map on namespace hosts (chromium)', 'no chromium at /usr/bin/chromium: run scripts/setup.sh as root (apt-get install chromium)');

const UI_PORT = 9477;
const POLICY = `version: 1
modes:
  - select: {app: cache}
    mode: audit
  - select: {app: probe}
    mode: audit
rules:
  - id: web-to-api
    from: {app: web}
    to: {app: api}
    ports: [8080]
    action: allow
`;

describe.runIf(isRoot && haveChromium)('flow map: a daemon\'s --ui page in chromium, real connections', () => {
  let cluster: Cluster;
  let a: TesseraHost, b: TesseraHost, c: TesseraHost;
  let dir: string;
  let browser: Browser;
  let page: Page;
  const wget = (addr: string, port: number) => ['timeout', '5', 'busybox', 'wget', '-q', '-O', '-', `http://${addr}:${port}/`];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-ui-'));
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, POLICY);
    writeFileSync(join(dir, 'index.html'), 'hello\n');
    cluster = await createCluster({ prefix: uniquePrefix('ui'), hosts: ['a', 'b', 'c'], subnet: 57, trust: 'psk', daemonArgs: ['--policy', policy], hostDaemonArgs: { b: ['--ui', `127.0.0.1:${UI_PORT}`] } });
    [a, b, c] = [cluster.host('a'), cluster.host('b'), cluster.host('c')];
    for (const [app, port] of [['api', 8080], ['db', 5432], ['cache', 6379]] as const) {
      b.spawnPu([`app=${app}`], ['busybox', 'httpd', '-f', '-p', String(port), '-h', dir]);
      await b.waitForListener(port);
    }
    // Chromium runs in b's namespace, where the daemon's UI listens on loopback.
    const wrapper = join(dir, 'chromium-in-b');
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${b.ns} ${CHROMIUM} "$@"\n`);
    chmodSync(wrapper, 0o755);
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: wrapper, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  }, 180_000);

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await cluster?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('makes allowed, audited and refused connections', async () => {
    expect((await a.runPu(['app=web'], wget(b.addr, 8080))).stdout).toBe('hello\n');
    const refused = await a.runPu(['app=web'], wget(b.addr, 5432));
    expect(refused.code).not.toBe(0);
    // Audit mode on both ends (each host judges by its own PU's mode): let through, recorded as audit.
    expect((await a.runPu(['app=probe'], wget(b.addr, 6379))).stdout).toBe('hello\n');
    const unprotected = await c.exec(wget(b.addr, 8080), { timeoutMs: 10_000 });
    expect(unprotected.code).not.toBe(0);
    await waitFor('four kinds of records on b', async () => {
      const f = await b.flows();
      return f.some((x) => x.reason === 'policy') && f.some((x) => x.reason === 'audit') && f.some((x) => x.reason === 'missing-token') && f.some((x) => x.verdict === 'accept' && x.reason === 'ok');
    });
  });

  it('shows each edge as what happened: allowed, refused (red), audit, and the peer without Tessera', async () => {
    page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    await page.goto(`http://127.0.0.1:${UI_PORT}/?since=1h`);
    await page.waitForSelector('body[data-state="ready"]', { timeout: 30_000 });
    const edges: Record<string, string[]> = Object.fromEntries(
      await page.evaluate(() => (globalThis as any).__tessera.cy.edges().map((e: any) => [e.id(), e.classes()])),
    );
    expect(edges).toEqual({
      'pu:app=web->pu:app=api': ['allowed'],
      'pu:app=web->pu:app=db': ['refused'],
      'pu:app=probe->pu:app=cache': ['audit'],
      [`addr:10.213.57.0/24->pu:app=api`]: ['refused'],
    });
    const nodes = await page.evaluate(() => (globalThis as any).__tessera.cy.nodes().map((n: any) => n.id()).sort());
    expect(nodes).toEqual(['addr:10.213.57.0/24', 'pu:app=api', 'pu:app=cache', 'pu:app=db', 'pu:app=probe', 'pu:app=web']);
    const red = await page.evaluate(() => (globalThis as any).__tessera.cy.getElementById('pu:app=web->pu:app=db').style('line-color'));
    expect(red).toBe('rgb(198,40,40)');
  });

  it('explains a refused edge on click: its flows, reason code, rule and the policy\'s chain', async () => {
    const p = await page.evaluate(() => {
      const cy = (globalThis as any).__tessera.cy;
      const mid = cy.getElementById('pu:app=web->pu:app=db').renderedMidpoint();
      const box = cy.container().getBoundingClientRect();
      return { x: box.left + mid.x, y: box.top + mid.y };
    });
    await page.mouse.click(p.x, p.y);
    await page.waitForSelector('#details[data-edge="pu:app=web->pu:app=db"][data-state="ready"]', { timeout: 10_000 });
    const rows = await page.$$eval('#flows tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].slice(1).map((td) => td.textContent)));
    expect(rows.length).toBeGreaterThan(0);
    expect(rows[0]).toEqual(['ingress syn', 'refused', 'policy', 'default:reject', '5432']);
    const why = await page.textContent('#explanation');
    expect(why).toContain('decision: refuse — rule default:reject');
    expect(why).toContain('web-to-api');
    // docs/ui.png is made this way: TESSERA_UI_SCREENSHOT=docs/ui.png (a path from the repository).
    if (process.env.TESSERA_UI_SCREENSHOT) await page.screenshot({ path: join(REPO, process.env.TESSERA_UI_SCREENSHOT) });
  });

  it('updates live: a new refused connection appears on the open page without a reload', async () => {
    await page.click('#close-details');
    const r = await a.runPu(['app=batch'], wget(b.addr, 8080));
    expect(r.code).not.toBe(0);
    await page.waitForFunction(() => (globalThis as any).__tessera.cy.getElementById('pu:app=batch->pu:app=api').hasClass('refused'), undefined, { timeout: 15_000 });
  });
});
