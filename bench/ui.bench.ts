// The flow map in Chromium with a large generated map: time to first render and to an
// interactive map, from navigation start. Usage: npx tsx bench/ui.bench.ts [--groups 500]
// [--edges 2000] [--runs 5] [--json]. Needs Debian's chromium (scripts/setup.sh), not root.
//
//   first render   the page's nodes and edges are on screen (a grid, before the layout)
//   interactive    the worker's layout is applied and drawn; pan, zoom and click work
//   edge click     a click on an edge until its flows and explanation are shown
//   graph API      the server's /api/graph (aggregation of every record, JSON) as seen by fetch
//
// Each run is a fresh page (module, cytoscape and worker loaded anew; the HTTP cache is off).

import { parseArgs } from 'node:util';
import { createUiHandler } from '../src/ui/server.js';
import { startUiServer } from '../src/ui/listen.js';
import { generateFlows, haveChromium, launchChromium, CHROMIUM } from './lib/ui-fixture.js';

const { values } = parseArgs({
  options: {
    groups: { type: 'string', default: '500' },
    edges: { type: 'string', default: '2000' },
    runs: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
  },
});
const groups = Number(values.groups);
const edgeCount = Number(values.edges);
const runs = Math.min(Math.max(Number(values.runs) || 5, 1), 50);

if (!haveChromium) {
  process.stderr.write(`bench/ui: no chromium at ${CHROMIUM}: run scripts/setup.sh as root (apt-get install chromium)\n`);
  process.exit(1);
}

const flows = generateFlows(groups, edgeCount);
const handler = createUiHandler({
  recentFlows: () => flows,
  subscribeFlows: () => () => {},
  explain: (q) => ({ decision: { allow: true, ruleId: 'bench' }, chain: [{ direction: q.direction, ruleId: 'bench', line: 1, matched: true, why: 'generated' }] }),
  local: () => ({ host: 'bench', pus: [] }),
});
const server = await startUiServer({ host: '127.0.0.1', port: 0, loopback: true }, handler);
const browser = await launchChromium();

interface Sample {
  firstRender: number;
  interactive: number;
  edgeClick: number;
  graphApi: number;
  nodes: number;
  edges: number;
}
const samples: Sample[] = [];
try {
  for (let i = 0; i < runs; i++) {
    const context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
    const page = await context.newPage();
    await page.route('**/*', (route) => route.continue()); // no HTTP cache between runs
    await page.goto(`http://127.0.0.1:${server.port}/?since=1d`);
    await page.waitForSelector('body[data-state="ready"]', { timeout: 120_000 });
    const s = await page.evaluate(async () => {
      const t = (globalThis as any).__tessera;
      const e = t.cy.edges()[0];
      const t0 = performance.now();
      e.emit('tap');
      const doc = (globalThis as any).document;
      while (doc.querySelector('#details').dataset.state !== 'ready') await new Promise((r) => setTimeout(r, 5));
      const edgeClick = performance.now() - t0;
      const g0 = performance.now();
      await (await fetch('/api/graph?since=1d')).json();
      return { firstRender: t.perf.firstRenderAt, interactive: t.perf.interactiveAt, edgeClick, graphApi: performance.now() - g0, nodes: t.cy.nodes(':childless').length, edges: t.cy.edges().length };
    });
    samples.push(s);
    process.stderr.write(`run ${i + 1}/${runs}: first render ${s.firstRender.toFixed(0)} ms, interactive ${s.interactive.toFixed(0)} ms, edge click ${s.edgeClick.toFixed(0)} ms\n`);
    await context.close();
  }
} finally {
  await browser.close();
  await server.close();
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const row = (k: keyof Sample): string => {
  const xs = samples.map((s) => s[k]);
  return `| ${k} | ${median(xs).toFixed(0)} | ${Math.min(...xs).toFixed(0)} | ${Math.max(...xs).toFixed(0)} |`;
};
if (values.json) {
  process.stdout.write(JSON.stringify({ groups, edges: edgeCount, records: flows.length, chromium: CHROMIUM, samples }, null, 2) + '\n');
} else {
  process.stdout.write(
    [
      `${samples[0]!.nodes} PU groups, ${samples[0]!.edges} edges, ${flows.length} records; ${runs} runs, ms`,
      '',
      '| measure | median | min | max |',
      '|---|---|---|---|',
      row('firstRender'),
      row('interactive'),
      row('edgeClick'),
      row('graphApi'),
      '',
    ].join('\n'),
  );
}
