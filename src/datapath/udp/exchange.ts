// The UDP exchange: a pure state machine from (datagram bytes, hook, nfmark) to a verdict and
// the control packets to send. No I/O, no clock of its own; the worker sends `emit` with a raw
// socket (udp/sender.ts). docs/protocol.md ("UDP") describes it:
//
//   client host                                          server host
//   first datagram out: held, rewritten into  ───▶  Hello in: verify token(C), the proof
//     Hello(nonceC, ts, macH, token C)                    (hello-proof.ts), ingress policy; keep
//                                                          (nonceC, peer, expected macC); Reply
//   Reply in: verify token(S) and macS, egress   ◀───  Reply(nonceS, macS, token S)
//     policy; connmark AUTHORIZED; swallowed;
//     send Confirm(macC, held datagram)          ───▶  Confirm in: compare macC; connmark
//                                                          AUTHORIZED; deliver the held datagram
//
// First contact (no host key known): an unproven Hello, a Retry teaching the key, the proven Hello.
// K = HKDF(X25519(token keys), nonceC, nonceS), as TCP's; macS = MAC(K, "UR" ‖ hashS ‖ hashC),
// macC = MAC(K, "UC" ‖ hashC ‖ hashS). Per-flow state lives in LRU-bounded maps with a TTL,
// keyed by (remote address, remote port, local port). Lost control packets: the client's
// retries of its datagram resend the Hello (same nonceC, at most MAX_HELLOS); a repeated Hello
// gets the same Reply again; a plain datagram on a flow whose Confirm was lost gets the Reply
// again, and a Reply on a flow the client already confirmed gets the Confirm again (both
// bounded by MAX_RESENDS).

import type { Policy, PolicyDecision } from '../../policy/index.js';
import { compiledOf } from '../../policy/compile.js';
import { formatAddress, type FlowRecord } from '../../flow.js';
import { OP_PRESENT, PU_DEST, REJECT_BIT, puIndexFromMark } from '../../marks.js';
import { Lru } from '../../identity/index.js';
import { Bounded, SourceBudget } from '../handshake/tables.js';
import { createFlowKeys } from '../handshake/keys.js';
import { HOOK_LOCAL_OUT, HOOK_POST_ROUTING, VERDICT_ACCEPT, VERDICT_DROP, VERDICT_REPEAT, verdictMark } from '../handshake/verdict.js';
import type { HandshakeCrypto, IssuedToken, LocalPu, Reason, VerifiedPeer, VerifyFailure } from '../handshake/types.js';
import { parseUdp, udpChecksumOk, writeUdp, type UdpPacket } from './packet.js';
import { CONFIRM, FLAG_PROOF, HELLO, REPLY, RETRY, decodeControl, encodeControl, hasMagic } from './wire.js';
import { createHelloProofs, tupleHash, type HelloProofDeps, type HelloProofOptions } from './hello-proof.js';
import type { KnownHostKey } from '../handshake/v2/keys.js';

/** The TCP handshake's reasons that apply to UDP, and `pending` (a datagram held while its flow's exchange runs). */
export type UdpReason = Exclude<Reason, 'fast-open' | 'simultaneous-open'> | 'pending';

export interface UdpDecision {
  verdict: number;
  /** New nfmark, or -1 to leave it. */
  mark: number;
  /** > 0: the packet was rewritten into out[0..length). */
  length: number;
  reason: UdpReason;
  /** Control packets to send (complete IP packets), each a new array. */
  emit: Uint8Array[];
}

export interface UdpOptions {
  /**
   * The application's first datagram while the exchange runs: held and carried in the Confirm
   * (default), or dropped for the application to retry (measured in bench/udp.ts, not used).
   */
  first: 'hold' | 'drop';
  /** Refusal: silence (default) or an ICMP port unreachable from the kernel (ingress only). */
  reject: 'drop' | 'icmp';
  maxPacketLength: number;
  stateEntries: number;
  stateTtlMs: number;
  failedVerifyBurst: number;
  failedVerifyPerSecond: number;
  budgetSources: number;
  /** The Hello proof's freshness window and caches (hello-proof.ts). */
  proof?: Partial<HelloProofOptions>;
}

