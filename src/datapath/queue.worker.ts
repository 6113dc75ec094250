// One datapath worker: owns one NFQUEUE number through the native addon, runs every queued
// packet through the handshake, and issues verdicts. It never waits on the main thread: PU
// tables and keys arrive as snapshots, flow records and stats leave in batches.

import { parentPort, workerData } from 'node:worker_threads';
import { loadNative, type NativeQueue } from './native.js';
import { createPassThrough } from './handshake/pass-through.js';
import { createHandshake, VERDICT_ACCEPT, type FlowRecord, type Handshake, type HandshakeStats, type LocalPu } from './handshake/handshake.js';
import { randomFillSync } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import { createHandshakeCrypto } from './crypto.js';
import type { HostKeyDirectory } from './handshake/v2/index.js';
import { compilePolicy, createDefaultPolicy, type Policy } from '../policy/index.js';
import { drainObserved } from '../learn/observer.js';
import { AcceptedRing } from './accepted-ring.js';
import { createUdpPath, type UdpPath, type UdpPathStats } from './udp/path.js';
import { HANDLING_BUCKETS_US, flowToTuple, type FlowTuple, type FromWorker, type NamespaceQueue, type Snapshot, type SnapshotDelta, type ToWorker, type TrustUpdate, type WorkerConfig } from './messages.js';

const config = workerData as WorkerConfig;
const EDGE_HANDOVER_MS = 5000;
const IPPROTO_UDP = 17;
const port = parentPort!;
const send = (m: FromWorker): void => port.postMessage(m);

let pusByIndex = new Map<number, LocalPu>();
let pusByPort = new Map<number, LocalPu>();
/** Compile policy text in this worker; the daemon already validated it, so errors are unexpected. */
function compile(text: string | null): Policy | null {
  if (text == null) return createDefaultPolicy(); // null or absent: the built-in default
  const r = compilePolicy(text);
  if (r.ok) return r.policy;
  send({ type: 'policy-error', message: r.errors.map((e) => e.text).join('; ') });
  return null;
}
let policy: Policy = compile(config.policyText) ?? createDefaultPolicy();
let flows: FlowTuple[] = [];
let errors = 0;

/** Server host keys the fleet publishes (snapshot `hostKeys`), decoded once per change. */
let hostKeys = new Map<string, { host: string; key: Uint8Array }>();
/**
 * This host's own addresses, read at most every 2 s and only on a directory miss: a connection
 * to one of them (a bridge container to its host, a process to the host's own address) is
 * answered by this daemon, under this host's key, so it needs no first-contact retry.
 */
let localAddresses = new Set<string>();
let localReadAt = -Infinity;
function isLocalAddress(address: string): boolean {
  const now = Date.now();
  if (now - localReadAt >= 2000) {
    localReadAt = now;
    localAddresses = new Set(Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((i) => i.address)));
  }
  return localAddresses.has(address);
}
const hostKeyDirectory: HostKeyDirectory = {
  lookup: (address) =>
    hostKeys.get(address) ?? (config.handshakeKey && isLocalAddress(address) ? { host: config.hostId ?? '', key: config.handshakeKey.publicRaw } : undefined),
};
/** Revoked host and certificate ids (snapshot `revoked`). */
let revoked = new Set<string>();

function setHostKeys(map: Record<string, string>): void {
  const m = new Map<string, { host: string; key: Uint8Array }>();
  for (const [address, b64] of Object.entries(map)) {
    const key = new Uint8Array(Buffer.from(b64, 'base64url'));
    // A malformed entry names no key: proofs to that address fall back to learned keys.
    if (key.length === 32) m.set(address, { host: address, key });
  }
  hostKeys = m;
}

/**
 * The fleet's trust bundle and host directory (messages.ts TrustUpdate). The verifier applies
 * revocations, label bindings and the staleness bound to its cached tokens at once; peers the
 * v2 engine holds by reference were verified before, so any trust change drops them and their
 * next connection is verified again (it sends its token when the engine says it lacks it).
 */
function applyTrust(u: TrustUpdate): void {
  if (u.hostKeys) setHostKeys(u.hostKeys);
  if (u.revoked) revoked = new Set(u.revoked);
  crypto?.setTrust(u);
  // The staleness bound (refuseNew) is left out: it refuses only peers never verified, and
  // every peer held by reference was verified.
  if (u.revoked !== undefined || u.labelBindings !== undefined || u.cas !== undefined) {
    handshake?.peersChanged?.();
    for (const e of nsQueues.values()) e.handshake?.peersChanged?.();
  }
}

