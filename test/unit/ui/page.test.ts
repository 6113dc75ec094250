// The flow map page in a real headless Chromium (Debian's), served by the UI handler on
// loopback with injected flow records: nodes, edges and their classes, the filter state in
// the URL, a click on an edge (its flows, reason codes, the explanation), live updates,
// islands, and the token.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { FlowEntry } from '../../../src/api/schemas.js';
import { createUiHandler, type ExplainRequest } from '../../../src/ui/server.js';
import { startUiServer, type UiServer } from '../../../src/ui/listen.js';
import { flow, generateFlows, haveChromium, launchChromium } from '../../../bench/lib/ui-fixture.js';
import { skipBecause } from '../../helpers/skip.js';

skipBecause(!haveChromium, 'flow map page (chromium)', 'no chromium at /usr/bin/chromium: run scripts/setup.sh as root (apt-get install chromium)');

interface Fake {
  flows: FlowEntry[];
  subs: Set<(f: FlowEntry) => void>;
  explains: ExplainRequest[];
}

async function serve(fake: Fake, token?: string): Promise<UiServer> {
  const handler = createUiHandler({
    recentFlows: ({ since, until }) => fake.flows.filter((f) => (since === undefined || Date.parse(f.time) >= since) && (until === undefined || Date.parse(f.time) <= until)),
    subscribeFlows(fn) {
      fake.subs.add(fn);
      return () => void fake.subs.delete(fn);
    },
    explain(q) {
      fake.explains.push(q);
      const refused = q.port === 5432;
      return {
        decision: { allow: !refused, action: refused ? 'reject' : 'allow', ruleId: refused ? 'db-only-from-api' : 'web-to-api' },
        chain: [{ direction: q.direction, ruleId: refused ? 'db-only-from-api' : 'web-to-api', line: 7, matched: true, why: refused ? 'from: client has app=web, the rule needs app=api' : 'from app=web to app=api' }],
      };
    },
    local: () => ({ host: 'host-a', pus: [{ id: 'pu-idle', labels: ['app=idle'] }] }),
    ...(token ? { token } : {}),
  });
  return startUiServer({ host: '127.0.0.1', port: 0, loopback: true }, handler, token ? { token } : {});
}

type EdgeView = { id: string; classes: string[]; connections: number };

async function edges(page: Page): Promise<EdgeView[]> {
  return page.evaluate(() =>
    (globalThis as any).__tessera.cy.edges().map((e: any) => ({ id: e.id(), classes: e.classes(), connections: e.data('connections') })),
  );
}

async function nodes(page: Page): Promise<Array<{ id: string; classes: string[]; label: string }>> {
  return page.evaluate(() => (globalThis as any).__tessera.cy.nodes(':childless').map((n: any) => ({ id: n.id(), classes: n.classes(), label: n.data('label') })));
}

async function ready(page: Page): Promise<void> {
  await page.waitForSelector('body[data-state="ready"]', { timeout: 20_000 });
}

/** A real click on the middle of an edge as drawn. */
async function clickEdge(page: Page, id: string): Promise<void> {
  const p = await page.evaluate((edgeId) => {
    const cy = (globalThis as any).__tessera.cy;
    const e = cy.getElementById(edgeId);
    const mid = e.renderedMidpoint();
    const box = cy.container().getBoundingClientRect();
    return { x: box.left + mid.x, y: box.top + mid.y };
  }, id);
  await page.mouse.click(p.x, p.y);
  await page.waitForSelector(`#details[data-edge="${id}"][data-state="ready"]`, { timeout: 10_000 });
}