export const DEFAULT_UDP_OPTIONS: UdpOptions = {
  first: 'hold',
  reject: 'drop',
  maxPacketLength: 1500,
  stateEntries: 16_384,
  stateTtlMs: 10_000,
  failedVerifyBurst: 32,
  failedVerifyPerSecond: 8,
  budgetSources: 4_096,
};

export interface UdpDeps {
  crypto: HandshakeCrypto;
  policy: () => Policy;
  puByIndex(index: number): LocalPu | undefined;
  now(): number;
  onFlow(record: FlowRecord): void;
  /** Host keys, epoch and strike register for the Hello's proof (the worker passes protocol v2's). */
  proof?: HelloProofDeps;
  options?: Partial<UdpOptions>;
}

export interface UdpStats {
  packets: number;
  authorized: number;
  refused: number;
  dropped: number;
  passed: number;
  clientState: number;
  serverState: number;
  /** Hellos this worker found no room for in the host's strike register. */
  registerFull: number;
  byReason: Record<string, number>;
}

export interface UdpExchange {
  handle(buf: Uint8Array, hook: number, mark: number, out: Uint8Array): UdpDecision;
  stats(): UdpStats;
}

/** Hellos a client sends for one flow (its first and the application's retries). */
export const MAX_HELLOS = 4;
/** Replies (server) or Confirms (client) sent again for one flow after a loss. */
export const MAX_RESENDS = 4;
/** How long a client remembers a Confirm it sent, to answer a repeated Reply (ms). */
const CONFIRMED_TTL_MS = 5_000;
const TAG_REPLY = 0x5552; // "UR"
const TAG_CONFIRM = 0x5543; // "UC"
const LABEL_UDP_CLIENT = 0x55_01;
const LABEL_UDP_SERVER = 0x55_02;
/** The op with which every authorizing UDP verdict comes back (TESSERA-UDP-APPLY reads OP_PRESENT only). */
const OP_AUTHORIZE = OP_PRESENT;
const ZERO4 = new Uint8Array(4);
const ZERO16 = new Uint8Array(16);

interface ClientState {
  at: number;
  puIndex: number;
  token: IssuedToken;
  nonceC: Uint8Array;
  /** The application's latest datagram, released inside the Confirm. */
  held: Uint8Array;
  hellos: number;
  /** The server's address as this host sends to it (RFC 5952), and the host key the Hellos are proved to (null: first contact). */
  addr: string;
  hk: KnownHostKey | null;
}
interface ServerState {
  at: number;
  puIndex: number;
  nonceC: Uint8Array;
  peer: VerifiedPeer;
  decision: PolicyDecision;
  macC: Uint8Array;
  /** The Reply as sent (the payload), for a repeated Hello or a lost Confirm. */
  reply: Uint8Array;
  resends: number;
}
interface Confirmed {
  at: number;
  confirm: Uint8Array;
  resends: number;
}

