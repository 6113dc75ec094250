// Loss-proof handshakes (issue 12, item 5): with 5 % of the packets dropped at random in both
// directions by a router namespace between the hosts, 1,000 sequential request/response
// connections between two PUs through Tessera all complete, as TCP's own retransmissions
// make them complete without Tessera (the control run, between the same hosts' own
// processes, which no Tessera rule matches, at the same time through the same router).
// Bounded by count and an overall time cap; no duration is asserted.
//
// LOSS_CONNECTIONS overrides the count (e.g. 150 to watch protocol v1 fail quickly: its proof
// rode on the client's first ACK, which TCP never retransmits, and a lost one stalled the
// connection for good).

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isRoot, uniquePrefix } from '../../scripts/lib/netns.js';
import { createRouted, type Routed } from '../helpers/router.js';
import { skipBecause } from '../helpers/skip.js';
import { metricSums } from '../helpers/metrics.js';

const here = dirname(fileURLToPath(import.meta.url));
const HELPER = join(here, '..', 'helpers', 'seq-conn.mjs');
const COUNT = Number(process.env.LOSS_CONNECTIONS ?? 1000);
const PU_PORT = 8120;
const HOST_PORT = 8121;
/** One connection's bound: covers 6 consecutive SYN losses (1+2+4+8+16+32 s). */
const CONN_TIMEOUT_MS = 70_000;
/** The whole run's bound. */
const RUN_MS = 900_000;

interface Done {
  ev: 'done';
  attempts: number;
  completed: number;
  failures: Array<{ i: number; error: string; at: string }>;
}

skipBecause(!isRoot, 'loss test (needs root)', 'integration tests need root: run npm test as root');

describe.runIf(isRoot)('5 % random loss both ways: every connection completes, with and without Tessera', () => {
  let net: Routed;

  beforeAll(async () => {
    net = await createRouted({ prefix: uniquePrefix('fp'), netA: 120, netB: 121 });
    // Drop 5 % of the forwarded packets, both directions, every kind.
    await net.router.exec(['iptables', '-A', 'FORWARD', '-m', 'statistic', '--mode', 'random', '--probability', '0.05', '-j', 'DROP']);
    const node = process.execPath;
    net.b.spawnPu(['app=loss'], [node, HELPER, 'serve', String(PU_PORT), String(RUN_MS + 60_000)]);
    net.b.spawn([node, HELPER, 'serve', String(HOST_PORT), String(RUN_MS + 60_000)]);
    await net.b.waitForListener(PU_PORT, 20_000);
  }, 120_000);

  afterAll(async () => {
    await net?.destroy();
  }, 120_000);

  it(`${COUNT} sequential connections complete through Tessera, and without it`, async () => {
    const node = process.execPath;
    const runArgs = (port: number) => [node, HELPER, 'run', net.b.addr, String(port), String(COUNT), String(CONN_TIMEOUT_MS), String(RUN_MS)];
    const parse = (stdout: string): Done => JSON.parse(stdout.trim().split('\n').pop()!) as Done;
    const [pu, control] = await Promise.all([
      net.a.runPu(['app=loss'], runArgs(PU_PORT), RUN_MS + 120_000),
      net.a.exec(runArgs(HOST_PORT), { timeoutMs: RUN_MS + 120_000 }),
    ]);
    const withTessera = parse(pu.stdout);
    const without = parse(control.stdout);
    const dropped = await net.router.exec(['iptables', '-nvxL', 'FORWARD']);
    const verdicts = (socket: string) => metricSums(socket, /^tessera_verdicts_total\{[^}]*verdict="([^"]+)"[^}]*\} (\d+)$/gm);
    const status = { a: await verdicts(net.a.socket), b: await verdicts(net.b.socket) };
    console.log(JSON.stringify({ withTessera, without, router: dropped.stdout, status }, null, 1));
    // The drops really happened (a 5 % rule over thousands of packets drops some).
    expect(/^\s*(\d+)/m.exec(dropped.stdout.split('\n').find((l) => l.includes('statistic')) ?? '')?.[1] ?? '0').not.toBe('0');
    expect(without.attempts).toBe(COUNT);
    expect(without.completed).toBe(COUNT);
    expect(withTessera.failures).toEqual([]);
    expect(withTessera.attempts).toBe(COUNT);
    expect(withTessera.completed).toBe(COUNT);
    // The connections were judged by Tessera: b authorized them (flow records are the
    // deciding steps; the counters keep every one).
    expect(status.b.accept ?? 0).toBeGreaterThanOrEqual(COUNT);
  }, RUN_MS + 240_000);
});
