// Protocol v2's attack properties on the real kernel path (issue 12, "Done when"): a client PU
// on host a, a server PU on host b, and an on-path attacker on the router r between them (an
// NFQUEUE tap in r's raw table sees and may rewrite every forwarded packet; a raw socket on r
// sends whatever bytes it likes, with any source address). Each attack is asserted by its
// outcome (b's reason counters, what b's stack holds, whether a's connect completes), and
// every one is followed by a legitimate connection that must still complete.
//
//   replay of a captured SYN: verbatim inside the window (replay), from another address
//   (replay: the proof leaves the tuple out for NAT, the host's shared strike register refuses it), verbatim outside the window (stale), after b's daemon restarted (restarted,
//   or stale when the restart outlasted the window); on-path tamper of the SYN's and of the
//   SYN-ACK's MAC (bad-mac at the receiver, the client refused at once); a lost SYN, SYN-ACK
//   and ACK (each connection completes through TCP's retransmissions); a full strike register
//   (register-full, counted, never accepted; the connections complete once entries expire).

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { waitFor, sleep } from '../../scripts/lib/cluster.js';
import { isRoot, uniquePrefix } from '../../scripts/lib/netns.js';
import { TCP, flagsOf, fromHex, insertRule, parse, rewritePacket, startHelper, tcpSockets, type Helper, type HelperEvent } from '../helpers/attack.js';
import { metricSums, reasonCounts } from '../helpers/metrics.js';
import { createRouted, type Routed } from '../helpers/router.js';
import { skipBecause } from '../helpers/skip.js';

const here = dirname(fileURLToPath(import.meta.url));
const HELPER = join(here, '..', 'helpers', 'seq-conn.mjs');
const PORT = 8122;
const LIFE_MS = 600_000;

interface Done {
  attempts: number;
  completed: number;
  failures: Array<{ i: number; error: string }>;
}

skipBecause(!isRoot, 'v2 replay, tamper and loss attacks (needs root)', 'integration tests need root: run npm test as root');