function applySnapshot(s: Snapshot): void {
  const byIndex = new Map<number, LocalPu>();
  for (const p of s.pus) byIndex.set(p.index, { index: p.index, id: p.id, labels: p.labels, tokens: p.tokens });
  const byPort = new Map<number, LocalPu>();
  for (const [localPort, index] of s.ports) {
    const pu = byIndex.get(index);
    if (pu) byPort.set(localPort, pu);
  }
  pusByIndex = byIndex;
  pusByPort = byPort;
  portList = s.ports;
  applyTrust(s);
}

/** The port map of the last snapshot or delta: rebuilt after each delta (its LocalPu objects are replaced). */
let portList: Array<[number, number]> = [];

function applyDelta(d: SnapshotDelta): void {
  for (const i of d.removed) pusByIndex.delete(i);
  for (const p of d.set) pusByIndex.set(p.index, { index: p.index, id: p.id, labels: p.labels, tokens: p.tokens });
  if (d.ports) portList = d.ports;
  const byPort = new Map<number, LocalPu>();
  for (const [localPort, index] of portList) {
    const pu = pusByIndex.get(index);
    if (pu) byPort.set(localPort, pu);
  }
  pusByPort = byPort;
  applyTrust(d);
}

const native = loadNative();
// The addon's SHA-256/HMAC: the same results as node:crypto (test/unit/native-hash.test.ts), ~8x cheaper per call.
const crypto = config.mode === 'handshake' ? createHandshakeCrypto(config.trust, config.hostSecret, config.clockSkewSeconds, native) : null;
const handling = { buckets: new Array<number>(HANDLING_BUCKETS_US.length + 1).fill(0), sumUs: 0, count: 0 };

/**
 * Whether accept records cross to the main thread: only while someone follows or logs them
 * (the pool says; true until it does). Otherwise an accept is counted (unsentAccepts, in the
 * stats) and, when it names a local PU, kept here for revoke (`accepted` request), so the
 * connection costs no structured clone on this thread and no work on the main one. Refusals
 * always cross: `tessera flows` shows every one of them.
 */
let follow = true;
let unsentAccepts = 0;
/**
 * Accept records not sent, newest last (the main thread's revoke memory has the same bound
 * and dedupes them by tuple). A ring of typed rows: keeping a record allocates nothing that
 * outlives the packet (accepted-ring.ts says what the Lru of tuples cost the GC).
 */
const unsent = new AcceptedRing(65_536);

function onFlow(r: FlowRecord): void {
  if (!follow && r.verdict === 'accept') {
    unsentAccepts++;
    if (r.localLabels) unsent.push(r);
    return;
  }
  flows.push(flowToTuple(r));
  // Decisions reach the daemon within ~20 ms (so `tessera flows` right after a refusal
  // shows it), yet a burst costs one message, not one per connection.
  if (flows.length >= 256) flushFlows();
  else if (!flushTimer) flushTimer = setTimeout(flushFlows, 20);
}

/**
 * A handshake for one queue. `nsPuIndex` set: the queue is in a container's namespace, where
 * the container's PU is the only local PU, so every local port is its.
 */
function makeHandshake(nsPuIndex?: number): Handshake | null {
  if (config.mode === 'passes' || config.mode === 'passes6') return createPassThrough(config.mode === 'passes6');
  if (!crypto) return null;
  return createHandshake({
    verifier: crypto.tokens,
    // The addon's SHA-256/HMAC: the same results as node:crypto (test/unit/native-hash.test.ts), ~8x cheaper per call.
    digests: native,
    random: (b) => void randomFillSync(b),
    hostStaticKeys: config.handshakeKey ? [config.handshakeKey] : [],
    hostKeys: hostKeyDirectory,
    revoked: (host) => revoked.has(host),
    policy: () => policy,
    puByIndex: (i) => pusByIndex.get(i),
    puByLocalPort: nsPuIndex === undefined ? (p) => pusByPort.get(p) : () => pusByIndex.get(nsPuIndex),
    now: Date.now,
    ...(config.startedAt !== undefined ? { startedAt: config.startedAt } : {}),
    onFlow,
    options: config.handshake,
    ...(config.v2 ? { v2: config.v2 } : {}),
    // One strike register for the host, whichever worker and queue a copy of a proof reaches
    // (the proofs do not cover the tuple: NAT). The pool frees locks by this holder id.
    ...(config.register ? { register: { buffer: config.register, holder: config.queueNum + 1 } } : {}),
  });
}

const handshake = makeHandshake();
/**
 * UDP of PUs (issue 13): an exchange and raw sender per queue. A container namespace's sends
 * from inside that namespace, and its flow state is its own, as its handshake's is. The
 * Hello's proof uses v2's host keys, epoch and the host's shared strike register (udp/hello-proof.ts).
 */
