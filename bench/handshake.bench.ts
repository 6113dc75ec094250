// Handshake micro-benchmark: what one full mutual authorization costs a datapath worker, per
// step, without the kernel. Two in-process hosts (client PU on "a", server PU on "b", CA
// trust, one label), the same handshake code and crypto binding the workers run, real packet
// bytes. Also checks that interleaved connections (several in flight, as under load) all
// pass, which the kernel benchmark cannot tell apart from other refusals.
// Run: npx tsx bench/handshake.bench.ts [--node-crypto]   (about 15 s, one thread)
// Reports µs per step (medians), heap bytes allocated per connection and collections per 10 000.
// SHA-256/HMAC come from the native addon, as in the workers; --node-crypto uses node:crypto.
//
// --deopt: instead of timing, run the four passes for DEOPT_N connections (200 000), crossing
// the flow tables' rotations (32 768 entries a half), a policy snapshot change (60 000), new
// PU objects (100 000) and a new token (150 000), and COUNT V8's deopts under its tracing:
//   node --trace-deopt --import tsx bench/handshake.bench.ts --deopt | grep -c 'bailout (kind'
// (under tsx the loader's own deopts count too; the lines after "conn 0" are the handshake's).
import { createHash, generateKeyPairSync, randomFillSync, type KeyObject } from 'node:crypto';
import { PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createVerifier } from '../src/datapath/crypto.js';
import { loadNative } from '../src/datapath/native.js';
import { NODE_DIGESTS } from '../src/identity/index.js';
import {
  createHandshake,
  HOOK_POST_ROUTING,
  HOOK_PRE_ROUTING,
  type Handshake,
  type IssuedToken,
  type LocalPu,
} from '../src/datapath/handshake/handshake.js';
import {
  createCa,
  createEphemeralKey,
  createHostKey,
  createTokenIssuer,
  issueHostCertificate,
  type TokenIssuer,
} from '../src/identity/index.js';
import { markForPuIndex } from '../src/marks.js';
import { createDefaultPolicy } from '../src/policy/index.js';
import { parseTcp, tcpChecksum, TCP_ACK, TCP_SYN, type TcpPacket } from '../src/packet/index.js';
import { build } from '../test/unit/packet/helpers.js';

const A = Uint8Array.of(10, 213, 100, 1);
const B = Uint8Array.of(10, 213, 100, 2);
const PORT = 8090;
const SYN_OPTIONS = Uint8Array.of(2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7);
const ACK_OPTIONS = Uint8Array.of(1, 1, 8, 10, 0, 0, 0, 2, 0, 0, 0, 1);
const STEPS = ['syn out (a)', 'syn in (b)', 'syn-ack out (b)', 'syn-ack in (a)'] as const;

const digests = process.argv.includes('--node-crypto') ? NODE_DIGESTS : loadNative();
console.log(`digests: ${digests === NODE_DIGESTS ? 'node:crypto' : 'native addon'}`);
const ca = await createCa('bench-ca');
const caPublicJwk = { ...ca.publicJwk } as Record<string, unknown>;

async function hostIssuer(name: string): Promise<TokenIssuer> {
  const hk = await createHostKey();
  const certificate = await issueHostCertificate(ca, { host: name, hostPublicJwk: hk.publicJwk, validityDays: 1 });
  return createTokenIssuer({ mode: 'ca', hostId: name, ...hk, certificate });
}

async function token(issuer: TokenIssuer, id: string): Promise<IssuedToken> {
  const key = createEphemeralKey();
  const text = await issuer.issue({ id, labels: ['app=bench'], epkPublicRaw: key.publicRaw }, Math.floor(Date.now() / 1000), 600);
  const bytes = new Uint8Array(Buffer.from(text, 'latin1'));
  return { bytes, hash: new Uint8Array(createHash('sha256').update(bytes).digest()), epkPrivate: key.privateKey };
}

interface Host {
  hs: Handshake;
  flows: number;
}