export function createUdpExchange(deps: UdpDeps): UdpExchange {
  const opt: UdpOptions = { ...DEFAULT_UDP_OPTIONS, ...deps.options };
  const { crypto } = deps;
  const clients = new Bounded<ClientState>(opt.stateEntries);
  const servers = new Bounded<ServerState>(opt.stateEntries);
  const confirmed = new Bounded<Confirmed>(opt.stateEntries);
  const budget = new SourceBudget(opt.budgetSources, opt.failedVerifyBurst, opt.failedVerifyPerSecond);
  const { flowInput, tupleKey, sourceKey, macInput } = createFlowKeys();
  const proofs = createHelloProofs(crypto, deps.proof ?? {}, opt.proof);
  const counters = { packets: 0, authorized: 0, refused: 0, dropped: 0, passed: 0 };
  const byReason: Record<string, number> = Object.create(null);
  /** Which rule ids of a policy describe networks (a peer without Tessera): cached per policy. */
  const networkRules = new WeakMap<Policy, Lru<string, boolean>>();
  let counter = 0;

  function settle(verdict: number, mark: number, length: number, reason: UdpReason, emit: Uint8Array[] = []): UdpDecision {
    byReason[reason] = (byReason[reason] ?? 0) + 1;
    return { verdict, mark, length, reason, emit };
  }

  interface Ctx {
    buf: Uint8Array;
    p: UdpPacket;
    mark: number;
    ingress: boolean;
    stage: FlowRecord['stage'];
    local: LocalPu | undefined;
    peer: VerifiedPeer | null;
  }

  function record(c: Ctx, verdict: FlowRecord['verdict'], reason: UdpReason, d: PolicyDecision | null): void {
    const { buf, p } = c;
    // The remote end: the source of an inbound packet, the destination of an outbound one.
    const rAddr = c.ingress ? p.srcAddrOffset : p.dstAddrOffset;
    deps.onFlow({
      time: deps.now(),
      direction: c.stage === 'reply' ? 'egress' : c.stage === 'datagram' && !c.ingress ? 'egress' : 'ingress',
      stage: c.stage,
      verdict,
      reason,
      ruleId: d?.ruleId ?? 'protocol',
      localPu: c.local?.id ?? null,
      localLabels: c.local?.labels ?? null,
      localPort: c.ingress ? p.dstPort : p.srcPort,
      remoteAddr: formatAddress(buf, rAddr, p.addrLength),
      remotePort: c.ingress ? p.srcPort : p.dstPort,
      remoteHost: c.peer?.host ?? null,
      remotePu: c.peer?.pu ?? null,
      remoteLabels: c.peer?.labels ?? null,
      protocol: 'udp',
      ...(d?.observed?.length ? { observed: d.observed } : {}),
    });
  }

  const drop = (reason: UdpReason): UdpDecision => {
    counters.dropped++;
    return settle(VERDICT_DROP, -1, 0, reason);
  };
  /** A control packet consumed here (nothing authorized), with packets to send. */
  const swallow = (reason: UdpReason, emit: Uint8Array[] = []): UdpDecision => {
    counters.passed++;
    return settle(VERDICT_DROP, -1, 0, reason, emit);
  };
  function refuse(c: Ctx, reason: UdpReason, d: PolicyDecision | null = null): UdpDecision {
    counters.refused++;
    record(c, 'reject', reason, d);
    const icmp = d?.reject ? d.reject === 'reset' : opt.reject === 'icmp';
    // An ICMP port unreachable comes from filter INPUT (TESSERA-REJECT): ingress only, and
    // never in answer to a control packet of ours.
    if (icmp && c.ingress && !hasMagic(c.buf.subarray(c.p.payloadOffset, c.p.payloadOffset + c.p.payloadLength))) {
      return settle(VERDICT_ACCEPT, verdictMark(c.mark, REJECT_BIT), 0, reason);
    }
    return settle(VERDICT_DROP, -1, 0, reason);
  }
  /** The flow is authorized: TESSERA-UDP-APPLY sets the connmark; `consume` drops the packet after. */
  function authorize(c: Ctx, d: PolicyDecision | null, consume: boolean, length: number, emit: Uint8Array[] = []): UdpDecision {
    counters.authorized++;
    const reason: UdpReason = d?.audit ? 'audit' : 'ok';
    if (d) record(c, 'accept', reason, d);
    return settle(VERDICT_REPEAT, verdictMark(c.mark, OP_AUTHORIZE | (consume ? REJECT_BIT : 0)), length, reason, emit);
  }

  function isNetworkRule(policy: Policy, ruleId: string): boolean {
    let m = networkRules.get(policy);
    if (!m) networkRules.set(policy, (m = new Lru(1024)));
    let v = m.peek(ruleId);
    if (v === undefined) {
      const r = compiledOf.get(policy)?.rules.find((x) => x.ast.id === ruleId);
      v = r !== undefined && (r.ast.to.kind === 'networks' || r.ast.from.kind === 'networks');
      m.set(ruleId, v);
    }
    return v;
  }

  /** A control packet on this datagram's tuple, in an array of its exact size (one per flow step: no 1,500-byte scratch and copy). */
  function packet(c: Ctx, reverse: boolean, payload: Uint8Array): Uint8Array | null {
    const size = (c.p.family === 4 ? 20 : 40) + 8 + payload.length;
    if (size > opt.maxPacketLength) return null;
    const pkt = new Uint8Array(size);
    return writeUdp(c.buf, c.p, reverse, payload, pkt, size) < 0 ? null : pkt;
  }

  function verifyBudgeted(c: Ctx, token: Uint8Array): VerifiedPeer | VerifyFailure | null {
    const known = crypto.cached(token);
    if (known !== null) return known;
    const source = sourceKey(c.buf, c.p.srcAddrOffset, c.p.addrLength === 16 ? 8 : 4);
    const now = deps.now();
    if (!budget.allows(source, now)) return null;
    const peer = crypto.verify(token);
    if (!peer.ok) budget.charge(source, now);
    return peer;
  }

  // ---- egress: a PU's datagram on a flow that is not authorized (yet) ----

  function egress(c: Ctx, out: Uint8Array): UdpDecision {
    const { buf, p } = c;
    c.stage = 'datagram';
    const pu = deps.puByIndex(puIndexFromMark(c.mark));
    c.local = pu;
    if (!pu || pu.tokens.length === 0) return drop('no-pu');
    const payload = buf.subarray(p.payloadOffset, p.payloadOffset + p.payloadLength);
    // A PU never sends our control packets itself: they are made here.
    if (hasMagic(payload)) return drop('malformed');
    const now = deps.now();
    const key = tupleKey(buf, p.dstAddrOffset, p.addrLength, p.dstPort, p.srcPort);
    let st = clients.get(key, now, opt.stateTtlMs);
    if (st) {
      // The application retried while the exchange runs: the Hello (or its Reply) was lost,
      // or is slow. Send the Hello again (same nonceC), holding the newest datagram.
      if (st.hellos >= MAX_HELLOS) return drop('pending');
      st.hellos++;
      st.held = payload.slice();
    } else {
      // A peer without Tessera that a network rule allows: no exchange, the datagram goes as is.
      const policy = deps.policy();
      const d = policy.egress({ client: pu, server: null, port: p.dstPort, peerAddr: buf.subarray(p.dstAddrOffset, p.dstAddrOffset + p.addrLength), protocol: 'udp' });
      if (d.allow && isNetworkRule(policy, d.ruleId)) {
        c.ingress = false;
        return authorize(c, d, false, 0);
      }
      const nonceC = crypto.nonce(flowInput(buf, p.dstAddrOffset, p.addrLength, p.dstPort, [LABEL_UDP_CLIENT, p.srcPort, now >>> 0, (now / 2 ** 32) >>> 0, ++counter], []));
      const addr = formatAddress(buf, p.dstAddrOffset, p.addrLength);
      st = { at: now, puIndex: pu.index, token: pu.tokens[0]!, nonceC, held: payload.slice(), hellos: 1, addr, hk: proofs.keyFor(addr) };
      clients.set(key, st);
      confirmed.delete(key);
    }
    const n = writeUdp(buf, p, false, helloOf(st, now), out, opt.maxPacketLength);
    if (n < 0) return drop('too-large');
    counters.passed++;
    // The datagram leaves as the Hello; nothing is authorized yet.
    return settle(VERDICT_ACCEPT, -1, n, 'ok');
  }

  /** A Hello for the client's flow: proven when a key of the server host is known, each with a fresh ts. */
  function helloOf(st: ClientState, now: number): Uint8Array {
    const pr = st.hk ? proofs.prove(st.token, st.hk, st.nonceC, now) : null;
    if (pr) return encodeControl({ type: HELLO, flags: FLAG_PROOF, nonceC: st.nonceC, ts: pr.ts, keyId: pr.keyId, macH: pr.macH, token: st.token.bytes });
    return encodeControl({ type: HELLO, flags: 0, nonceC: st.nonceC, ts: 0, keyId: ZERO4, macH: ZERO16, token: st.token.bytes });
  }

  // ---- ingress ----

  function hello(c: Ctx, h: { flags: number; nonceC: Uint8Array; ts: number; keyId: Uint8Array; macH: Uint8Array }, token: Uint8Array): UdpDecision {
    const { nonceC } = h;
    const { buf, p, mark } = c;
    c.stage = 'hello';
    const pu = (mark & PU_DEST) !== 0 ? deps.puByIndex(puIndexFromMark(mark)) : undefined;
    c.local = pu;
    // Not a PU's socket (the host's own service, or none): nothing here speaks for it.
    if (!pu || pu.tokens.length === 0) return drop('no-pu');
    const now = deps.now();
    const key = tupleKey(buf, p.srcAddrOffset, p.addrLength, p.srcPort, p.dstPort);
    const prev = servers.get(key, now, opt.stateTtlMs);
    if (prev && crypto.equal(prev.nonceC, nonceC)) {
      // The same Hello again: our Reply was lost. The same Reply, a bounded number of times.
      if (prev.resends >= MAX_RESENDS) return drop('pending');
      prev.resends++;
      const again = packet(c, true, prev.reply);
      return swallow('ok', again ? [again] : []);
    }
    const peer = verifyBudgeted(c, token);
    if (peer === null) return drop('rate-limited');
    if (!peer.ok) return refuse(c, peer.reason);
    c.peer = peer;
    const mine = pu.tokens[0]!;
    const judged = (h.flags & FLAG_PROOF) === 0 ? 'retry' : proofs.check(h, peer, tupleHash(buf, p), now);
    if (judged === 'retry') {
      // First contact, or a key of ours the client should no longer use: teach ours (our
      // token's hk). Stateless and before policy: a replayed or stripped Hello learns nothing
      // but our token, which every Reply carries anyway.
      if (!proofs.hasKeys) return refuse(c, 'no-host-key');
      const retry = packet(c, true, encodeControl({ type: RETRY, nonceC, token: mine.bytes }));
      return swallow('retry', retry ? [retry] : []);
    }
    if (judged !== 'ok') return refuse(c, judged);
    const d = deps.policy().ingress({ client: peer, server: pu, port: p.dstPort, peerAddr: buf.subarray(p.srcAddrOffset, p.srcAddrOffset + p.addrLength), protocol: 'udp' });
    if (!d.allow) return refuse(c, 'policy', d);
    const nonceS = crypto.nonce(flowInput(buf, p.srcAddrOffset, p.addrLength, p.srcPort, [LABEL_UDP_SERVER, p.dstPort, now >>> 0, ++counter], [nonceC, peer.tokenHash]));
    const k = crypto.sessionKey(crypto.sharedSecret(mine.epkPrivate, peer.epk), nonceC, nonceS);
    const macS = crypto.mac(k, macInput(TAG_REPLY, mine.hash, peer.tokenHash));
    const macC = crypto.mac(k, macInput(TAG_CONFIRM, peer.tokenHash, mine.hash));
    const reply = encodeControl({ type: REPLY, nonceS, macS, token: mine.bytes });
    const pkt = packet(c, true, reply);
    if (!pkt) return drop('too-large');
    servers.set(key, { at: now, puIndex: pu.index, nonceC: nonceC.slice(), peer, decision: d, macC, reply, resends: 0 });
    return swallow('ok', [pkt]);
  }

  function reply(c: Ctx, nonceS: Uint8Array, macS: Uint8Array, token: Uint8Array): UdpDecision {
    const { buf, p } = c;
    c.stage = 'reply';
    const now = deps.now();
    const key = tupleKey(buf, p.srcAddrOffset, p.addrLength, p.srcPort, p.dstPort);
    const st = clients.get(key, now, opt.stateTtlMs);
    if (!st) {
      // Our Confirm was lost and the server asks again: the same Confirm, bounded.
      const done = confirmed.get(key, now, CONFIRMED_TTL_MS);
      if (!done || done.resends >= MAX_RESENDS) return drop('no-state');
      done.resends++;
      const again = packet(c, true, done.confirm);
      return swallow('ok', again ? [again] : []);
    }
    const pu = deps.puByIndex(st.puIndex);
    c.local = pu;
    if (!pu) return drop('no-pu');
    const peer = crypto.verify(token);
    if (!peer.ok) return refuse(c, peer.reason);
    c.peer = peer;
    const k = crypto.sessionKey(crypto.sharedSecret(st.token.epkPrivate, peer.epk), st.nonceC, nonceS);
    // Only the holder of the server token's key, answering THIS Hello (nonceC), can make it.
    if (!crypto.equal(crypto.mac(k, macInput(TAG_REPLY, peer.tokenHash, st.token.hash)), macS)) return refuse(c, 'bad-mac');
    const d = deps.policy().egress({ client: pu, server: peer, port: p.srcPort, peerAddr: buf.subarray(p.srcAddrOffset, p.srcAddrOffset + p.addrLength), protocol: 'udp' });
    if (!d.allow) return refuse(c, 'policy', d);
    const macC = crypto.mac(k, macInput(TAG_CONFIRM, st.token.hash, peer.tokenHash));
    const confirm = encodeControl({ type: CONFIRM, macC, data: opt.first === 'hold' ? st.held : new Uint8Array(0) });
    const pkt = packet(c, true, confirm);
    if (!pkt) return drop('too-large');
    clients.delete(key);
    confirmed.set(key, { at: now, confirm, resends: 0 });
    // Our side of the flow is authorized (the Reply itself is consumed); the Confirm carries
    // the held datagram to the server.
    return authorize(c, d, true, 0, [pkt]);
  }

  /** Client: the server asks for a proven Hello (first contact, or our key of it is old): learn its key, send one at once. */
  function retry(c: Ctx, nonceC: Uint8Array, token: Uint8Array): UdpDecision {
    const { buf, p } = c;
    c.stage = 'reply';
    const now = deps.now();
    const key = tupleKey(buf, p.srcAddrOffset, p.addrLength, p.srcPort, p.dstPort);
    const st = clients.get(key, now, opt.stateTtlMs);
    // Only for a Hello of ours still waiting, and this very Hello (a third host cannot steer us otherwise).
    if (!st || !crypto.equal(st.nonceC, nonceC)) return drop('no-state');
    c.local = deps.puByIndex(st.puIndex);
    if (st.hellos >= MAX_HELLOS) return drop('pending');
    const peer = crypto.verify(token);
    if (!peer.ok) return refuse(c, peer.reason);
    c.peer = peer;
    const hk = proofs.learn(st.addr, token);
    if (hk === null) return refuse(c, 'no-host-key');
    // Proved to this very key already and still asked: nothing better to send (a forged Retry, or a server without it).
    if (st.hk === hk) return drop('retry');
    st.hk = hk;
    st.hellos++;
    const again = packet(c, true, helloOf(st, now));
    return swallow('retry', again ? [again] : []);
  }

  function confirm(c: Ctx, macC: Uint8Array, data: Uint8Array, out: Uint8Array): UdpDecision {
    const { buf, p } = c;
    c.stage = 'confirm';
    const now = deps.now();
    const key = tupleKey(buf, p.srcAddrOffset, p.addrLength, p.srcPort, p.dstPort);
    const st = servers.get(key, now, opt.stateTtlMs);
    if (!st) return drop('no-state');
    const pu = deps.puByIndex(st.puIndex);
    c.local = pu;
    c.peer = st.peer;
    if (!pu) return drop('no-pu');
    // Proof of possession of the client token's key for THIS exchange (nonceS is fresh).
    if (!crypto.equal(macC, st.macC)) return refuse(c, 'replay');
    servers.delete(key);
    if (data.length === 0) return authorize(c, st.decision, true, 0);
    const n = writeUdp(buf, p, false, data.slice(), out, out.length);
    if (n < 0) return authorize(c, st.decision, true, 0);
    return authorize(c, st.decision, false, n);
  }

  function plainIn(c: Ctx): UdpDecision {
    const { buf, p, mark } = c;
    c.stage = 'datagram';
    const pu = (mark & PU_DEST) !== 0 ? deps.puByIndex(puIndexFromMark(mark)) : undefined;
    c.local = pu;
    if (!pu) return drop('no-pu');
    const now = deps.now();
    const key = tupleKey(buf, p.srcAddrOffset, p.addrLength, p.srcPort, p.dstPort);
    const st = servers.get(key, now, opt.stateTtlMs);
    if (st) {
      // The client believes the flow authorized: its Confirm was lost. Ask again with the Reply.
      if (st.resends >= MAX_RESENDS) return drop('missing-proof');
      st.resends++;
      const again = packet(c, true, st.reply);
      counters.dropped++;
      return settle(VERDICT_DROP, -1, 0, 'missing-proof', again ? [again] : []);
    }
    // Our own client is mid-exchange on this tuple: the server answered before the proof.
    if (clients.get(key, now, opt.stateTtlMs)) return drop('pending');
    // The server's answer to a flow our client just confirmed, queued before that verdict took
    // effect: the flow is authorized (again: idempotent), the answer delivered.
    if (confirmed.get(key, now, CONFIRMED_TTL_MS)) {
      counters.passed++;
      return settle(VERDICT_REPEAT, verdictMark(c.mark, OP_AUTHORIZE), 0, 'ok');
    }
    // No token: only a network rule can allow it.
    const d = deps.policy().ingress({ client: null, server: pu, port: p.dstPort, peerAddr: buf.subarray(p.srcAddrOffset, p.srcAddrOffset + p.addrLength), protocol: 'udp' });
    if (!d.allow) return refuse(c, 'missing-token', d);
    return authorize(c, d, false, 0);
  }

  function handle(buf: Uint8Array, hook: number, mark: number, out: Uint8Array): UdpDecision {
    counters.packets++;
    const p = parseUdp(buf);
    if (p === 'bad-packet') return drop('bad-packet');
    const ingress = !(hook === HOOK_POST_ROUTING || hook === HOOK_LOCAL_OUT);
    const c: Ctx = { buf, p, mark, ingress, stage: 'datagram', local: undefined, peer: null };
    if (!ingress) return egress(c, out);
    if (!udpChecksumOk(buf, p)) return drop('bad-packet');
    const payload = buf.subarray(p.payloadOffset, p.payloadOffset + p.payloadLength);
    if (!hasMagic(payload)) return plainIn(c);
    const m = decodeControl(payload);
    if (m === 'malformed' || m === 'too-large') {
      c.stage = 'hello';
      c.local = (mark & PU_DEST) !== 0 ? deps.puByIndex(puIndexFromMark(mark)) : undefined;
      // Data of an authorized flow that happens to start with our magic is the application's.
      return c.local ? refuse(c, m) : drop(m);
    }
    if (m.type === HELLO) return hello(c, m, m.token);
    if (m.type === REPLY) return reply(c, m.nonceS, m.macS, m.token);
    if (m.type === RETRY) return retry(c, m.nonceC, m.token);
    return confirm(c, m.macC, m.data, out);
  }

  return {
    handle,
    stats: () => ({ ...counters, clientState: clients.map.size, serverState: servers.map.size, registerFull: proofs.registerFull(), byReason: { ...byReason } }),
  };
}