const makeUdp = (netns?: string): UdpPath | null =>
  crypto
    ? createUdpPath({
        crypto, policy: () => policy, puByIndex: (i) => pusByIndex.get(i), onFlow, options: config.udp,
        proof: { hostStaticKeys: config.handshakeKey ? [config.handshakeKey] : [], hostKeys: hostKeyDirectory, tokens: crypto.tokens, digests: native, ...(config.startedAt !== undefined ? { startedAt: config.startedAt } : {}), ...(config.register ? { register: { buffer: config.register, holder: config.queueNum + 1 } } : {}) },
        ...(netns ? { netns } : {}),
      })
    : null;
const udp = makeUdp();

let flushTimer: NodeJS.Timeout | null = null;
function flushFlows(): void {
  if (flushTimer) clearTimeout(flushTimer);
  flushTimer = null;
  if (flows.length === 0) return;
  send({ type: 'flows', records: flows });
  flows = [];
}

const out = new Uint8Array(65_536);

/** The batch callback of one queue, deciding with its own handshake (per-flow state is per queue). */
function consumer(get: () => NativeQueue, hs: Handshake | null, u: UdpPath | null): (count: number) => void {
  return (count) => {
    const queue = get();
    const meta = queue.meta;
    const data = queue.data;
    const bytes = data.buffer;
    const at = data.byteOffset;
    // One clock read per packet: each packet's handling ends where the next one's begins.
    let t0 = performance.now();
    for (let i = 0; i < count; i++) {
      const base = i * 8;
      const id = meta[base]!;
      if (!hs) {
        queue.verdict(id, VERDICT_ACCEPT);
        continue;
      }
      const off = meta[base + 1]!;
      const len = meta[base + 2]!;
      // UDP goes to its queue's own exchange (the IP protocol byte, as udp/packet.ts isUdp reads
      // it): a TCP packet does not pay for the UDP path's view and call.
      const v = len > 9 ? data[off]! >> 4 : 0;
      if (u && (v === 4 ? data[off + 9] : v === 6 ? data[off + 6] : 0) === IPPROTO_UDP && u.take(queue, id, data, off, len, meta[base + 4]!, meta[base + 3]!, out)) {
        t0 = performance.now();
        continue;
      }
      try {
        // A plain Uint8Array view (not a Buffer), so that .slice() in pure code copies.
        const d = hs.handle(new Uint8Array(bytes, at + off, len), meta[base + 4]!, meta[base + 3]!, out);
        if (d.length > 0) queue.verdict(id, d.verdict, d.mark, out, d.length);
        else queue.verdict(id, d.verdict, d.mark);
        const t1 = performance.now();
        const us = (t1 - t0) * 1000;
        t0 = t1;
        let b = 0;
        while (b < HANDLING_BUCKETS_US.length && us > HANDLING_BUCKETS_US[b]!) b++;
        handling.buckets[b]!++;
        handling.sumUs += us;
        handling.count++;
      } catch (err) {
        // A bug must not wedge the queue: refuse the packet and keep going.
        errors++;
        queue.verdict(id, 0);
        t0 = performance.now();
        if (errors <= 10 || errors % 1000 === 0) console.error(`tessera worker ${config.queueNum}: handler error: ${(err as Error).stack}`);
      }
    }
    statsChanged();
  };
}

let queue: NativeQueue;
try {
  queue = new native.Queue({ queueNum: config.queueNum, maxLen: config.maxLen }, consumer(() => queue, handshake, udp));
} catch (err) {
  const e = err as Error & { code?: string };
  send({ type: 'fatal', message: e.message, code: e.code });
  process.exit(1);
}

/** Queues this worker owns in container namespaces, by key (PU id). */
const nsQueues = new Map<string, { queue: NativeQueue; handshake: Handshake | null; udp: UdpPath | null }>();

function openNamespace(ns: NamespaceQueue): void {
  closeNamespace(ns.key);
  try {
    const hs = makeHandshake(ns.puIndex);
    const u = makeUdp(ns.netns);
    let q: NativeQueue;
    try {
      // Smaller buffers than the host queue: one container's handshakes.
      q = new native.Queue({ queueNum: ns.queueNum, maxLen: config.maxLen, netns: ns.netns, rcvBufBytes: 1 << 20, batchSize: 16 }, consumer(() => q, hs, u));
    } catch (err) {
      u?.close(); // its raw sockets would keep the namespace alive
      throw err;
    }
    nsQueues.set(ns.key, { queue: q, handshake: hs, udp: u });
    send({ type: 'ns-opened', key: ns.key });
    statsChanged();
  } catch (err) {
    send({ type: 'ns-error', key: ns.key, message: (err as Error).message });
  }
}

function closeNamespace(key: string): void {
  const e = nsQueues.get(key);
  if (!e) return;
  nsQueues.delete(key);
  // Closing the socket also releases the namespace it pins.
  e.queue.close();
  e.udp?.close();
}

