// The handshake's security properties on the real kernel path, with a real attacker: an
// on-path tamperer (an NFQUEUE tap in the raw table, which runs before conntrack and before
// Tessera's mangle rules, so its edits are "on the wire"), a replay from a third namespace
// host through a raw socket, and a host whose certificate comes from another CA.
//
// Hosts a, b, c share one CA; d has its own. Server: busybox httpd as PU app=nginx on b:80.

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, writeFileSync, rmSync, createWriteStream, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createCluster, sleep, waitFor, TESSERA, type Cluster, type FlowJson, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, run, uniquePrefix } from '../../scripts/lib/netns.js';
import {
  TCP,
  blockType,
  flagsOf,
  fromHex,
  insertRule,
  isTagged,
  parse,
  rewritePacket,
  startHelper,
  tcpSockets,
  tsval,
  type Helper,
  type HelperEvent,
} from '../helpers/attack.js';
import { skipBecause } from '../helpers/skip.js';

/** Flow records as `tessera flows --json` prints them (FlowJson plus the fields we match on). */
type Flow = FlowJson & { time: string; remoteAddr: string; remotePort: number; localPort: number };

skipBecause(!isRoot, 'handshake properties on the kernel path (needs root)', 'integration tests need root: run npm test as root');

describe.runIf(isRoot)('handshake security properties on the real kernel path', () => {
  let cluster: Cluster;
  let a: TesseraHost, b: TesseraHost, c: TesseraHost, d: TesseraHost;
  let www: string;
  let caDir: string;
  let server: ChildProcess;
  let httpdLog = '';
  const logs: WriteStream[] = [];
  const PAGE = 'hello from nginx\n';
  const wget = (addr: string, seconds = 5) => ['timeout', String(seconds), 'busybox', 'wget', '-q', '-O', '-', `http://${addr}:80/`];

  async function flowsSince(h: TesseraHost, t0: number): Promise<Flow[]> {
    // Flow times come from the same machine clock (the workers' Date.now()).
    return ((await h.flows()) as Flow[]).filter((f) => Date.parse(f.time) >= t0);
  }

  beforeAll(async () => {
    cluster = await createCluster({ prefix: uniquePrefix('pr'), hosts: ['a', 'b', 'c', 'd'], subnet: 60, trust: 'ca', start: false });
    [a, b, c, d] = [cluster.host('a'), cluster.host('b'), cluster.host('c'), cluster.host('d')];
    // d's trust material comes from a second, unrelated CA, made with the CLI like the first.
    caDir = mkdtempSync(join(tmpdir(), 'tessera-pr-ca2-'));
    const node = process.execPath;
    const makeCa2 = (async () => {
      for (const argv of [
        [node, TESSERA, 'ca', 'init', '--out', caDir, '--name', 'other-ca'],
        [node, TESSERA, 'ca', 'issue', '--ca', join(caDir, 'ca.json'), '--host', 'host-d', '--out', caDir],
      ]) {
        const r = await run(argv, { timeoutMs: 30_000 });
        if (r.code !== 0) throw new Error(`${argv.slice(2).join(' ')} failed: ${r.stderr}`);
      }
    })();
    await Promise.all([a.startDaemon(), b.startDaemon(), c.startDaemon(), makeCa2]);
    // The same flags the harness gives every host, but with the other CA's files.
    const log = createWriteStream(d.logFile, { flags: 'a' });
    logs.push(log);
    const child = d.spawn([
      node, TESSERA, 'daemon',
      '--ca', join(caDir, 'ca.pub.json'), '--cert', join(caDir, 'host-d.cert'), '--key', join(caDir, 'host-d.key.json'),
      '--socket', d.socket, '--state-dir', join(cluster.dir, 'state', 'd'), '--cgroup-root', d.cgroupRoot,
    ]);
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    d.daemon = child; // so that cluster.destroy() stops it like the others
    await waitFor(`daemon on d (log: ${d.logFile})`, async () => {
      if (child.exitCode !== null) throw new Error(`daemon on d exited with ${child.exitCode}; see ${d.logFile}`);
      return (await d.tessera(['status', '--json'], { timeoutMs: 5000 })).code === 0;
    }, 20_000, 150);

    www = mkdtempSync(join(tmpdir(), 'tessera-pr-www-'));
    writeFileSync(join(www, 'index.html'), PAGE);
    // -vv: httpd logs "ADDR:PORT: url:/" per request, so we can tell whom it served.
    server = b.spawnPu(['app=nginx'], ['busybox', 'httpd', '-f', '-vv', '-p', '80', '-h', www]);
    server.stderr?.on('data', (chunk: Buffer) => (httpdLog += chunk.toString()));
    await b.waitForListener(80);
  }, 120_000);

  afterAll(async () => {
    await cluster?.destroy();
    for (const l of logs) l.end();
    for (const dir of [www, caDir]) if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('refuses a SYN-ACK whose MAC was changed on the wire, at once, and accepts it again untouched', async () => {
    // Breaks if the client stops checking macS (the tampered SYN-ACK gets the page), or if a
    // refusal became a drop (wget would time out: not "refused", not quick). After first
    // contact the SYN-ACK names the server's token by reference, so a changed token byte is a
    // changed MAC input; a changed full token is test/unit/datapath/handshake.test.ts.
    await a.runPu(['app=nginx'], wget(b.addr)); // first contact: a learns b's key and token
    const tap = await startHelper(a, 'tap-queue.mjs', ['7', 'tamper-v2-synack']);
    const removeRule = await insertRule(a, 'raw', 'PREROUTING', [
      '-s', b.addr, '-p', 'tcp', '-m', 'tcp', '--tcp-flags', 'SYN,ACK', 'SYN,ACK', '--sport', '80', '-j', 'NFQUEUE', '--queue-num', '7', '--queue-bypass',
    ]);
    try {
      for (const [mode, what, reasons] of [['tamper-v2-synack', 'macS', ['bad-mac']]] as const) {
        tap.send({ cmd: 'mode', mode });
        await tap.waitFor(`mode ${mode}`, (e) => e.ev === 'mode' && e.mode === mode);
        const seen = tap.events.length;
        const t0 = Date.now();
        const r = await a.runPu(['app=nginx'], wget(b.addr, 8));
        expect(r.stdout, mode).not.toContain('hello');
        // A reset makes wget fail with "Connection refused"; a dropped SYN-ACK would keep it
        // waiting until timeout(1) ends it with status 124 and no such message.
        expect(r.code, mode).not.toBe(0);
        expect(r.code, mode).not.toBe(124);
        expect(r.stderr, mode).toMatch(/refused/i);
        await tap.waitFor(`the tap's edit of the ${what}`, (e) => e.ev === 'packet' && e.tampered === true && e.what === what && tap.events.indexOf(e) >= seen, 2000);
        const flow = await waitFor(`a's reject record (${mode})`, async () =>
          (await flowsSince(a, t0)).find((f) => f.direction === 'egress' && f.stage === 'syn-ack' && f.verdict === 'reject' && f.remoteAddr === b.addr),
        );
        expect(reasons as readonly string[]).toContain(flow.reason);
      }
      // Control: the same client, the same path, without the tamperer.
      await removeRule();
      const ok = await a.runPu(['app=nginx'], wget(b.addr));
      expect(ok.stdout).toBe(PAGE);
      expect(ok.code).toBe(0);
    } finally {
      await removeRule();
      await tap.stop();
    }
  });

  it('refuses a SYN captured on b and replayed from host c (replay), and never hands the connection to the server', async () => {
    // Breaks if the server accepts a proof already accepted from another address: the proof
    // leaves the tuple out (NAT), so b's shared strike register is what refuses it; without
    // it b's flows would show no replay reject for c, b would answer with a SYN-ACK, and httpd
    // would serve c.
    const cap = await startHelper(b, 'tap-queue.mjs', ['8', 'copy']);
    const removeCapture = await insertRule(b, 'raw', 'PREROUTING', [
      '-s', a.addr, '-p', 'tcp', '-m', 'tcp', '--tcp-option', '253', '-j', 'NFQUEUE', '--queue-num', '8', '--queue-bypass',
    ]);
    let removeRst: (() => Promise<void>) | undefined;
    let raw: Helper | undefined;
    try {
      const legit = await a.runPu(['app=nginx'], wget(b.addr));
      expect(legit.stdout).toBe(PAGE);
      const packet = (e: HelperEvent) => {
        const buf = fromHex(e.hex as string);
        return { buf, pkt: parse(buf) };
      };
      const synEv = await cap.waitFor('a tagged SYN from a', (e) => e.ev === 'packet' && flagsOf(packet(e).pkt) === TCP.SYN);
      const { buf: syn } = packet(synEv);
      await removeCapture();

      removeRst = await insertRule(c, 'raw', 'OUTPUT', ['-d', b.addr, '-p', 'tcp', '-m', 'tcp', '--tcp-flags', 'RST', 'RST', '-j', 'DROP']);
      raw = await startHelper(c, 'tap-raw.mjs', [b.addr]);
      const r = raw;
      const fromB = (e: HelperEvent, port: number, flags: number) => {
        if (e.ev !== 'recv') return false;
        const { pkt } = packet(e);
        return pkt.srcPort === 80 && pkt.dstPort === port && (flagsOf(pkt) & flags) === flags;
      };
      const p1 = 20_000 + Math.floor(Math.random() * 20_000);
      const t0 = Date.now();
      r.send({ cmd: 'send', hex: rewritePacket(syn, { src: c.addr, sport: p1 }).toString('hex') });
      const replay = await waitFor('b\'s record for c', async () => (await flowsSince(b, t0)).find((f) => f.remoteAddr === c.addr && f.remotePort === p1 && f.stage === 'syn'));
      expect(replay).toMatchObject({ direction: 'ingress', verdict: 'reject', reason: 'replay' });
      // The refusal is silence (a reset could tear down the genuine handshake), never a SYN-ACK.
      await sleep(1500);
      expect(r.events.some((e) => fromB(e, p1, TCP.SYN | TCP.ACK))).toBe(false);
      expect(r.events.some((e) => fromB(e, p1, TCP.RST))).toBe(false);

      const during = await a.runPu(['app=nginx'], wget(b.addr));
      expect(during.stdout).toBe(PAGE);
      const withC = (await tcpSockets(b)).filter((s) => s.peer.startsWith(`${c.addr}:`));
      expect(withC).toEqual([]);
      expect(httpdLog).not.toContain(c.addr);
      expect(httpdLog).toContain(a.addr);
    } finally {
      await removeCapture();
      await cap.stop();
      await raw?.stop();
      await removeRst?.();
    }
  });

  it('refuses a client whose host certificate was issued by another CA (untrusted-issuer)', async () => {
    // Breaks if b accepts a token signed by a host key that b's CA never certified: b would
    // record no untrusted-issuer reject for d (and an accept instead).
    expect((await d.status()).host).toBe('host-d');
    const t0 = Date.now();
    const r = await d.runPu(['app=nginx'], wget(b.addr));
    expect(r.stdout).not.toContain('hello');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/refused/i);
    const flow = await waitFor('b\'s reject record for d', async () =>
      (await flowsSince(b, t0)).find((f) => f.remoteAddr === d.addr && f.verdict === 'reject'),
    );
    expect(flow).toMatchObject({ direction: 'ingress', stage: 'syn', reason: 'untrusted-issuer', remoteHost: null });
    expect((await flowsSince(b, t0)).filter((f) => f.remoteAddr === d.addr && f.verdict === 'accept')).toEqual([]);
  });
});