describe.skipIf(!haveChromium)('flow map page (chromium)', () => {
  let browser: Browser;
  let server: UiServer;
  const now = Date.now();
  const fake: Fake = {
    flows: [
      flow({ client: 'web', server: 'api', port: 8080, clientPort: 41000, time: now - 5000 }),
      flow({ client: 'web', server: 'api', port: 8080, clientPort: 41001, time: now - 4000 }),
      flow({ client: 'web', server: 'db', port: 5432, verdict: 'reject', reason: 'policy', ruleId: 'db-only-from-api', clientPort: 41002, time: now - 3000 }),
      flow({ client: 'api', server: 'db', port: 5432, reason: 'audit', ruleId: 'db-only-from-api', clientPort: 41003, time: now - 2000 }),
      flow({ client: { addr: '192.0.2.7' }, server: 'web', port: 443, clientPort: 50000, time: now - 1000 }),
      // Old: only inside a longer time range.
      flow({ client: 'batch', server: 'api', port: 8080, clientPort: 41004, time: now - 3 * 3600_000 }),
    ],
    subs: new Set(),
    explains: [],
  };
  let base: string;

  beforeAll(async () => {
    server = await serve(fake);
    base = `http://127.0.0.1:${server.port}`;
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('draws groups as nodes and each edge with the class of its latest verdict', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${base}/?since=1h`);
    await ready(page);
    const ns = await nodes(page);
    expect(ns.map((n) => n.id).sort()).toEqual(['addr:192.0.2.0/24', 'pu:app=api', 'pu:app=db', 'pu:app=idle', 'pu:app=web']);
    expect(ns.find((n) => n.id === 'addr:192.0.2.0/24')!.classes).toContain('address');
    expect(ns.find((n) => n.id === 'pu:app=web')!.classes).toContain('pu');
    const es = await edges(page);
    const byId = Object.fromEntries(es.map((e) => [e.id, e]));
    expect(Object.keys(byId).sort()).toEqual(['addr:192.0.2.0/24->pu:app=web', 'pu:app=api->pu:app=db', 'pu:app=web->pu:app=api', 'pu:app=web->pu:app=db']);
    expect(byId['pu:app=web->pu:app=api']!.classes).toEqual(['allowed']);
    expect(byId['pu:app=web->pu:app=api']!.connections).toBe(2);
    expect(byId['pu:app=web->pu:app=db']!.classes).toEqual(['refused']);
    expect(byId['pu:app=api->pu:app=db']!.classes).toEqual(['audit']);
    // The refused edge is drawn red, the allowed one green: the style is what a person sees.
    const colors = await page.evaluate(() => {
      const cy = (globalThis as any).__tessera.cy;
      return { refused: cy.getElementById('pu:app=web->pu:app=db').style('line-color'), allowed: cy.getElementById('pu:app=web->pu:app=api').style('line-color') };
    });
    expect(colors.refused).toBe('rgb(198,40,40)');
    expect(colors.allowed).toBe('rgb(46,125,50)');
    await expect(page.textContent('#status')).resolves.toContain('4 edges (1 refused)');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('keeps the filters in the URL: a verdict filter from the form, and the same view from the link', async () => {
    const page = await browser.newPage();
    await page.goto(`${base}/?since=1h`);
    await ready(page);
    await page.check('input[name=verdict][value=refused]');
    await page.fill('input[name=port]', '5432');
    await page.click('button[type=submit]');
    await page.waitForFunction(() => (globalThis as any).__tessera.cy.edges().length === 1);
    await ready(page);
    const url = new URL(page.url());
    expect(url.searchParams.get('verdict')).toBe('refused');
    expect(url.searchParams.get('port')).toBe('5432');
    expect((await edges(page)).map((e) => e.id)).toEqual(['pu:app=web->pu:app=db']);
    // The link opens the same view in a fresh page.
    const other = await browser.newPage();
    await other.goto(page.url());
    await ready(other);
    expect((await edges(other)).map((e) => e.id)).toEqual(['pu:app=web->pu:app=db']);
    await expect(other.inputValue('input[name=port]')).resolves.toBe('5432');
    await expect(other.isChecked('input[name=verdict][value=refused]')).resolves.toBe(true);
    await other.close();
    await page.close();
  });

  it('shows history within the time range: an old flow appears only in a longer range', async () => {
    const page = await browser.newPage();
    await page.goto(`${base}/?since=1h`);
    await ready(page);
    expect((await edges(page)).map((e) => e.id)).not.toContain('pu:app=batch->pu:app=api');
    await page.goto(`${base}/?since=4h`);
    await ready(page);
    expect((await edges(page)).map((e) => e.id)).toContain('pu:app=batch->pu:app=api');
    await page.close();
  });

  it('opens an edge on click: its flows with reason codes, the deciding rule and the explanation', async () => {
    const page = await browser.newPage();
    await page.goto(`${base}/?since=1h`);
    await ready(page);
    fake.explains.length = 0;
    await clickEdge(page, 'pu:app=web->pu:app=db');
    expect(new URL(page.url()).searchParams.get('edge')).toBe('pu:app=web->pu:app=db');
    const rows = await page.$$eval('#flows tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    expect(rows).toHaveLength(1);
    expect(rows[0]!.slice(1)).toEqual(['egress syn-ack', 'refused', 'policy', 'db-only-from-api', '5432']);
    await expect(page.textContent('#edge-title')).resolves.toBe('app=web → app=db');
    const why = await page.textContent('#explanation');
    expect(why).toContain('decision: refuse — rule db-only-from-api');
    expect(why).toContain('the rule needs app=api');
    // The explanation is asked for the latest flow of that edge, from the client's host.
    expect(fake.explains).toEqual([{ from: ['app=web', 'env=test'], to: ['app=db', 'env=test'], port: 5432, direction: 'egress' }]);
    // A shared link with the edge opens its details.
    const other = await browser.newPage();
    await other.goto(page.url());
    await other.waitForSelector('#details[data-state="ready"]');
    await expect(other.textContent('#edge-title')).resolves.toBe('app=web → app=db');
    await other.close();
    await page.close();
  });

  it('updates live from the event stream: a new refused flow turns its edge red', async () => {
    const page = await browser.newPage();
    await page.goto(`${base}/?since=1h`);
    await ready(page);
    await page.waitForFunction(() => true);
    await expect.poll(() => fake.subs.size, { timeout: 10_000 }).toBeGreaterThan(0);
    const f = flow({ client: 'web', server: 'api', port: 8080, verdict: 'reject', reason: 'bad-signature', ruleId: 'protocol', clientPort: 41999 });
    fake.flows.push(f);
    for (const s of fake.subs) s(f);
    await page.waitForFunction(() => (globalThis as any).__tessera.cy.getElementById('pu:app=web->pu:app=api').hasClass('refused'), undefined, { timeout: 10_000 });
    const e = (await edges(page)).find((x) => x.id === 'pu:app=web->pu:app=api')!;
    expect(e.classes).toEqual(['refused', 'mixed']);
    expect(e.connections).toBe(3);
    fake.flows.pop();
    await page.close();
  });

  it('groups a large map into islands and lays it out in the worker', async () => {
    const big: Fake = { flows: generateFlows(120, 300, 20), subs: new Set(), explains: [] };
    const s2 = await serve(big);
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`http://127.0.0.1:${s2.port}/?since=1h`);
      await ready(page);
      const info = await page.evaluate(() => {
        const cy = (globalThis as any).__tessera.cy;
        const islands = cy.nodes('.island');
        const xs = cy.nodes(':childless').map((n: any) => Math.round(n.position('x')));
        return { islands: islands.length, children: islands.children().length, edges: cy.edges().length, distinctX: new Set(xs).size, refused: cy.edges('.refused').length };
      });
      expect(info.islands).toBe(6);
      expect(info.children).toBe(120); // the local idle PU is an island of one: no frame around it
      expect(info.edges).toBe(300);
      expect(info.refused).toBe(60);
      expect(info.distinctX).toBeGreaterThan(50); // laid out, not left on the grid's few columns
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      await s2.close();
    }
  });

  it('with a token: the page loads, the API refuses without it, and the link does not carry it', async () => {
    const s3 = await serve(fake, 'a-long-enough-secret-token');
    try {
      const page = await browser.newPage();
      const anon = await page.request.get(`http://127.0.0.1:${s3.port}/api/graph`);
      expect(anon.status()).toBe(401);
      await page.goto(`http://127.0.0.1:${s3.port}/?since=1h&token=a-long-enough-secret-token`);
      await ready(page);
      expect((await edges(page)).length).toBe(4);
      expect(new URL(page.url()).searchParams.has('token')).toBe(false);
      await page.close();
    } finally {
      await s3.close();
    }
  });
});