function staticKey(): { privateKey: KeyObject; publicRaw: Uint8Array } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { privateKey, publicRaw: new Uint8Array(Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url')) };
}
const B_KEY = staticKey();

/** The policy and PUs the workers' handshakes see: replaced as a worker's snapshots replace them (--deopt). */
let currentPolicy = createDefaultPolicy();
let curClient: LocalPu;
let curServer: LocalPu;

function host(pu: LocalPu, serves: boolean): Host {
  const key = serves ? B_KEY : staticKey();
  const h: Host = { hs: null as unknown as Handshake, flows: 0 };
  h.hs = createHandshake({
    verifier: createVerifier({ mode: 'ca', caPublicJwk }, 30),
    digests,
    random: (x) => void randomFillSync(x),
    hostStaticKeys: [key],
    // b's key is published (the fleet's directory): no retry exchange.
    hostKeys: { lookup: (address) => (address === '10.213.100.2' ? { host: 'host-b', key: B_KEY.publicRaw } : undefined) },
    startedAt: Date.now() - 60_000,
    policy: () => currentPolicy,
    puByIndex: (i) => (i === pu.index ? (serves ? curServer : curClient) : undefined),
    puByLocalPort: (p) => (serves && p === PORT ? curServer : undefined),
    now: Date.now,
    onFlow: () => h.flows++,
    // Room for every proof of the run within the freshness window (this bench makes ~50 000 a second).
    v2: { registerEntries: 1 << 19 },
  });
  return h;
}

const client: LocalPu = { index: 1, id: 'a-pu1', labels: ['app=bench'], tokens: [await token(await hostIssuer('host-a'), 'a-pu1')] };
const server: LocalPu = { index: 1, id: 'b-pu1', labels: ['app=bench'], tokens: [await token(await hostIssuer('host-b'), 'b-pu1')] };
const a = host(client, false);
const b = host(server, true);
// As in the daemon, a worker's PUs and tokens arrive by postMessage: structured clones.
curClient = structuredClone(client);
curServer = structuredClone(server);
const out = new Uint8Array(65_536);
const reasons = new Map<string, number>();

function seg(src: Uint8Array, dst: Uint8Array, sport: number, dport: number, seq: number, ack: number, flags: number): Uint8Array {
  return build({ family: 4, src, dst, sport, dport, seq, ack, flags, window: 64240, options: flags & TCP_SYN ? SYN_OPTIONS : ACK_OPTIONS, payload: new Uint8Array(0) });
}

/** One step: the decision's output bytes (a copy). */
function step(i: number, h: Host, bytes: Uint8Array, hook: number, mark: number): Uint8Array {
  const d = h.hs.handle(bytes, hook, mark, out);
  if (d.reason !== 'ok') reasons.set(`${STEPS[i]}: ${d.reason}`, (reasons.get(`${STEPS[i]}: ${d.reason}`) ?? 0) + 1);
  return d.length > 0 ? out.slice(0, d.length) : bytes;
}

/** `inFlight` connections at a time, each step done for all of them before the next step. */
function connections(count: number, inFlight: number, firstPort: number): void {
  const mark = markForPuIndex(client.index);
  for (let done = 0; done < count; done += inFlight) {
    const n = Math.min(inFlight, count - done);
    const c = Array.from({ length: n }, (_, k) => ({ sport: firstPort + ((done + k) % 50_000), isnC: (Math.random() * 2 ** 32) >>> 0, isnS: (Math.random() * 2 ** 32) >>> 0 }));
    const synOnWire = c.map((x) => step(0, a, seg(A, B, x.sport, PORT, x.isnC, 0, TCP_SYN), HOOK_POST_ROUTING, mark));
    c.forEach((_, k) => step(1, b, synOnWire[k]!, HOOK_PRE_ROUTING, 0));
    const synAckOnWire = c.map((x) => step(2, b, seg(B, A, PORT, x.sport, x.isnS, (x.isnC + 1) >>> 0, TCP_SYN | TCP_ACK), HOOK_POST_ROUTING, 0));
    c.forEach((_, k) => step(3, a, synAckOnWire[k]!, HOOK_PRE_ROUTING, mark));
  }
}

// Correctness under interleaving first: refusals here are bugs, not load.
for (const inFlight of [1, 2, 32]) {
  reasons.clear();
  connections(2000, inFlight, 20_000);
  const bad = [...reasons].map(([k, n]) => `${k} ${n}`).join(', ');
  console.log(`${inFlight} in flight: 2000 connections, ${bad || 'every step ok'}`);
}

// Then time, on packets prepared outside the timed part (the bench's packet building is not
// the handshake's cost): two templates whose ports, sequence numbers and checksum are
// rewritten per connection, passed between the hosts in fixed buffers as a worker passes
// its queue's bytes. Every connection has a fresh ISN (a repeated one is a replay).
const N_TIMED = 4000;
const synT = seg(A, B, 40000, PORT, 1, 0, TCP_SYN);
const synAckT = seg(B, A, PORT, 40000, 1, 2, TCP_SYN | TCP_ACK);
const synView = parseTcp(synT) as TcpPacket;
const synAckView = parseTcp(synAckT) as TcpPacket;
function put32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = (v >>> 16) & 0xff;
  b[at + 2] = (v >>> 8) & 0xff;
  b[at + 3] = v & 0xff;
}
function put16(b: Uint8Array, at: number, v: number): void {
  b[at] = v >> 8;
  b[at + 1] = v & 0xff;
}
let nextIsn = (Math.random() * 2 ** 32) >>> 0;
/** The plain SYN and SYN-ACK of connection number `k` into the templates. */
function prepare(k: number): void {
  const sport = 20_000 + (k % 40_000);
  const isnC = (nextIsn = (nextIsn + 0x9e3779b1) >>> 0);
  const isnS = (isnC ^ 0x5bd1e995) >>> 0;
  const t = synView.tcpOffset;
  put16(synT, t, sport);
  put32(synT, t + 4, isnC);
  put16(synT, t + 16, 0);
  put16(synT, t + 16, tcpChecksum(synT, synView));
  const u = synAckView.tcpOffset;
  put16(synAckT, u + 2, sport);
  put32(synAckT, u + 4, isnS);
  put32(synAckT, u + 8, (isnC + 1) >>> 0);
  put16(synAckT, u + 16, 0);
  put16(synAckT, u + 16, tcpChecksum(synAckT, synAckView));
}
const wire1 = new Uint8Array(65_536);
const wire2 = new Uint8Array(65_536);
const sink = new Uint8Array(65_536);
const stepUs = new Float64Array(STEPS.length);
let failed = 0;
function fail(i: number, reason: string): void {
  failed++;
  reasons.set(`${STEPS[i]}: ${reason}`, (reasons.get(`${STEPS[i]}: ${reason}`) ?? 0) + 1);
}
/** One connection, both hosts, four passes; `timed`: per-step time into stepUs. */
function one(syn: Uint8Array, synAck: Uint8Array, mark: number, timed: boolean): void {
  let t0 = timed ? performance.now() : 0;
  const d0 = a.hs.handle(syn, HOOK_POST_ROUTING, mark, wire1);
  let t1 = timed ? performance.now() : 0;
  stepUs[0] = stepUs[0]! + (t1 - t0);
  if (d0.reason !== 'ok' || d0.length === 0) return void fail(0, d0.reason);
  t0 = t1;
  const d1 = b.hs.handle(wire1, HOOK_PRE_ROUTING, 0, sink);
  t1 = timed ? performance.now() : 0;
  stepUs[1] = stepUs[1]! + (t1 - t0);
  if (d1.reason !== 'ok') return void fail(1, d1.reason);
  t0 = t1;
  const d2 = b.hs.handle(synAck, HOOK_POST_ROUTING, 0, wire2);
  t1 = timed ? performance.now() : 0;
  stepUs[2] = stepUs[2]! + (t1 - t0);
  if (d2.reason !== 'ok' || d2.length === 0) return void fail(2, d2.reason);
  t0 = t1;
  const d3 = a.hs.handle(wire2, HOOK_PRE_ROUTING, mark, sink);
  t1 = timed ? performance.now() : 0;
  stepUs[3] = stepUs[3]! + (t1 - t0);
  if (d3.reason !== 'ok') fail(3, d3.reason);
}
const markA = markForPuIndex(client.index);
let conn = 0;
function round(n: number, timed: boolean): void {
  for (let k = 0; k < n; k++) {
    prepare(conn++);
    one(synT, synAckT, markA, timed);
  }
}

