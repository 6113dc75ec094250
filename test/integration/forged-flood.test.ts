// Issue #10, case 11 (CPU), on the real kernel path: forged tokens sent to a CA-mode daemon
// from an attacker's raw socket. One forgery repeated from many addresses must cost one
// signature verification (negative cache); distinct forgeries from one address must stop
// costing verifications once that address's budget is spent (`rate-limited`, dropped
// unverified), while another address keeps its own budget. Counts come from the daemon's
// metrics: reasons, and token verifications actually computed (cache misses).
//
// Host c holds a certificate from the cluster CA (the insider case: signatures that would
// verify if not flipped); b serves busybox httpd as PU app=nginx on :80 under a daemon.

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCluster, sleep, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, uniquePrefix } from '../../scripts/lib/netns.js';
import { createEphemeralKey, createTokenIssuer, parseHostIdentityFile, type CaHostIdentity } from '../../src/identity/index.js';
import { startHelper, type Helper } from '../helpers/attack.js';
import { metricSums, reasonCounts } from '../helpers/metrics.js';
import { MARKER, TCP, buildSegment, flipSignature, linuxSynOptions, synBlock } from '../helpers/hostile-packets.js';
import { skipBecause } from '../helpers/skip.js';

skipBecause(!isRoot, 'forged-token floods (needs root)', 'integration tests need root: run npm test as root');

/** The daemon's defaults (src/datapath/handshake/types.ts): failed verifications per source at once. */
const BURST = 32;

describe.runIf(isRoot)('forged-token floods cost a lookup when repeated and a bounded budget per source when new', () => {
  let cluster: Cluster;
  let b: TesseraHost, c: TesseraHost;
  let raw: Helper;
  let www: string;
  let forged: string[] = [];
  let msgId = 0;
  let port = 30_000;

  async function counts(): Promise<{ reasons: Record<string, number>; verified: number }> {
    const reasons = await reasonCounts(b.socket);
    const misses = await metricSums(b.socket, /^tessera_cache_misses_total\{[^}]*cache="(token)"[^}]*\} (\d+)$/gm);
    return { reasons, verified: misses.token ?? 0 };
  }
  /** Send one tagged SYN per token to b:80, each from `src` (c's address unless spoofed) and a new port. */
  async function sendSyns(tokens: string[], src: string[]): Promise<void> {
    const id = ++msgId;
    const packets = tokens.map((t, i) =>
      buildSegment({
        src: src[i % src.length]!,
        dst: b.addr,
        sport: port++,
        dport: 80,
        seq: randomBytes(4).readUInt32BE(0),
        flags: TCP.SYN,
        options: [...MARKER, ...linuxSynOptions()],
        payload: synBlock(t),
        ipId: 1 + (randomBytes(2).readUInt16BE(0) % 0xfffe),
      }).toString('hex'),
    );
    raw.send({ cmd: 'send', id, packets });
    const ev = await raw.waitFor(`send #${id}`, (e) => e.ev === 'sent' && e.id === id, 10_000);
    expect((ev.results as unknown[]).every((r) => typeof r === 'number'), `c's kernel refused to send: ${JSON.stringify(ev.results)}`).toBe(true);
  }
  /** Counter deltas once the expected number of refusals showed up (worker stats arrive every 250 ms). */
  async function deltaAfter(before: { reasons: Record<string, number>; verified: number }, refusals: number) {
    const d = async () => {
      const now = await counts();
      const reasons: Record<string, number> = {};
      for (const [k, v] of Object.entries(now.reasons)) if (v !== (before.reasons[k] ?? 0)) reasons[k] = v - (before.reasons[k] ?? 0);
      return { reasons, verified: now.verified - before.verified };
    };
    for (let i = 0; i < 50; i++) {
      const x = await d();
      if (Object.values(x.reasons).reduce((n, v) => n + v, 0) >= refusals) break;
      await sleep(100);
    }
    await sleep(350);
    return d();
  }
  /** An address in b's subnet that no host holds: b's answers to it go nowhere, which is fine. */
  const spoofed = (n: number): string => b.addr.replace(/\.\d+$/, `.${200 + n}`);

  beforeAll(async () => {
    cluster = await createCluster({ prefix: uniquePrefix('ff'), hosts: ['b', 'c'], subnet: 95 + (process.pid % 5), trust: 'ca', start: false });
    [b, c] = [cluster.host('b'), cluster.host('c')];
    await b.startDaemon();
    www = mkdtempSync(join(tmpdir(), 'tessera-ff-www-'));
    writeFileSync(join(www, 'index.html'), 'hello\n');
    b.spawnPu(['app=nginx'], ['busybox', 'httpd', '-f', '-p', '80', '-h', www]);
    await b.waitForListener(80);
    raw = await startHelper(c, 'hostile-raw.mjs', ['4', b.addr]);
    // Distinct tokens signed by c's certified key, each with its signature flipped.
    const issuer = createTokenIssuer(parseHostIdentityFile(readFileSync(join(cluster.dir, 'keys', 'host-c.key.json'), 'utf8')) as CaHostIdentity);
    const now = Date.now() / 1000;
    forged = [];
    for (let i = 0; i < BURST + 21; i++) forged.push(flipSignature(await issuer.issue({ id: 'pu-attacker', labels: ['app=nginx'], epkPublicRaw: createEphemeralKey().publicRaw }, now, 600)));
  }, 120_000);

  afterAll(async () => {
    await raw?.stop().catch(() => undefined);
    await cluster?.destroy();
    if (www) rmSync(www, { recursive: true, force: true });
  }, 120_000);

  it('one forgery from 20 addresses: 20 refusals (bad-signature), 1 verification', async () => {
    const before = await counts();
    await sendSyns(Array(20).fill(forged[0]!), Array.from({ length: 20 }, (_, i) => spoofed(i)));
    expect(await deltaAfter(before, 20)).toEqual({ reasons: { 'bad-signature': 20 }, verified: 1 });
  });

  it(`${BURST + 19} new forgeries from one address: verified up to its budget, the rest dropped unverified; another address still verified`, async () => {
    const before = await counts();
    const fresh = forged.slice(1, BURST + 20);
    await sendSyns(fresh, [c.addr]);
    const d = await deltaAfter(before, fresh.length);
    const bad = d.reasons['bad-signature'] ?? 0;
    const limited = d.reasons['rate-limited'] ?? 0;
    // The bucket refills at 8/s: a slow send may buy one or two more verifications.
    expect({ total: bad + limited, verifiedEqualsRefusedAsBad: d.verified === bad, withinBudget: bad >= BURST && bad <= BURST + 2 }).toEqual({
      total: fresh.length,
      verifiedEqualsRefusedAsBad: true,
      withinBudget: true,
    });
    // Another source has a budget of its own: its new forgery is verified and refused for what it is.
    const other = await counts();
    await sendSyns([forged[BURST + 20]!], [spoofed(50)]);
    expect(await deltaAfter(other, 1)).toEqual({ reasons: { 'bad-signature': 1 }, verified: 1 });
  });
});
