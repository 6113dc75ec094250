// Enrollment before the first packet (issue 10, case 1): a server started with `tessera run`
// is protected from its first listen(), not from the moment a port scan notices it. An
// unprotected client on c connects in a tight loop (bounded in count and time) while the
// server starts and stops three times on b; every connection it establishes is counted.
// The kernel's socket lookup (table inet tessera, `socket cgroupv2`) sends the first SYN to a
// new PU listener to the queue, where it is refused for want of a token.

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCluster, sleep, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, killAndWait, uniquePrefix } from '../../scripts/lib/netns.js';
import { skipBecause } from '../helpers/skip.js';

skipBecause(!isRoot, 'workload start (needs root)', 'integration tests need root: run npm test as root');

/** Connect to host:port over and over (each attempt at most 200 ms, 10 ms apart) until `ms` pass or `max` attempts; print {ok, tries}. */
const PROBE = `
const net = require('node:net');
const [host, port, ms, max] = process.argv.slice(1);
let ok = 0, tries = 0;
const end = Date.now() + Number(ms);
function one() {
  if (Date.now() > end || tries >= Number(max)) { console.log(JSON.stringify({ ok, tries })); return; }
  tries++;
  const s = net.connect({ host, port: Number(port) });
  const t = setTimeout(() => s.destroy(), 200);
  s.on('connect', () => { ok++; s.destroy(); });
  s.on('error', () => {});
  s.on('close', () => { clearTimeout(t); setTimeout(one, 10); });
}
one();
`;

describe.runIf(isRoot)('a PU server is protected from its first listen()', () => {
  let cluster: Cluster;
  let b: TesseraHost, c: TesseraHost, a: TesseraHost;
  let www: string;
  const PAGE = 'hello from web\n';

  beforeAll(async () => {
    cluster = await createCluster({ prefix: uniquePrefix('ws'), hosts: ['a', 'b', 'c'], subnet: 93, trust: 'psk', start: false });
    [a, b, c] = [cluster.host('a'), cluster.host('b'), cluster.host('c')];
    await Promise.all([a.startDaemon(), b.startDaemon()]);
    www = mkdtempSync(join(tmpdir(), 'tessera-ws-www-'));
    writeFileSync(join(www, 'index.html'), PAGE);
  }, 120_000);

  afterAll(async () => {
    await cluster?.destroy();
    if (www) rmSync(www, { recursive: true, force: true });
  });

  it('an unprotected client connecting every 10 ms establishes nothing across three server starts', async () => {
    const PORT = 8090;
    const probe = c.spawn([process.execPath, '-e', PROBE, b.addr, String(PORT), '9000', '3000']);
    let out = '';
    probe.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const done = new Promise<void>((r) => probe.once('exit', () => r()));
    let served = 0;
    try {
      for (let round = 0; round < 3; round++) {
        const server = b.spawnPu(['app=web'], ['busybox', 'httpd', '-f', '-p', String(PORT), '-h', www]);
        try {
          await b.waitForListener(PORT);
          // The PU is served to a same-label client while the probe keeps knocking.
          if ((await a.runPu(['app=web'], ['timeout', '5', 'busybox', 'wget', '-q', '-O', '-', `http://${b.addr}:${PORT}/`])).stdout === PAGE) served++;
          await sleep(300);
        } finally {
          await killAndWait(server);
        }
        await sleep(400);
      }
    } finally {
      await done;
      await killAndWait(probe);
    }
    const r = JSON.parse(out.trim()) as { ok: number; tries: number };
    console.log(`unprotected client: ${r.ok} established in ${r.tries} attempts over 3 server starts; same-label client served ${served}/3`);
    expect(r.tries).toBeGreaterThan(50);
    expect(r.ok).toBe(0);
    expect(served).toBe(3);
  });
});
