// Hostile input on the real kernel path (issue 5, section 4). Host c is an attacker with a raw
// socket (IP_HDRINCL) and an NFQUEUE rewriter on its own egress; b runs busybox httpd as PU
// app=nginx on :80 under a tessera daemon; a is a legitimate client PU app=nginx. Every class of
// hostile handshake packet is sent from c to b:80 and must be refused — by the daemon with the
// documented reason code (docs/errors.md), or by the kernel before our queue ever sees it —
// while the daemon keeps running, its memory stays flat under a flood, and a's connections
// made during the flood still succeed.
//
// Each class records below which layer refuses it and why that layer is the right one.
// Outcomes are checked four ways: exact deltas of tessera_reasons_total on b (non-ok
// reasons), exact deltas of tessera_verdicts_total on b per class (how many of its packets
// the daemon accepted as a handshake step, and how many it refused: rejected or dropped),
// the packets b sends back to c (reset, SYN-ACK or nothing), and, at the end, b's socket
// table (nothing from c ever ESTAB). Under the flood, whose classes run interleaved, b's
// replies per class (each has its own source-port range) tell which were accepted.

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, importJWK } from 'jose';
import { createCluster, waitFor, sleep, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, run, uniquePrefix } from '../../scripts/lib/netns.js';
import { createApiClient } from '../../src/api/index.js';
import {
  createCa,
  createHostKey,
  createTokenIssuer,
  issueHostCertificate,
  parseHostIdentityFile,
  type CaHostIdentity,
} from '../../src/identity/index.js';
import {
  blockType,
  flagsOf,
  fromHex,
  insertRule,
  nodePidOf,
  parse,
  rewritePacket,
  startHelper,
  tcpSockets,
  type Helper,
  type HelperEvent,
} from '../helpers/attack.js';
import {
  MARKER,
  TCP,
  buildSegment,
  editLabels,
  flipSignature,
  fragment4,
  linuxSynOptions,
  synBlock,
  type SegmentSpec,
} from '../helpers/hostile-packets.js';
import { skipBecause } from '../helpers/skip.js';

skipBecause(!isRoot, 'hostile input on the kernel path (needs root)', 'integration tests need root: run npm test as root');

/** Ports c uses; the egress rewriter in c only touches [TAMPER_LO, TAMPER_HI]. */
const CLASS_PORT_BASE = 30_000;
const TAMPER_LO = 40_000;
const TAMPER_HI = 44_999;
const FLOOD_PORT_BASE = 45_000;
const EGRESS_QUEUE = 9;

type Reply = 'rst' | 'syn-ack' | 'none';
interface Tally {
  sent: number;
  /** Packets b's daemon accepted as a handshake step (a SYN passing its check is one). */
  accepted: number;
  /** Packets b's daemon refused (rejected or dropped); the kernel's own refusals are not here. */
  refused: number;
}
type Verdicts = { accept: number; pass: number; reject: number; drop: number };