if (process.argv.includes('--deopt')) {
  const total = Number(process.env.DEOPT_N ?? 200_000);
  for (let k = 0; k < total; k++) {
    if (k === 60_000) {
      console.log('policy change');
      currentPolicy = createDefaultPolicy();
    }
    if (k === 100_000) {
      console.log('pu objects change');
      curClient = structuredClone(client);
      curServer = structuredClone(server);
    }
    if (k === 150_000) {
      console.log('new token');
      curClient = structuredClone({ ...client, tokens: [await token(await hostIssuer('host-a'), 'a-pu1')] });
    }
    if (k === 32_768 || k === 65_536 || k === 70_000) console.log(`at ${k}`);
    prepare(conn++);
    one(synT, synAckT, markA, false);
    if (k % 50_000 === 0) console.log(`conn ${k} failed ${failed} ${[...reasons].join(' ')}`);
  }
  console.log(`done ${total} failed ${failed} ${[...reasons].join(' ')}`);
  process.exit(failed > 0 ? 1 : 0);
}
round(N_TIMED, false);
reasons.clear();
const rounds: number[][] = [];
for (let r = 0; r < 5; r++) {
  stepUs.fill(0);
  round(N_TIMED, true);
  rounds.push([...stepUs].map((ms) => (ms * 1000) / N_TIMED));
}
const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
console.log(`\nµs per connection, median of 5 rounds x ${N_TIMED} connections (one at a time, packets built beforehand):`);
let ca_ = 0;
let cb = 0;
STEPS.forEach((name, i) => {
  const us = med(rounds.map((r) => r[i]!));
  if (name.endsWith('(a)')) ca_ += us;
  else cb += us;
  console.log(`  ${name.padEnd(16)} ${us.toFixed(1)}`);
});
console.log(`  client host (a)  ${ca_.toFixed(1)}\n  server host (b)  ${cb.toFixed(1)}\n  both             ${med(rounds.map((r) => r[0]! + r[1]! + r[2]! + r[3]!)).toFixed(1)}`);
// The same without per-step clocks, as this thread's CPU time (user + system): on a shared
// machine a round's wall time includes waiting for a CPU, its CPU time does not.
const cpu: number[] = [];
const wall: number[] = [];
for (let r = 0; r < 7; r++) {
  const c0 = process.cpuUsage();
  const w0 = performance.now();
  round(N_TIMED, false);
  const dc = process.cpuUsage(c0);
  wall.push(((performance.now() - w0) * 1000) / N_TIMED);
  cpu.push((dc.user + dc.system) / N_TIMED);
}
console.log(`  both, untimed steps: ${med(cpu).toFixed(1)} µs CPU, ${med(wall).toFixed(1)} µs wall per connection (median of 7 rounds x ${N_TIMED})`);

// Allocation: heap bytes per connection (both hosts) over batches that start from an empty
// young generation (a full GC before each, so no collection runs inside one), median; and
// how many collections a long run of connections causes.
v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const BATCH = 500;
const perConn: number[] = [];
for (let r = 0; r < 7; r++) {
  gc();
  const before = process.memoryUsage().heapUsed;
  round(BATCH, false);
  perConn.push((process.memoryUsage().heapUsed - before) / BATCH);
}
let gcs = 0;
const obs = new PerformanceObserver((list) => void (gcs += list.getEntries().length));
obs.observe({ entryTypes: ['gc'] });
const LONG = 100_000;
round(LONG, false);
await new Promise((r) => setTimeout(r, 50));
obs.disconnect();
console.log(`\nheap allocated per connection (both hosts): ${med(perConn).toFixed(0)} bytes (median of 7 batches x ${BATCH})`);
console.log(`garbage collections: ${gcs} in ${LONG} connections (${((gcs * 10_000) / LONG).toFixed(2)} per 10 000)`);
if (failed > 0) console.log(`FAILED steps in the timed runs: ${failed}: ${[...reasons].map(([k, n]) => `${k} ${n}`).join(', ')}`);
