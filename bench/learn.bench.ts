// Microbenchmark of learn mode's per-connection cost: EdgeTable.observe() for one deciding
// flow record (what each worker adds per decided handshake), next to the cost of building the
// record itself (the baseline every handshake already pays), in the same run.
// npm run build; node dist/bench/learn.bench.js  (or npx tsx bench/learn.bench.ts)

import { EdgeTable, type Observed } from '../src/learn/edges.js';
import { bench } from './lib/micro.js';

const serverLabels = Object.freeze(['app=db', 'env=prod', '@sys:name=db-0']);
const clients = Array.from({ length: 64 }, (_, i) => Object.freeze(['app=api', 'env=prod', `version=2.${i % 4}.0`, `@sys:name=api-${i}`]));
let n = 0;

/** The flow record a worker makes (outcome.ts), minus the address formatting. */
function record(): Observed {
  n++;
  return {
    time: 1_700_000_000_000 + n,
    direction: 'ingress',
    verdict: 'accept',
    localPu: 'db-0',
    localLabels: serverLabels,
    localPort: 5432,
    remoteAddr: '10.213.160.9',
    remotePort: 40000 + (n & 0x3fff),
    remotePu: `api-${n & 63}`,
    remoteLabels: clients[n & 63]!,
  };
}

const t = new EdgeTable();
const full = new EdgeTable(64);
for (let i = 0; i < 64; i++) full.observe(record());
console.log('learn mode: per-record cost (median of 15 batches)');
const base = bench('build a flow record (baseline)', () => record());
const obs = bench('build a record + observe (64 edges, existing)', () => t.observe(record()));
const fl = bench('build a record + observe, table full, new edge', () => full.observe({ ...record(), localPort: 1 + (n & 0x7fff) }));
console.log(`observe adds ~${(obs - base).toFixed(0)} ns per decided connection; a full table's refusal ~${(fl - base).toFixed(0)} ns`);