describe.runIf(isRoot)('protocol v2 against an on-path attacker, on the real kernel path', () => {
  let net: Routed;
  let server: ChildProcess;
  const node = process.execPath;

  /** `count` sequential connections from a's client PU to b's server PU. */
  async function connect(count = 1, timeoutMs = 20_000): Promise<Done> {
    const r = await net.a.runPu(['app=v2'], [node, HELPER, 'run', net.b.addr, String(PORT), String(count), String(timeoutMs), String(timeoutMs * count + 5000)], timeoutMs * count + 20_000);
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as Done;
  }
  const delta = (after: Record<string, number>, before: Record<string, number>): Record<string, number> =>
    Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]).filter(([, v]) => (v as number) !== 0));
  const verdicts = (socket: string) => metricSums(socket, /^tessera_verdicts_total\{[^}]*verdict="([^"]+)"[^}]*\} (\d+)$/gm);
  /** Wait until b's reason counters moved by `want` (exactly those reasons, at least those counts). */
  async function reasonsMoved(before: Record<string, number>, want: Record<string, number>, what: string): Promise<Record<string, number>> {
    return waitFor(what, async () => {
      const d = delta(await reasonCounts(net.b.socket), before);
      return Object.entries(want).every(([k, n]) => (d[k] ?? 0) >= n) ? d : null;
    }, 10_000, 100);
  }

  /** A tap on the router's forwarded packets matching `match`, in `mode`; removed by the returned function. */
  async function tap(queue: number, mode: string, match: string[]): Promise<{ helper: Helper; stop: () => Promise<void> }> {
    const helper = await startHelper(net.router, 'tap-queue.mjs', [String(queue), mode]);
    const remove = await insertRule(net.router, 'raw', 'PREROUTING', ['-p', 'tcp', ...match, '-j', 'NFQUEUE', '--queue-num', String(queue)]);
    return {
      helper,
      stop: async () => {
        await remove();
        await helper.stop();
      },
    };
  }

  /** Capture the tagged SYN of one legitimate connection from a. */
  async function captureSyn(): Promise<Uint8Array> {
    const t = await tap(21, 'copy', ['-s', net.a.addr, '-m', 'tcp', '--syn', '--tcp-option', '253']);
    try {
      const done = await connect();
      expect(done.completed).toBe(1);
      const ev = await t.helper.waitFor('a tagged SYN from a', (e) => e.ev === 'packet');
      return fromHex(ev.hex as string);
    } finally {
      await t.stop();
    }
  }

  beforeAll(async () => {
    net = await createRouted({ prefix: uniquePrefix('fp'), netA: 123, netB: 124 });
    server = net.b.spawnPu(['app=v2'], [node, HELPER, 'serve', String(PORT), String(LIFE_MS)]);
    await net.b.waitForListener(PORT, 20_000);
    // First contact (a retry exchange teaches a the key of b); every later connection takes four passes.
    const first = await connect();
    expect(first.completed).toBe(1);
  }, 120_000);

  afterAll(async () => {
    await net?.destroy();
  }, 120_000);

  it('a captured SYN replayed verbatim inside the window establishes nothing; from another address it is refused (replay), outside the window too (stale)', async () => {
    // Breaks if the strike register or the freshness check is gone (the verbatim copy would be
    // accepted and reach b's stack), or if the register does not refuse the same proof from
    // another tuple (the proof leaves the tuple out, for NAT: the register is all that stops it).
    const syn = await captureSyn();
    const synPkt = parse(syn);
    expect(flagsOf(synPkt)).toBe(TCP.SYN);
    const raw = await startHelper(net.router, 'tap-raw.mjs', [net.b.addr]);
    try {
      let before = await reasonCounts(net.b.socket);
      // Verbatim, inside the window, while b remembers the handshake (64 s): the engine calls
      // it the same handshake; b's stack, whose connection is over, either ignores it (its
      // TIME_WAIT socket) or opens a new request with a new ISN, whose SYN-ACK is refused
      // ('replay', dropped). Either way nothing is authorized and nothing is established.
      raw.send({ cmd: 'send', hex: Buffer.from(syn).toString('hex') });
      await sleep(1500);
      const d0 = delta(await reasonCounts(net.b.socket), before);
      console.log(`verbatim replay inside the window: b's reasons ${JSON.stringify(d0)}`);
      expect(Object.keys(d0).filter((k) => k !== 'replay')).toEqual([]);
      const socks = await tcpSockets(net.b);
      expect(socks.filter((s) => s.state === 'ESTAB' && s.peer.startsWith(`${net.a.addr}:${synPkt.srcPort}`))).toEqual([]);
      expect(socks.filter((s) => s.state === 'SYN-RECV' && s.peer.startsWith(`${net.a.addr}:`)).length).toBeLessThanOrEqual(1);

      // From the router's own address and another port (a replayer that wants the SYN-ACK).
      before = await reasonCounts(net.b.socket);
      raw.send({ cmd: 'send', hex: rewritePacket(syn, { src: net.router.addr, sport: 30_000 + Math.floor(Math.random() * 20_000) }).toString('hex') });
      expect(await reasonsMoved(before, { replay: 1 }, 'b refusing the re-addressed replay')).toEqual({ replay: 1 });
      expect((await tcpSockets(net.b)).filter((s) => s.peer.startsWith(`${net.router.addr}:`))).toEqual([]);

      // Outside the freshness window (skew 3 s + transit 2 s): stale, whatever the register holds.
      await sleep(6000);
      before = await reasonCounts(net.b.socket);
      raw.send({ cmd: 'send', hex: Buffer.from(syn).toString('hex') });
      expect(await reasonsMoved(before, { stale: 1 }, 'b refusing the old replay')).toEqual({ stale: 1 });
      const flows = await net.b.flows();
      for (const reason of ['replay', 'stale']) expect(flows.some((f) => f.verdict === 'reject' && f.reason === reason && f.stage === 'syn'), reason).toBe(true);
    } finally {
      await raw.stop();
    }
    expect((await connect()).completed).toBe(1);
  }, 90_000);

  it("refuses a SYN captured before b's daemon restarted (restarted, or stale once the window passed)", async () => {
    // Breaks if a restarted daemon, whose strike register is empty, accepted a proof its
    // previous run may have seen.
    const syn = await captureSyn();
    await net.b.stopDaemon();
    await net.b.startDaemon();
    const raw = await startHelper(net.router, 'tap-raw.mjs', [net.b.addr]);
    try {
      const before = await reasonCounts(net.b.socket);
      raw.send({ cmd: 'send', hex: Buffer.from(syn).toString('hex') });
      const d = await waitFor('b refusing the replay after its restart', async () => {
        const x = delta(await reasonCounts(net.b.socket), before);
        return (x.restarted ?? 0) + (x.stale ?? 0) >= 1 ? x : null;
      }, 10_000, 100);
      console.log(`replay after restart: ${JSON.stringify(d)}`);
      expect(Object.keys(d).every((k) => k === 'restarted' || k === 'stale')).toBe(true);
      expect((await verdicts(net.b.socket)).accept ?? 0).toBe(0);
    } finally {
      await raw.stop();
    }
    // The restarted daemon serves: a's SYNs in its first seconds are dropped ('restarted'), the
    // retransmission passes.
    await net.b.waitForListener(PORT, 20_000);
    expect((await connect()).completed).toBe(1);
  }, 90_000);

  it("refuses a SYN and a SYN-ACK whose MAC was changed on the path (bad-mac), at once, and accepts them untouched", async () => {
    for (const [mode, host] of [['tamper-v2-syn', 'b'], ['tamper-v2-synack', 'a']] as const) {
      const src = mode === 'tamper-v2-syn' ? net.a.addr : net.b.addr;
      const t = await tap(22, mode, ['-s', src, '-m', 'tcp', '--tcp-option', '253']);
      try {
        const at = host === 'b' ? net.b : net.a;
        const before = await reasonCounts(at.socket);
        const done = await connect(1, 8000);
        // Refused with a reset (the client's connect fails at once), not a timeout.
        expect(done.completed, mode).toBe(0);
        expect(['ECONNREFUSED', 'ECONNRESET'], `${mode}: ${JSON.stringify(done.failures)}`).toContain(done.failures[0]?.error);
        await t.helper.waitFor(`the tap's edit (${mode})`, (e: HelperEvent) => e.ev === 'packet' && e.tampered === true, 2000);
        // Workers report their counters every 250 ms.
        const d = await waitFor(`${host}'s bad-mac count (${mode})`, async () => {
          const x = delta(await reasonCounts(at.socket), before);
          return (x['bad-mac'] ?? 0) >= 1 ? x : null;
        }, 5000, 100);
        expect(Object.keys(d), `${mode}: ${JSON.stringify(d)}`).toEqual(['bad-mac']);
      } finally {
        await t.stop();
      }
    }
    expect((await connect()).completed).toBe(1);
  }, 90_000);

  it('completes a connection whose SYN, SYN-ACK or ACK was lost, through TCP retransmissions alone', async () => {
    // Breaks if a retransmitted SYN on a flow b already authorized, or a retransmitted SYN-ACK,
    // were not judged again (an untagged SYN-ACK would be refused by a), or if the ACK carried
    // anything a lost copy would take with it.
    for (const [mode, from] of [['drop-syn', net.a.addr], ['drop-synack', net.b.addr], ['drop-ack', net.a.addr]] as const) {
      const t = await tap(23, mode, ['-s', from]);
      try {
        const before = await verdicts(net.b.socket);
        const done = await connect(1, 30_000);
        expect(done, mode).toMatchObject({ completed: 1, failures: [] });
        await t.helper.waitFor(`the lost packet (${mode})`, (e: HelperEvent) => e.ev === 'packet' && e.dropped === true, 2000);
        await sleep(600); // workers report their counters every 250 ms
        const d = delta(await verdicts(net.b.socket), before);
        // b judged a SYN twice when the SYN-ACK was lost (the client's retransmission).
        if (mode === 'drop-synack') expect(d.accept ?? 0, JSON.stringify(d)).toBeGreaterThanOrEqual(3);
        expect(d.reject ?? 0, `${mode}: ${JSON.stringify(d)}`).toBe(0);
      } finally {
        await t.stop();
      }
    }
  }, 120_000);

  it('refuses new proofs while the strike register is full (register-full, counted), never accepting one', async () => {
    await net.b.stopDaemon();
    await net.b.startDaemon([], { TESSERA_TEST_REGISTER_ENTRIES: '2' });
    await net.b.waitForListener(PORT, 20_000);
    await sleep(3500); // past the restart's window: proofs are judged by the register alone
    const before = await reasonCounts(net.b.socket);
    // Entries live 8 s: the third connection within that time finds the register full; its
    // SYN is dropped and retransmitted until an entry expires, then it completes.
    const done = await connect(4, 40_000);
    expect(done).toMatchObject({ completed: 4, failures: [] });
    const d = delta(await reasonCounts(net.b.socket), before);
    console.log(`register full: ${JSON.stringify(d)}`);
    expect(d['register-full'] ?? 0).toBeGreaterThanOrEqual(1);
    expect((await net.b.flows()).some((f) => f.verdict === 'reject' && f.reason === 'register-full')).toBe(true);
    await net.b.stopDaemon();
    await net.b.startDaemon();
  }, 180_000);
});