describe.runIf(isRoot)('hostile input: every malformed or forged handshake packet is refused and the daemon survives', () => {
  let cluster: Cluster;
  let a: TesseraHost, b: TesseraHost, c: TesseraHost;
  let www: string;
  let raw: Helper;
  let egress: Helper;
  const cleanups: Array<() => Promise<void>> = [];
  const PAGE = 'hello from nginx\n';
  const wget = (addr: string, seconds = 5) => ['timeout', String(seconds), 'busybox', 'wget', '-q', '-O', '-', `http://${addr}:80/`];

  // Tokens an attacker can hold. validC is genuine (host c holds a certificate from the cluster
  // CA): it is what makes a hostile packet reach the step under test instead of failing earlier.
  let validC: string;
  let expiredC: string;
  let rogue: string;
  let oversized: string;
  let capturedSyn: Uint8Array;
  let capturedAck: Uint8Array;

  const tally = new Map<string, Tally>();
  const count = (cls: string, sent: number, accepted: number, refused: number) => {
    const t = tally.get(cls) ?? { sent: 0, accepted: 0, refused: 0 };
    t.sent += sent;
    t.accepted += accepted;
    t.refused += refused;
    tally.set(cls, t);
  };
  let crashes = 0;
  let nextPort = CLASS_PORT_BASE;
  let nextTamperPort = TAMPER_LO;
  let msgId = 0;

  // ------------------------------------------------------------------ observation helpers

  async function reasons(h: TesseraHost = b): Promise<Record<string, number>> {
    const text = await createApiClient(h.socket).metrics();
    const r: Record<string, number> = {};
    for (const m of text.matchAll(/^tessera_reasons_total\{[^}]*reason="([^"]+)"[^}]*\} (\d+)$/gm)) if (m[1] !== 'ok') r[m[1]!] = (r[m[1]!] ?? 0) + Number(m[2]);
    return r;
  }
  /** b's handshake outcomes, summed over its queues (every queued packet is exactly one of them). */
  async function verdicts(h: TesseraHost = b): Promise<Verdicts> {
    const text = await createApiClient(h.socket).metrics();
    const v: Verdicts = { accept: 0, pass: 0, reject: 0, drop: 0 };
    for (const m of text.matchAll(/^tessera_verdicts_total\{[^}]*verdict="([a-z]+)"[^}]*\} (\d+)$/gm)) if (m[1]! in v) v[m[1] as keyof Verdicts] += Number(m[2]);
    return v;
  }
  /** b's verdicts once they stopped moving (worker statistics reach the main thread every 250 ms). */
  async function settledVerdicts(): Promise<Verdicts> {
    let last = await verdicts();
    for (let i = 0; i < 20; i++) {
      await sleep(300);
      const now = await verdicts();
      if (JSON.stringify(now) === JSON.stringify(last)) return now;
      last = now;
    }
    throw new Error(`b's verdicts did not settle: ${JSON.stringify(last)}`);
  }
  function verdictDelta(after: Verdicts, before: Verdicts): Verdicts {
    return { accept: after.accept - before.accept, pass: after.pass - before.pass, reject: after.reject - before.reject, drop: after.drop - before.drop };
  }
  /**
   * After expectReasons settled: b's verdicts moved by exactly `refused` refusals, `accepted`
   * accepts (or, given as [min, max], within those: b's own SYN-ACK retransmissions are
   * accepted steps too), and nothing passed.
   */
  async function expectVerdicts(before: Verdicts, accepted: number | [number, number], refused: number, what: string): Promise<Verdicts> {
    const d = verdictDelta(await verdicts(), before);
    const [lo, hi] = typeof accepted === 'number' ? [accepted, accepted] : accepted;
    const got = { accepted: d.accept >= lo && d.accept <= hi ? accepted : d.accept, refused: d.reject + d.drop, passed: d.pass };
    expect(got, `${what}: b's verdicts ${JSON.stringify(d)}`).toEqual({ accepted, refused, passed: 0 });
    return d;
  }
  function delta(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
    const d: Record<string, number> = {};
    for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) d[k] = v - (before[k] ?? 0);
    return d;
  }
  /** Wait until b's reason counters moved by exactly `expected` (and by nothing else) and stay there. */
  async function expectReasons(before: Record<string, number>, expected: Record<string, number>, what: string): Promise<void> {
    const reached = (d: Record<string, number>) => Object.entries(expected).every(([k, v]) => (d[k] ?? 0) >= v);
    await waitFor(`b's reasons to move by ${JSON.stringify(expected)} (${what})`, async () => reached(delta(await reasons(), before)), 5000, 100).catch(() => undefined);
    // Worker statistics reach the main thread every 250 ms: give a late count time to show.
    await sleep(350);
    expect(delta(await reasons(), before), what).toEqual(expected);
  }
  /** A replayed proof: refused once, as `replay` inside the freshness window or `stale` after it. */
  async function expectReplayRefused(before: Record<string, number>, what: string): Promise<void> {
    const one = (d: Record<string, number>) => JSON.stringify(d) === '{"replay":1}' || JSON.stringify(d) === '{"stale":1}';
    await waitFor(`b to refuse the ${what} (replay or stale)`, async () => one(delta(await reasons(), before)), 5000, 100).catch(() => undefined);
    await sleep(350);
    const d = delta(await reasons(), before);
    expect(one(d), `${what}: b's reasons moved by ${JSON.stringify(d)}`).toBe(true);
  }
  async function snmp(h: TesseraHost): Promise<Record<string, number>> {
    const r: Record<string, number> = {};
    for (const file of ['/proc/net/snmp', '/proc/net/netstat']) {
      const lines = (await h.exec(['cat', file])).stdout.trim().split('\n');
      for (let i = 0; i + 1 < lines.length; i += 2) {
        const names = lines[i]!.split(/\s+/);
        const values = lines[i + 1]!.split(/\s+/);
        const proto = names[0]!.replace(/:$/, '');
        names.slice(1).forEach((n, j) => (r[`${proto}.${n}`] = Number(values[j + 1])));
      }
    }
    return r;
  }
  function daemonAlive(h: TesseraHost): boolean {
    const child = h.daemon;
    if (!child || child.exitCode !== null || child.signalCode !== null) return false;
    try {
      process.kill(nodePidOf(child), 0);
      return true;
    } catch {
      return false;
    }
  }
  function rssKb(h: TesseraHost): number {
    const status = readFileSync(`/proc/${nodePidOf(h.daemon!)}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
    if (!m) throw new Error('no VmRSS');
    return Number(m[1]);
  }

  // ------------------------------------------------------------------ sending

  async function send(helper: Helper, packets: Buffer[]): Promise<Array<number | string>> {
    const id = ++msgId;
    helper.send({ cmd: 'send', id, packets: packets.map((p) => p.toString('hex')) });
    const ev = await helper.waitFor(`send #${id}`, (e) => e.ev === 'sent' && e.id === id, 10_000);
    return ev.results as Array<number | string>;
  }
  /** Packets b sent to c's `port` since event index `from`, by kind. */
  function repliesTo(port: number, from: number, helper: Helper = raw, server = 80): Reply[] {
    return helper.events
      .slice(from)
      .filter((e) => e.ev === 'recv' && e.sport === server && e.dport === port)
      .map((e) => ((e.flags as number) & TCP.RST ? 'rst' : ((e.flags as number) & 0x12) === 0x12 ? 'syn-ack' : 'none'));
  }

  const seq = () => randomBytes(4).readUInt32BE(0);
  /** A tagged SYN from c to b:80 as a Linux client would send it, with `spec` overriding fields. */
  function taggedSyn(token: string | Uint8Array, spec: Partial<SegmentSpec> = {}, port = nextPort++): Buffer {
    return buildSegment({
      src: c.addr,
      dst: b.addr,
      sport: port,
      dport: 80,
      seq: seq(),
      flags: TCP.SYN,
      options: [...MARKER, ...linuxSynOptions()],
      payload: synBlock(token),
      // A fresh IPv4 id per packet, so fragments of different SYNs never mix in reassembly.
      ipId: 1 + randomBytes(2).readUInt16BE(0) % 0xfffe,
      ...spec,
    });
  }
  const sportOf = (p: Buffer) => p.readUInt16BE((p[0]! & 0x0f) * 4);
  async function egressRule(r: { sportFrom: number; sportTo: number; totalLength?: string; ipChecksumError?: number }): Promise<void> {
    const from = egress.events.length;
    egress.send({ cmd: 'rule', ...r });
    await egress.waitFor(`the egress rule for ports ${r.sportFrom}..${r.sportTo}`, (e) => e.ev === 'rule' && egress.events.indexOf(e) >= from);
  }

  interface HostileClass {
    name: string;
    /** One group per connection attempt (a group is several packets only for fragments). */
    groups: Buffer[][];
    reasons: Record<string, number>;
    reply: Reply;
    /** A kernel counter on b that must move, proving the packet arrived and the kernel dropped it. */
    kernel?: { counter: string; atLeast: number };
    /** c's source port per group, when it cannot be read from an IPv4 header. */
    ports?: number[];
    /** Packets of the class b's daemon accepts as a handshake step (default 0). */
    accepted?: number;
  }

  /** Send one class from c, then check b's reasons, b's replies to each group, and kernel counters. */
  async function runClass(k: HostileClass, helper: Helper = raw): Promise<void> {
    const before = await reasons();
    const verdictsBefore = await verdicts();
    const snmpBefore = k.kernel ? await snmp(b) : null;
    const from = helper.events.length;
    for (const g of k.groups) {
      const results = await send(helper, g);
      expect(results.every((r) => typeof r === 'number'), `${k.name}: c's kernel refused to send: ${JSON.stringify(results)}`).toBe(true);
    }
    await expectReasons(before, k.reasons, k.name);
    // Every refusal the daemon made has its reason above: refused = the reasons' sum.
    const refused = Object.values(k.reasons).reduce((n, v) => n + v, 0);
    await expectVerdicts(verdictsBefore, k.accepted ?? 0, refused, k.name);
    if (k.kernel) {
      const after = await snmp(b);
      expect((after[k.kernel.counter] ?? 0) - (snmpBefore![k.kernel.counter] ?? 0), `${k.name}: ${k.kernel.counter} on b`).toBeGreaterThanOrEqual(k.kernel.atLeast);
    }
    k.groups.forEach((g, i) => {
      const port = k.ports?.[i] ?? sportOf(g[0]!);
      const got = repliesTo(port, from, helper);
      if (k.reply === 'none') expect(got, `${k.name}: b must not answer port ${port}`).toEqual([]);
      else expect(got, `${k.name}: b's answer to port ${port}`).toContain(k.reply);
    });
    count(k.name, k.groups.reduce((n, g) => n + g.length, 0), k.accepted ?? 0, refused);
  }

  // ------------------------------------------------------------------ setup

  beforeAll(async () => {
    const prefix = uniquePrefix('ho');
    cluster = await createCluster({ prefix, hosts: ['a', 'b', 'c'], subnet: 70 + (process.pid % 10), trust: 'ca', start: false });
    [a, b, c] = [cluster.host('a'), cluster.host('b'), cluster.host('c')];
    // c is the attacker: no daemon there. Its certificate from the cluster CA is the "stolen or
    // insider" key material that lets us sign tokens which pass the signature check.
    // Independent steps run side by side: the daemons' start dominates the setup time.
    await Promise.all([a.startDaemon(), b.startDaemon(), makeTokens(), attackerTools(), bridgeAsWire(`${prefix}-sw`)]);

    www = mkdtempSync(join(tmpdir(), 'tessera-ho-www-'));
    writeFileSync(join(www, 'index.html'), PAGE);
    b.spawnPu(['app=nginx'], ['busybox', 'httpd', '-f', '-p', '80', '-h', www]);
    await b.waitForListener(80);
    await captureLegitExchange();
    // The legitimate exchange's counts are in before the classes count theirs.
    await settledVerdicts();
  }, 120_000);

  /** With br_netfilter loaded, the test topology's bridge would validate IPv4 headers itself
   * (br_validate_ipv4) and drop a bad header checksum before b. A real switch does not: turn it
   * off in the switch namespace this topology created, so b's own kernel judges the bytes. */
  async function bridgeAsWire(switchNs: string): Promise<void> {
    const r = await run(['ip', 'netns', 'exec', switchNs, 'sh', '-c', 'test ! -e /proc/sys/net/bridge/bridge-nf-call-iptables || echo 0 > /proc/sys/net/bridge/bridge-nf-call-iptables']);
    expect(r.code, r.stderr).toBe(0);
  }

  async function makeTokens(): Promise<void> {
    const idC = parseHostIdentityFile(readFileSync(join(cluster.dir, 'keys', 'host-c.key.json'), 'utf8')) as CaHostIdentity;
    const issuerC = createTokenIssuer(idC);
    const pu = { id: 'pu-attacker', labels: ['app=nginx'], epkPublicRaw: new Uint8Array(randomBytes(32)) };
    const now = Date.now() / 1000;
    validC = await issuerC.issue(pu, now, 600);
    // Issued two hours ago for one minute: what replaying an old capture presents.
    expiredC = await issuerC.issue(pu, now - 7200, 60);
    // Another CA, made with src/identity, certifying a host that calls itself host-c.
    const rogueCa = await createCa('rogue-ca');
    const rogueKey = await createHostKey();
    const rogueCert = await issueHostCertificate(rogueCa, { host: 'host-c', hostPublicJwk: rogueKey.publicJwk, validityDays: 1 });
    rogue = await createTokenIssuer({ mode: 'ca', hostId: 'host-c', ...rogueKey, certificate: rogueCert }).issue(pu, now, 600);
    // Correctly signed by c's certified key, but over the 1200-byte token budget (the issuer
    // refuses to make it, so jose signs it directly), sized to fill a 1500-byte SYN: at most
    // 1385 bytes = 1500 - 20 IP - 44 TCP (marker + Linux options) - 51 block (v2 SYN, full token).
    const claims = JSON.parse(Buffer.from(validC.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    const key = await importJWK({ ...idC.privateJwk }, 'ES256');
    for (let n = Math.floor(((1385 - validC.length) * 3) / 4); n > 0; n--) {
      claims.lbl = ['app=nginx', `pad=${'x'.repeat(n)}`].sort();
      oversized = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', hc: idC.certificate }).sign(key);
      if (oversized.length <= 1385) break;
    }
    expect(oversized.length).toBeGreaterThan(1370);
  }

  /** The attacker's tools in c: raw socket, egress rewriter, and silence for c's own TCP stack. */
  async function attackerTools(): Promise<void> {
    // c's kernel answers b's SYN-ACKs and resets with resets of its own (TTL 64); our crafted
    // packets use TTL 77, so only the kernel's are silenced (raw table: before conntrack).
    cleanups.push(await insertRule(c, 'raw', 'OUTPUT', ['-d', b.addr, '-p', 'tcp', '-m', 'tcp', '--tcp-flags', 'RST', 'RST', '-m', 'ttl', '--ttl-eq', '64', '-j', 'DROP']));
    const [e, r] = await Promise.all([startHelper(c, 'hostile-egress.mjs', [String(EGRESS_QUEUE)]), startHelper(c, 'hostile-raw.mjs', ['4', b.addr])]);
    egress = e;
    raw = r;
    cleanups.push(() => egress.stop(), () => raw.stop());
    cleanups.push(await insertRule(c, 'mangle', 'POSTROUTING', [
      '-d', b.addr, '-p', 'tcp', '-m', 'tcp', '--sport', `${TAMPER_LO}:${TAMPER_HI}`, '-j', 'NFQUEUE', '--queue-num', String(EGRESS_QUEUE),
    ]));
  }

  /** A legitimate SYN (with its proof) from a, captured on b's wire (raw table, before conntrack). */
  async function captureLegitExchange(): Promise<void> {
    // First contact takes a retry exchange whose SYN carries no proof: capture a later one.
    expect((await a.runPu(['app=nginx'], wget(b.addr))).stdout).toBe(PAGE);
    const cap = await startHelper(b, 'tap-queue.mjs', ['8', 'copy']);
    const removeCapture = await insertRule(b, 'raw', 'PREROUTING', [
      '-s', a.addr, '-p', 'tcp', '-m', 'tcp', '--tcp-option', '253', '-j', 'NFQUEUE', '--queue-num', '8', '--queue-bypass',
    ]);
    try {
      const legit = await a.runPu(['app=nginx'], wget(b.addr));
      expect(legit.stdout).toBe(PAGE);
      const pkt = (e: HelperEvent) => {
        const buf = fromHex(e.hex as string);
        return { buf, pkt: parse(buf) };
      };
      const synEv = await cap.waitFor('a tagged SYN from a', (e) => e.ev === 'packet' && flagsOf(pkt(e).pkt) === TCP.SYN);
      capturedSyn = pkt(synEv).buf;
      const p = pkt(synEv).pkt;
      // Protocol v2's ACK carries nothing: the one an attacker would send is any plain ACK.
      capturedAck = buildSegment({ src: a.addr, dst: b.addr, sport: p.srcPort, dport: 80, seq: (p.seq + 1) >>> 0, ack: 1, flags: TCP.ACK });
    } finally {
      await removeCapture();
      await cap.stop();
    }
  }

  afterAll(async () => {
    for (const f of cleanups.reverse()) await f().catch(() => undefined);
    // A crash is a daemon that is no longer the process we started.
    if (a && b) crashes = [a, b].filter((h) => !daemonAlive(h)).length;
    const rows = [...tally.entries()].map(([k, t]) => `${k}=${t.sent}/${t.accepted}/${t.refused}`);
    const sum = (f: (t: Tally) => number) => [...tally.values()].reduce((n, t) => n + f(t), 0);
    // The suite's one summary line (issue 5: counts appear in the test output).
    console.log(
      `hostile input: ${sum((t) => t.sent)} packets sent, ${sum((t) => t.accepted)} accepted and ${sum((t) => t.refused)} refused by b's daemon (the rest by its kernel), ` +
        `crashes: ${crashes} — per class sent/accepted/refused: ${rows.join(' ')}`,
    );
    await cluster?.destroy();
    if (www) rmSync(www, { recursive: true, force: true });
  }, 120_000);

  // ------------------------------------------------------------------ the classes

  it('refuses forged, foreign, expired and oversized tokens, lying lengths and broken options, each for its documented reason', async () => {
    const classes: HostileClass[] = [
      // Daemon, token verifier: the signature over header.payload does not verify with the key
      // that c's certificate names. A changed signature byte and changed claims (labels) alike.
      {
        name: 'forged-signature',
        groups: [[taggedSyn(flipSignature(validC))], [taggedSyn(editLabels(validC, ['app=admin']))]],
        reasons: { 'bad-signature': 2 },
        reply: 'rst',
      },
      // Daemon, token verifier: the host certificate in the header is signed by a CA b does not trust.
      { name: 'untrusted-ca', groups: [[taggedSyn(rogue)]], reasons: { 'untrusted-issuer': 1 }, reply: 'rst' },
      // Daemon, token verifier: genuine signature, exp two hours ago (beyond the 30 s skew).
      { name: 'expired-token', groups: [[taggedSyn(expiredC)]], reasons: { expired: 1 }, reply: 'rst' },
      // Daemon, packet parser (src/packet walkOptions): xt_tcp's --tcp-option walk finds the
      // marker before the broken option and queues the SYN; our parser refuses any option whose
      // length is 0/1 or runs past the header, so the packet is dropped as 'bad-packet' without
      // an answer (a reset would be built from bytes we cannot trust).
      {
        name: 'option-length-0-1',
        groups: [
          [taggedSyn(validC, { options: [...MARKER, 8, 0, 1, 1] })],
          [taggedSyn(validC, { options: [...MARKER, 3, 1, 1, 1] })],
          [taggedSyn(validC, { options: [253, 0, 0x7e, 0x55, 1, 1, 1, 1] })],
          [taggedSyn(validC, { options: [253, 1, 0x7e, 0x55] })],
        ],
        reasons: { 'bad-packet': 4 },
        reply: 'none',
      },
      {
        name: 'truncated-overlong-options',
        groups: [
          // The header ends between an option's kind and its length byte.
          [taggedSyn(validC, { options: [...MARKER, 1, 1, 1, 2] })],
          // MSS claims 12 bytes; only 4 are left in the header.
          [taggedSyn(validC, { options: [...MARKER, 2, 12, 5, 0xb4] })],
          // The timestamp option runs 2 bytes past the data offset.
          [taggedSyn(validC, { options: [...MARKER, 1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0], dataOffsetWords: 7 })],
        ],
        reasons: { 'bad-packet': 3 },
        reply: 'none',
      },
      // Kernel, netfilter's tcp match: a data offset below 5 or past the end of the segment makes
      // xt_tcp "hotdrop" the packet in the queue rule itself (it cannot read the options it was
      // asked to look at). Conntrack marks it INVALID; nothing reaches a socket or our queue.
      {
        name: 'bad-data-offset',
        groups: [
          [taggedSyn(validC, { options: [...MARKER], payload: new Uint8Array(0), dataOffsetWords: 15 })],
          [taggedSyn(validC, { dataOffsetWords: 4 })],
        ],
        reasons: {},
        reply: 'none',
      },
      // Daemon: a kind-253 option that is not exactly our marker (length 2 or 3, or another
      // experiment's ExID) is some other option, so the SYN is untagged: the PU's network rules
      // judge it (default deny) → 'missing-token', answered with a reset.
      {
        name: 'marker-bad-length',
        groups: [
          [taggedSyn(validC, { options: [253, 3, 0x7e, 1, ...linuxSynOptions()] })],
          [taggedSyn(validC, { options: [253, 2, 1, 1, ...linuxSynOptions()] })],
          [taggedSyn(validC, { options: [253, 4, 0x12, 0x34, ...linuxSynOptions()] })],
        ],
        reasons: { 'missing-token': 3 },
        reply: 'rst',
      },
      // Daemon, block decoder: lengths inside the block that do not add up exactly.
      {
        name: 'block-length-lies',
        groups: [
          [taggedSyn(validC, { payload: synBlock(validC, { tokenLength: validC.length + 10 }) })],
          [taggedSyn(validC, { payload: synBlock(validC, { tokenLength: validC.length - 10 }) })],
          [taggedSyn(validC, { payload: synBlock(validC, { blockLength: validC.length + 200 }) })],
          [taggedSyn(validC, { payload: synBlock(validC, { blockLength: 8 }) })],
          [taggedSyn(validC, { payload: synBlock(validC, { tokenLength: 0 }) })],
          [taggedSyn(validC, { payload: synBlock(validC, { version: 1 }) })],
          [taggedSyn(validC, { payload: synBlock(validC, { type: 2 }) })],
          [taggedSyn(validC, { payload: new Uint8Array(0) })],
        ],
        // A version-1 trailer is a v1 peer's block: 'version', never half understood. A block
        // length shorter than the payload says there are bytes in front of the block:
        // 'fast-open', refused from the trailer before any token is verified.
        reasons: { malformed: 6, 'fast-open': 1, version: 1 },
        reply: 'rst',
      },
      // Daemon, token verifier: a correctly signed token of 1400+ bytes makes a 1500-byte SYN,
      // exactly the MTU; the verifier refuses tokens over 1200 bytes before any crypto.
      { name: 'size-at-mtu', groups: [[sized(1500, oversized)]], reasons: { malformed: 1 }, reply: 'rst' },
      // One byte more cannot even leave c in one piece (see the next test); as two IPv4
      // fragments it arrives, b reassembles it (1501 bytes) and refuses it before the token is
      // looked at: that byte is data in front of the block, which no Tessera client sends.
      { name: 'size-over-mtu-fragmented', groups: [fragment4(sized(1501, oversized), [768])], reasons: { 'fast-open': 1 }, reply: 'rst' },
      // Daemon, packet check before any rewrite: a wrong TCP checksum (on a SYN whose token is
      // genuine, so the checksum is the only fault). Conntrack marks it INVALID but lets it
      // through; our worker must drop it ('bad-packet') because its own rewrite would compute a
      // fresh, valid checksum and launder the corruption.
      { name: 'bad-tcp-checksum', groups: [[taggedSyn(validC, { tcpChecksumError: 0x1234 })]], reasons: { 'bad-packet': 1 }, reply: 'none' },
      // Daemon: IPv4 options are legal; the token decides. A forged token with options is
      // refused like one without them.
      {
        name: 'ipv4-options-forged',
        groups: [[taggedSyn(flipSignature(validC), { ipOptions: [1, 1, 1, 0] })], [taggedSyn(flipSignature(validC), { ipOptions: [148, 4, 0, 0] })]],
        reasons: { 'bad-signature': 2 },
        reply: 'rst',
      },
      // Kernel, conntrack's defragmentation (nf_defrag_ipv4 runs at priority -400, before the
      // raw and mangle PREROUTING hooks): fragments of a tagged SYN — even a first fragment
      // that holds only 8 bytes of the TCP header — are reassembled before our rules match,
      // so the daemon judges the whole SYN; the token decides.
      {
        name: 'fragmented-forged-syn',
        groups: [fragment4(taggedSyn(flipSignature(validC)), [8]), fragment4(taggedSyn(flipSignature(validC)), [256, 512])],
        reasons: { 'bad-signature': 2 },
        reply: 'rst',
      },
      // Kernel, defragmentation: a first fragment whose rest never comes waits in b's
      // reassembly queue and expires there (ReasmReqds counts it); no hook after defrag, no
      // socket, no queue ever sees a piece of it.
      {
        name: 'lone-first-fragment',
        groups: [[fragment4(taggedSyn(flipSignature(validC)), [256])[0]!]],
        reasons: {},
        reply: 'none',
        kernel: { counter: 'Ip.ReasmReqds', atLeast: 1 },
      },
      // Kernel, TCP in LISTEN state (tcp_rcv_state_process): SYN+FIN, SYN+RST and flag-less or
      // FIN+PSH+URG segments are discarded; our queue rules match "exactly SYN" of FIN/SYN/RST/ACK,
      // so they never reach the daemon, and they could never open a connection.
      {
        name: 'flag-mix-discarded',
        groups: [
          [taggedSyn(flipSignature(validC), { flags: TCP.SYN | TCP.FIN })],
          [taggedSyn(flipSignature(validC), { flags: TCP.SYN | TCP.RST })],
          [taggedSyn(flipSignature(validC), { flags: TCP.SYN | TCP.FIN | TCP.RST | TCP.PSH | TCP.URG })],
          [taggedSyn(flipSignature(validC), { flags: 0 })],
          [taggedSyn(flipSignature(validC), { flags: TCP.FIN | TCP.PSH | TCP.URG })],
        ],
        reasons: {},
        reply: 'none',
      },
      // Kernel, default deny: an unsolicited SYN+ACK to a PU port belongs to no flow this host
      // authorized or is judging, so TESSERA-PU-PORT drops it before TCP (which would reset).
      { name: 'flag-mix-syn-ack', groups: [[taggedSyn(flipSignature(validC), { flags: TCP.SYN | TCP.ACK, ack: seq() })]], reasons: {}, reply: 'none' },
      // Daemon: URG, PSH, ECE and CWR do not change what a SYN is (ECE+CWR is the normal ECN
      // setup), so these are judged as tagged SYNs, and the forged token is refused.
      {
        name: 'flag-mix-judged-as-syn',
        groups: [
          [taggedSyn(flipSignature(validC), { flags: TCP.SYN | TCP.URG })],
          [taggedSyn(flipSignature(validC), { flags: TCP.SYN | TCP.PSH })],
          [taggedSyn(flipSignature(validC), { flags: TCP.SYN | TCP.ECE | TCP.CWR })],
        ],
        reasons: { 'bad-signature': 3 },
        reply: 'rst',
      },
    ];
    for (const k of classes) await runClass(k);
    expect(daemonAlive(b)).toBe(true);
  });

  /** A tagged SYN of exactly `total` IPv4 bytes carrying `token` (zero data before the block pads it). */
  function sized(total: number, token: string): Buffer {
    const head = 20 + 20 + MARKER.length + 20;
    const block = synBlock(token);
    const pad = total - head - block.length;
    if (pad < 0) throw new Error(`token too long for ${total} bytes`);
    const payload = Buffer.concat([Buffer.alloc(pad), block]);
    const p = taggedSyn(token, { payload });
    if (p.length !== total) throw new Error(`sized(): built ${p.length} bytes, wanted ${total}`);
    return p;
  }

  it('refuses IPv4 header lies that only the wire can carry: wrong header checksum, total length longer or shorter than the packet', async () => {
    // c's kernel fills in total length and header checksum for IP_HDRINCL; the rewriter in c's
    // POSTROUTING (hostile-egress.mjs) changes them after that, on ports TAMPER_LO..TAMPER_HI.
    const port = () => nextTamperPort++;
    const pCk = port();
    const pLong = port();
    const pShort = port();
    const rules = [
      { sportFrom: pCk, sportTo: pCk, ipChecksumError: 0x0101 },
      { sportFrom: pLong, sportTo: pLong, totalLength: '+40' },
      { sportFrom: pShort, sportTo: pShort, totalLength: '-40' },
    ];
    for (const r of rules) await egressRule(r);
    // Kernel, IP layer (ip_rcv_core): the header checksum is checked before any netfilter hook;
    // the SYN carries a genuine token, so the checksum is its only fault.
    await runClass({ name: 'bad-ip-checksum', groups: [[taggedSyn(validC, {}, pCk)]], reasons: {}, reply: 'none', kernel: { counter: 'IpExt.InCsumErrors', atLeast: 1 } });
    // Kernel, IP layer: a total length beyond the bytes received is a truncated packet, dropped
    // before PREROUTING (InTruncatedPkts).
    await runClass({ name: 'ip-length-longer', groups: [[taggedSyn(validC, {}, pLong)]], reasons: {}, reply: 'none', kernel: { counter: 'IpExt.InTruncatedPkts', atLeast: 1 } });
    // Kernel trims, daemon refuses: bytes past the total length are link padding to the IP
    // layer, which cuts them off; what remains is a consistent SYN (its TCP checksum covers the
    // claimed length) whose block lost its trailer: what ends the payload now is token text,
    // whose "version byte" is no 2: 'version' (a block of no protocol this host speaks).
    const full = taggedSyn(validC, {}, pShort).length;
    const consistent = taggedSyn(validC, { tcpChecksumBytes: full - 40 - 20 }, pShort);
    await runClass({ name: 'ip-length-shorter', groups: [[consistent]], reasons: { version: 1 }, reply: 'rst' });
    const edits = egress.events.filter((e) => e.ev === 'edited').map((e) => e.sport);
    expect(edits).toEqual(expect.arrayContaining([pCk, pLong, pShort]));

    // Just over the MTU in one piece: c's kernel itself refuses to send it (EMSGSIZE).
    const results = await send(raw, [sized(1501, oversized)]);
    expect(String(results[0])).toMatch(/message too long|EMSGSIZE/i);
    count('size-over-mtu-unfragmented', 0, 0, 0);
  });

  it('drops IPv6 SYNs with extension headers (sent over b\'s own loopback) as bad-packet', async () => {
    const ss = await b.exec(['ss', '-tlnH', 'sport = :80']);
    expect(ss.stdout, 'httpd must listen on [::]:80 (dual stack)').toMatch(/(\[::\]|\*):80/);
    const raw6 = await startHelper(b, 'hostile-raw.mjs', ['6', '::1']);
    try {
      const ports: number[] = [];
      const syn6 = (token: string, extensions: SegmentSpec['extensions'] = []) => {
        const port = nextPort++;
        ports.push(port);
        return buildSegment({
          family: 6,
          src: '::1',
          dst: '::1',
          sport: port,
          dport: 80,
          seq: seq(),
          flags: TCP.SYN,
          options: [...MARKER, ...linuxSynOptions()],
          payload: synBlock(token),
          extensions,
        });
      };
      const take = () => ports.splice(0);
      const padN = (type: number) => ({ type, bytes: [0, 0, 1, 4, 0, 0, 0, 0] });
      // Control: the same path without extension headers reaches the token check.
      const control = [[syn6(flipSignature(validC))]];
      await runClass({ name: 'ipv6-forged', groups: control, ports: take(), reasons: { 'bad-signature': 1 }, reply: 'rst' }, raw6);
      // Daemon, packet parser: ip6tables' -p tcp skips extension headers to find TCP, so these
      // SYNs are queued; the parser reads only TCP right after the fixed header and refuses
      // the rest ('ipv6-extension-header' → bad-packet, dropped), whatever the token.
      const ext = [[syn6(validC, [padN(0)])], [syn6(validC, [padN(60)])], [syn6(validC, [{ type: 43, bytes: [0, 0, 0, 0, 0, 0, 0, 0] }])], [syn6(validC, [padN(0), padN(60)])]];
      await runClass({ name: 'ipv6-extension-headers', groups: ext, ports: take(), reasons: { 'bad-packet': 4 }, reply: 'none' }, raw6);
      // Kernel, IPv6 defragmentation (nf_defrag_ipv6, before PREROUTING): an atomic fragment
      // (fragment header with offset 0 and no more fragments, RFC 6946) is a whole datagram; the
      // kernel removes the fragment header, so the daemon sees a plain TCP SYN and the token
      // decides ('bad-signature'), as for the IPv4 fragments above.
      const atomic = [[syn6(flipSignature(validC), [{ type: 44, bytes: [0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78] }])]];
      await runClass({ name: 'ipv6-atomic-fragment', groups: atomic, ports: take(), reasons: { 'bad-signature': 1 }, reply: 'rst' }, raw6);
      const withLo = (await tcpSockets(b)).filter((s) => s.peer.startsWith('::1:') || s.peer.startsWith('[::1]'));
      expect(withLo.filter((s) => s.state === 'ESTAB')).toEqual([]);
    } finally {
      await raw6.stop();
    }
  });

  it('refuses a replayed SYN silently (replay, or stale once out of the window); an ACK without a judged SYN, tracked or not, never reaches the daemon or b\'s TCP', async () => {
    // Protocol v2: the SYN's proof does not name addresses (NAT on either host must keep it
    // valid), so a's genuine SYN replayed from c is refused by the host's shared strike register
    // ('replay') while the proof is inside the freshness window, and as 'stale' after it. Either
    // way it is dropped in silence (a reset could reach the genuine client): no SYN-ACK, no
    // half-open connection. (The verbatim, in-window, out-of-window and after-restart replays
    // are test/integration/replay.test.ts.)
    const p1 = nextPort++;
    let before = await reasons();
    let vBefore = await verdicts();
    let from = raw.events.length;
    await send(raw, [rewritePacket(capturedSyn, { src: c.addr, sport: p1 })]);
    await expectReplayRefused(before, 'replayed SYN');
    await expectVerdicts(vBefore, 0, 1, 'replayed SYN');
    expect(repliesTo(p1, from)).toEqual([]);
    count('replayed-syn', 1, 0, 1);
    const isnC = parse(capturedSyn).seq;

    // Kernel, default deny: an ACK with no SYN before it has no pending connmark, so no queue
    // rule matches, and TESSERA-PU-PORT drops it before b's TCP sees it (which would reset).
    const p3 = nextPort++;
    before = await reasons();
    vBefore = await verdicts();
    from = raw.events.length;
    await send(raw, [rewritePacket(capturedAck, { src: c.addr, sport: p3 })]);
    await expectReasons(before, {}, 'replayed ACK alone');
    await expectVerdicts(vBefore, 0, 0, 'a replayed ACK alone (the kernel drops it)');
    expect(repliesTo(p3, from)).toEqual([]);
    count('replayed-ack-alone', 1, 0, 0);

    // Kernel, default deny: the replayed SYN followed by an ACK that conntrack does not track
    // (an admin's NOTRACK for the port, as busy servers use). It reaches no queue rule and the
    // PU-PORT guard drops it: nothing established, whatever the SYN's fate.
    const p4 = nextPort++;
    const untrack = await insertRule(b, 'raw', 'PREROUTING', ['-s', c.addr, '-p', 'tcp', '-m', 'tcp', '--sport', String(p4), '--tcp-flags', 'SYN,ACK', 'ACK', '-j', 'CT', '--notrack']);
    try {
      before = await reasons();
      await send(raw, [rewritePacket(capturedSyn, { src: c.addr, sport: p4 })]);
      await expectReplayRefused(before, 'the replayed SYN before the untracked ACK');
      await send(raw, [buildSegment({ src: c.addr, dst: b.addr, sport: p4, dport: 80, seq: isnC + 1, ack: 1, flags: TCP.ACK })]);
      await sleep(300);
      const established = (await tcpSockets(b)).filter((s) => s.peer === `${c.addr}:${p4}` && s.state === 'ESTAB');
      expect(established, 'an untracked ACK must not complete a replayed handshake').toEqual([]);
    } finally {
      await untrack();
    }
    count('replayed-syn-untracked-ack', 2, 0, 1);
    const withC = (await tcpSockets(b)).filter((s) => s.peer.startsWith(`${c.addr}:`));
    expect(withC, JSON.stringify(withC)).toEqual([]);
  });

  it('under a 40 000-packet flood: legitimate connections made during it succeed, memory stays flat, the daemon keeps answering', async () => {
    const pidBefore = nodePidOf(b.daemon!);
    // Ports per template: a fresh source port (and ISN) per packet, so each is a new attempt.
    const span = 400;
    let base = FLOOD_PORT_BASE;
    const tpl = (p: Buffer, vary: 'tcp' | 'ipid' = 'tcp', tamper = false) => {
      const sportBase = tamper ? nextTamperPort : base;
      if (tamper) nextTamperPort += span;
      else base += span;
      return { packets: vary === 'ipid' ? fragment4(p, [256]).map((f) => f.toString('hex')) : [p.toString('hex')], vary, sportBase, sportSpan: span };
    };
    const ckPort = nextTamperPort;
    const classes = [
      { name: 'forged-signature', t: tpl(taggedSyn(flipSignature(validC))) },
      { name: 'untrusted-ca', t: tpl(taggedSyn(rogue)) },
      { name: 'expired-token', t: tpl(taggedSyn(expiredC)) },
      { name: 'broken-option', t: tpl(taggedSyn(validC, { options: [...MARKER, 8, 0, 1, 1] })) },
      { name: 'block-length-lie', t: tpl(taggedSyn(validC, { payload: synBlock(validC, { tokenLength: 7 }) })) },
      { name: 'bad-tcp-checksum', t: tpl(taggedSyn(validC, { tcpChecksumError: 0x77 })) },
      { name: 'syn-fin-forged', t: tpl(taggedSyn(flipSignature(validC), { flags: TCP.SYN | TCP.FIN })) },
      { name: 'fragmented-forged', t: tpl(taggedSyn(flipSignature(validC)), 'ipid') },
      { name: 'replayed-syn', t: tpl(rewritePacket(capturedSyn, { src: c.addr })) },
      { name: 'bad-ip-checksum', t: tpl(taggedSyn(validC, {}, ckPort), 'tcp', true) },
    ];
    const templates = classes.map((k) => k.t);
    await egressRule({ sportFrom: ckPort, sportTo: ckPort + span - 1, ipChecksumError: 0x0202 });
    const statusBefore = await b.status();
    const reasonsStart = await reasons();
    const verdictsStart = await verdicts();

    const flood = async (n: number, what: string, rate: number) => {
      const id = ++msgId;
      raw.send({ cmd: 'flood', id, count: n, rate, templates, maxMs: 30_000 });
      const ev = await raw.waitFor(what, (e) => e.ev === 'flooded' && e.id === id, 40_000);
      expect(ev.errors, `${what}: send errors (first: ${String(ev.firstError)})`).toBe(0);
      return ev;
    };
    const packetsPerGroup = templates.reduce((s, t) => s + t.packets.length, 0) / templates.length;
    const groups = Math.round(20_000 / packetsPerGroup);

    // Warm-up of the same size: caches, maps, JIT and buffers reach their working size.
    const warm = await flood(groups, 'the warm-up flood', 5000);
    await sleep(500);
    const rssWarm = rssKb(b);
    const reasonsWarm = await reasons();

    // The measured flood, with a's legitimate requests running at the same time.
    // Slower than the warm-up, so that it lasts several seconds: long enough for whole
    // legitimate requests (tessera run + wget, 1-3 s on a loaded machine) to start and end in it.
    // Whether a request ran inside the flood is read from the flood's state when it starts
    // and when it ends (an order of events, not a clock).
    const recvFrom = raw.events.length;
    let flooding = true;
    const attack = flood(groups, 'the measured flood', 2500).finally(() => {
      flooding = false;
    });
    const legit: Array<{ ok: boolean; startedInFlood: boolean; endedInFlood: boolean }> = [];
    // Two clients in a loop while the flood lasts (bounded: 6 requests each).
    const client = async () => {
      for (let i = 0; i < 6 && flooding; i++) {
        const startedInFlood = flooding;
        const r = await a.runPu(['app=nginx'], wget(b.addr, 8), 15_000);
        legit.push({ ok: r.stdout === PAGE, startedInFlood, endedInFlood: flooding });
      }
    };
    await Promise.all([client(), sleep(500).then(client)]);
    const measured = await attack;
    await sleep(1000);
    const rssAfter = rssKb(b);
    const reasonsAfter = await reasons();
    const verdictsAfter = await verdicts();

    // Every request succeeded (above); at least two overlapped the flood and one ran entirely inside it.
    const during = legit.filter((l) => l.startedInFlood && l.endedInFlood);
    const overlapping = legit.filter((l) => l.startedInFlood);
    expect(overlapping.length, `legitimate requests started during the flood: ${JSON.stringify(legit)}`).toBeGreaterThanOrEqual(2);
    expect(during.length, `legitimate requests made entirely during the flood: ${JSON.stringify(legit)}`).toBeGreaterThanOrEqual(1);
    expect(legit.filter((l) => !l.ok), JSON.stringify(legit)).toEqual([]);
    // The same process, still running, still answering its API.
    expect(daemonAlive(b)).toBe(true);
    expect(nodePidOf(b.daemon!)).toBe(pidBefore);
    const statusAfter = await b.status();
    expect(statusAfter.counters.handler_errors ?? 0).toBe(statusBefore.counters.handler_errors ?? 0);
    expect(statusAfter.counters.datapath_errors ?? 0).toBe(statusBefore.counters.datapath_errors ?? 0);
    // Memory: within 20 MB of the warmed-up size after another 20 000 hostile packets.
    const growthMb = (rssAfter - rssWarm) / 1024;
    expect(growthMb, `RSS ${rssWarm} kB after warm-up, ${rssAfter} kB after the flood`).toBeLessThan(20);
    // Every refusal the flood caused is one of the expected reasons, and the daemon saw it.
    const d = delta(reasonsAfter, reasonsWarm);
    // 'no-pu': a replayed SYN that reuses the 4-tuple of a half-open flood connection meets
    // its request socket, which the kernel's socket lookup does not name; it is delivered
    // stripped, and b's TCP makes no connection of a second SYN on a request socket.
    // 'missing-proof': a legitimate client's data segment judged after its proof ACK was lost
    // from the full queue (what does not fit is dropped, never accepted unjudged). That
    // connection stalls — protocol v1 puts the proof in a pure ACK TCP never retransmits
    // (docs/protocol.md; protocol v2 moves it into the SYN). Seen once in a CI-equivalent run.
    // 'replay' / 'stale': the replayed SYN (the host's strike register has its proof, or it is
    // out of the freshness window). 'bad-mac': a tampered proof. 'version': the block-length
    // lie's class does not carry one.
    const allowed = new Set(['bad-signature', 'untrusted-issuer', 'expired', 'bad-packet', 'malformed', 'no-state', 'no-pu', 'bad-mac', 'replay', 'stale', 'version']);
    expect(Object.keys(d).filter((k) => !allowed.has(k)), JSON.stringify(d)).toEqual([]);
    const refusedByDaemon = Object.values(d).reduce((s, v) => s + v, 0);
    expect(refusedByDaemon).toBeGreaterThan(Number(measured.groups) * 0.5);
    // Kernel-side state stays bounded: nothing from c is established, half-open entries are
    // capped by the listener's backlog (SYN cookies take over beyond it). The daemon's own
    // handshake maps (serverState/clientState) are not exported by the API yet, so their bound
    // is covered only through the RSS check above.
    const withC = (await tcpSockets(b)).filter((s) => s.peer.startsWith(`${c.addr}:`));
    expect(withC.filter((s) => s.state === 'ESTAB')).toEqual([]);
    expect(withC.length).toBeLessThan(4096);
    // Per class, from b's replies to its own port range in the measured flood: only the
    // replayed SYN (a genuine token, which no SYN can prove fresh) can be accepted, drawing a
    // SYN-ACK; no other class ever draws one. (c's raw socket loses most replies while it
    // floods, so the reply counts are printed, and only their absence is asserted.) Classes
    // the parser or the kernel refuse get no answer at all.
    const perClass = classes.map((k) => {
      const replies = raw.events.slice(recvFrom).filter((e) => e.ev === 'recv' && e.sport === 80 && (e.dport as number) >= k.t.sportBase && (e.dport as number) < k.t.sportBase + span);
      return {
        name: k.name,
        synAck: replies.filter((e) => ((e.flags as number) & 0x12) === 0x12).length,
        rst: replies.filter((e) => ((e.flags as number) & TCP.RST) !== 0).length,
      };
    });
    const byName = new Map(perClass.map((r) => [r.name, r]));
    expect(perClass.filter((r) => r.name !== 'replayed-syn' && r.synAck > 0), JSON.stringify(perClass)).toEqual([]);
    for (const name of ['broken-option', 'bad-tcp-checksum', 'bad-ip-checksum']) expect(byName.get(name)!.rst + byName.get(name)!.synAck, `${name}: ${JSON.stringify(perClass)}`).toBe(0);
    // b's daemon: every refusal has its reason (refused = the reasons' sum), nothing was let
    // through unjudged, and it accepted at least the legitimate connections' three steps each.
    // (A pass has reason 'ok' or 'no-pu': the non-ok reasons are the refusals plus those 'no-pu' passes.)
    const v = verdictDelta(verdictsAfter, verdictsStart);
    const nonOk = Object.values(delta(reasonsAfter, reasonsStart)).reduce((s, n) => s + n, 0);
    expect(v.reject + v.drop, JSON.stringify(v)).toBeLessThanOrEqual(nonOk);
    expect(nonOk, JSON.stringify(v)).toBeLessThanOrEqual(v.reject + v.drop + v.pass);
    // Two accepted steps per legitimate connection on b: its SYN in and its SYN-ACK out.
    expect(v.accept, JSON.stringify(v)).toBeGreaterThanOrEqual(2 * legit.length);
    count('flood', Number(warm.packets) + Number(measured.packets), v.accept, v.reject + v.drop);
    console.log(`hostile flood per class (b's replies in the measured flood): ${perClass.map((r) => `${r.name}=${r.synAck} syn-ack/${r.rst} rst`).join(' ')}; b's verdicts over both floods ${JSON.stringify(v)}`);
    console.log(
      `hostile flood: ${Number(warm.packets) + Number(measured.packets)} packets (warm-up ${String(warm.ms)} ms, measured ${String(measured.ms)} ms); ` +
        `daemon refusals in the measured half ${JSON.stringify(d)}; RSS ${rssWarm} → ${rssAfter} kB; ` +
        `legit: ${legit.length} ok, ${during.length} entirely during the flood; half-open from c ${withC.length}`,
    );
  });
});