function sumStats(): { handshake: HandshakeStats | null; queue: ReturnType<NativeQueue['stats']> } {
  const q = queue.stats();
  let h = handshake?.stats() ?? null;
  for (const e of nsQueues.values()) {
    const s = e.queue.stats();
    q.received += s.received;
    q.verdicts += s.verdicts;
    q.enobufs += s.enobufs;
    q.sendErrors += s.sendErrors;
    q.recvErrors += s.recvErrors;
    q.batches += s.batches;
    const hs = e.handshake?.stats();
    if (h && hs) {
      const byReason = { ...h.byReason };
      for (const [k, v] of Object.entries(hs.byReason)) byReason[k] = (byReason[k] ?? 0) + v;
      h = {
        packets: h.packets + hs.packets,
        accepted: h.accepted + hs.accepted,
        passed: h.passed + hs.passed,
        rejected: h.rejected + hs.rejected,
        dropped: h.dropped + hs.dropped,
        serverState: h.serverState + hs.serverState,
        clientState: h.clientState + hs.clientState,
        byReason,
      };
    }
  }
  return { handshake: h, queue: q };
}

/** The host queue's UDP figures plus every container namespace's. */
function sumUdp(s: UdpPathStats): UdpPathStats {
  for (const e of nsQueues.values()) {
    const n = e.udp?.stats();
    if (!n) continue;
    const byReason = { ...s.byReason };
    for (const [k, v] of Object.entries(n.byReason)) byReason[k] = (byReason[k] ?? 0) + v;
    s = {
      packets: s.packets + n.packets,
      authorized: s.authorized + n.authorized,
      refused: s.refused + n.refused,
      dropped: s.dropped + n.dropped,
      passed: s.passed + n.passed,
      clientState: s.clientState + n.clientState,
      serverState: s.serverState + n.serverState,
      sent: s.sent + n.sent,
      sendErrors: s.sendErrors + n.sendErrors,
      // One register for the whole host: every path reads the same figure.
      registerFull: Math.max(s.registerFull, n.registerFull),
      byReason,
    };
  }
  return s;
}

function sendStats(): void {
  if (statsTimer) clearTimeout(statsTimer);
  statsTimer = null;
  const c = crypto?.verifierStats();
  send({
    type: 'stats',
    stats: {
      queueNum: config.queueNum,
      ...sumStats(),
      caches: c ? { tokenHits: c.tokens.hits, tokenMisses: c.tokens.misses, x25519Hits: c.x25519.hits, x25519Misses: c.x25519.misses } : null,
      handling,
      errors,
      unsentAccepts,
      ...(udp ? { udp: sumUdp(udp.stats()) } : {}),
    },
  });
}

/**
 * Stats are pushed when they changed, never on an idle clock (issue 17: an idle daemon does
 * nothing): the first batch after a quiet spell arms one 250 ms timer, whose send covers every
 * batch until then. So the daemon's figures lag the packets by at most 250 ms, as with the old
 * fixed timer, and a worker without packets never wakes.
 */
let statsTimer: NodeJS.Timeout | null = null;
function statsChanged(): void {
  statsTimer ??= setTimeout(sendStats, 250);
  edgeTimer ??= setTimeout(sendEdges, EDGE_HANDOVER_MS);
}

/** Learn mode: observed edges go to the daemon on a slow timer, and only when there are some. */
function sendEdges(): void {
  edgeTimer = null;
  const table = drainObserved();
  if (table) send({ type: 'edges', table });
}
let edgeTimer: NodeJS.Timeout | null = null;

port.on('message', (m: ToWorker) => {
  if (m.type === 'snapshot') applySnapshot(m.snapshot);
  else if (m.type === 'delta') applyDelta(m.delta);
  else if (m.type === 'policy') policy = compile(m.text) ?? policy;
  else if (m.type === 'follow') follow = m.on;
  else if (m.type === 'accepted') send({ type: 'accepted', id: m.id, records: unsent.tuples() });
  else if (m.type === 'ns-open') openNamespace(m.ns);
  else if (m.type === 'ns-close') {
    closeNamespace(m.key);
    send({ type: 'ns-closed', key: m.key });
    statsChanged();
  } else if (m.type === 'stop') {
    if (edgeTimer) clearTimeout(edgeTimer);
    sendStats(); // the last figures, unsentAccepts included
    flushFlows();
    sendEdges();
    for (const key of [...nsQueues.keys()]) closeNamespace(key);
    queue.close();
    port.close();
  }
});

send({ type: 'ready', queueNum: config.queueNum });
// The first figures (all zero), so that status and metrics list every queue from the start.
sendStats();
