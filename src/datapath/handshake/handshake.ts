// The handshake in the kernel's four queue passes: a pure function from (packet bytes, hook,
// nfmark) to a verdict. No I/O, no clock of its own, no queue: the worker feeds it packets and
// applies what it returns. The cryptography is protocol v2's engine (./v2, docs/protocol.md);
// this file finds the local PU, asks policy, strips and attaches blocks, and chooses the
// connmark operation each pass ends with.
//
//   client host                                    server host
//   SYN out     engine.clientSynOut: attach  ───▶  SYN in      engine.serverSynIn: proof,
//               proof; connmark += CLIENT_PENDING               strike register; policy; strip;
//                                                               connmark += SERVER_PENDING
//   SYN-ACK in  engine.clientSynAckIn: check ◀───  SYN-ACK out engine.serverSynAckOut: attach
//               the server; policy; strip;                      the server's proof;
//               CLIENT_PENDING → AUTHORIZED                     SERVER_PENDING → AUTHORIZED
//
// The ACK never reaches userspace: both ends are AUTHORIZED before their stack sees (server)
// or sends (client) it, so a lost or retransmitted ACK is plain TCP. A retransmitted SYN is
// judged again (the engine gives each a fresh proof); a retransmitted SYN-ACK leaves through
// the queue again (the rules queue our SYN-ACKs also once the flow is authorized) and gets
// its block again. A first contact takes a retry exchange: the server's SYN-ACK carries a
// retry block and authorizes nothing, the client drops it and its kernel retransmits the SYN.
//
// What is not a handshake this machine can judge is refused, never waved through: a PU's SYN
// with data (TCP Fast Open), a queued packet the parser cannot read, a tagged SYN with data
// in front of the block, a simultaneous open, any ACK that reaches a queue. Every verdict mark
// keeps other software's nfmark bits (verdict.ts).

import { parseTcp, findOption, rebuild, verifyChecksums, newTcpPacket, TCP_SYN, TCP_ACK, TCP_FIN, TCP_RST, type RebuildEdit } from '../../packet/index.js';
import type { Policy, PolicyDecision, PolicyRequest } from '../../policy/index.js';
import type { FlowRecord } from '../../flow.js';
import type { VerifiedToken, VerifyResult } from '../../identity/index.js';
import { OP_SET_CLIENT_PENDING, OP_CLEAR_CLIENT_PENDING, OP_SET_SERVER_PENDING, OP_CLEAR_SERVER_PENDING, HOST_SOCK, PU_DEST, PU_INDEX_MASK, puIndexFromMark } from '../../marks.js';
import { SourceBudget } from './tables.js';
import { createFlowKeys } from './keys.js';
import { FlowTable, freeList, keyTuple } from './flowtable.js';
import { createOutcomes, newContext, type PacketContext } from './outcome.js';
import { HOOK_LOCAL_OUT, HOOK_POST_ROUTING, VERDICT_ACCEPT, VERDICT_REPEAT } from './verdict.js';
import { MARKER_EXID, MARKER_KIND, MARKER_OPTION } from './wire.js';
import { createV2Engine, type TupleView } from './v2/index.js';
import { DEFAULT_HANDSHAKE_OPTIONS, type Decision, type Handshake, type HandshakeDeps, type HandshakeOptions, type Reason, type VerifiedPeer } from './types.js';

export { HOOK_PRE_ROUTING, HOOK_LOCAL_IN, HOOK_FORWARD, HOOK_LOCAL_OUT, HOOK_POST_ROUTING, VERDICT_DROP, VERDICT_ACCEPT, VERDICT_REPEAT } from './verdict.js';
export { DEFAULT_HANDSHAKE_OPTIONS } from './types.js';
export type * from './types.js';
export type { FlowRecord };

/** What the server side keeps from SYN in for its SYN-ACK out (and the retransmissions of both). */
interface ServerFlow {
  at: number;
  /** The local PU judged at the SYN (by the socket lookup or the port). */
  puIndex: number;
  /** A peer without Tessera that policy allowed: its SYN-ACK leaves as it is. */
  untagged: boolean;
}

const FLAG_MASK = TCP_SYN | TCP_ACK | TCP_FIN | TCP_RST;
const ACK_MASK = TCP_SYN | TCP_ACK | TCP_RST;
/** Server refusals answered with silence (a drop), not a reset: see synIn. */
const SILENT: ReadonlySet<string> = new Set(['replay', 'stale', 'restarted', 'register-full']);
/** Ports whose decisions are cached per pair of label sets (then that pair's cache starts over). */
const PORTS_PER_PAIR = 1024;
/** Not a token verifier's reason: the source spent its budget of failed verifications. */
const RATE_LIMITED = 'rate-limited' as const;

export function createHandshake(deps: HandshakeDeps): Handshake {
  const opt: HandshakeOptions = { ...DEFAULT_HANDSHAKE_OPTIONS, ...deps.options };
  /** Per connection by tuple (by role) and client ISN; the value objects are reused (FlowTable recycles them). */
  const freeFlows = freeList<ServerFlow>();
  const serverFlows = new FlowTable<ServerFlow>(opt.stateEntries, (f) => freeFlows.push(f));
  const budget = new SourceBudget(opt.budgetSources, opt.failedVerifyBurst, opt.failedVerifyPerSecond);
  const { sourceKey } = createFlowKeys();
  const blockBuf = new Uint8Array(4096);
  // The clock is read once per packet (handle): every step of one packet sees the same time.
  let clock = deps.now();
  const now = (): number => clock;
  const outcomes = createOutcomes(opt, now, deps.onFlow);
  const { drop, pass, accept, refuse } = outcomes;
  const ctx = newContext();
  /** The parsed view of the packet being handled, reused. */
  const parsed = newTcpPacket();
  const tuple: TupleView = { buf: new Uint8Array(0), addrLength: 4, clientAddrOffset: 0, serverAddrOffset: 0, clientPort: 0, serverPort: 0 };

  /**
   * The packet whose SYN is being verified (null: none, the client's side): a failed
   * verification is charged to its source. The source's key is made only when a token must
   * be verified, not per SYN.
   */
  let sourceOf: PacketContext | null = null;
  const engine = createV2Engine({
    now,
    random: deps.random,
    // Tokens the caches cannot answer cost a signature verification: a source whose tokens
    // keep failing is refused unverified (issue 6's forged-SYN flood). Only SYN in verifies
    // with a source set; the client's verification of a SYN-ACK answers its own SYN.
    verifyToken(bytes) {
      const known = deps.verifier.cached(bytes);
      if (known !== null) return known;
      if (sourceOf === null) return deps.verifier.verify(bytes);
      const { buf, pkt } = sourceOf;
      // IPv6 sources by /64: one host commonly holds the whole prefix.
      const source = sourceKey(buf, pkt.srcAddrOffset, pkt.addrLength === 16 ? 8 : 4);
      const t = clock;
      if (!budget.allows(source, t)) return { ok: false, reason: RATE_LIMITED as never };
      const r = deps.verifier.verify(bytes);
      if (!r.ok) budget.charge(source, t);
      return r;
    },
    ...(deps.revoked ? { revoked: (t: VerifiedToken) => deps.revoked!(t.claims.iss) } : {}),
    ...(deps.hostKeys ? { hostKeys: deps.hostKeys } : {}),
    hostStaticKeys: deps.hostStaticKeys,
    ...(deps.digests ? { digests: deps.digests } : {}),
    // One bound for every per-flow table of this handshake (HandshakeOptions.stateEntries).
    options: { stateEntries: opt.stateEntries, ...deps.v2 },
    startedAt: deps.startedAt ?? clock,
    ...(deps.register ? { register: deps.register } : {}),
    // Pair-key cache hits and derivations, reported as the worker's x25519 cache metrics.
    ...(deps.verifier.keyStats ? { keyStats: deps.verifier.keyStats } : {}),
  });

  // The policy's view of a verified token, one object per token (no per-packet allocation).
  const peers = new WeakMap<object, VerifiedPeer>();
  function peerOf(r: VerifyResult & { ok: true }): VerifiedPeer {
    let p = peers.get(r.claims);
    if (!p) {
      p = { ok: true, host: r.claims.iss, pu: r.claims.sub, labels: r.claims.lbl, epk: r.epkKey, tokenHash: r.tokenHash };
      peers.set(r.claims, p);
    }
    return p;
  }

  /** The 4-tuple as the engine names it: by role, client first, whichever side we are. */
  function setTuple(c: PacketContext, weAreClient: boolean): TupleView {
    const { buf, pkt } = c;
    tuple.buf = buf;
    tuple.addrLength = pkt.addrLength;
    // On egress of the client and ingress of the server, the packet goes client → server.
    const clientToServer = weAreClient === (c.egress ?? false);
    tuple.clientAddrOffset = clientToServer ? pkt.srcAddrOffset : pkt.dstAddrOffset;
    tuple.serverAddrOffset = clientToServer ? pkt.dstAddrOffset : pkt.srcAddrOffset;
    tuple.clientPort = clientToServer ? pkt.srcPort : pkt.dstPort;
    tuple.serverPort = clientToServer ? pkt.dstPort : pkt.srcPort;
    return tuple;
  }

  // The policy's question, one reused object; the peer's address copied into a fixed array
  // per family (policy reads it during the call only, for network rules).
  const addr4 = new Uint8Array(4);
  const addr16 = new Uint8Array(16);
  const request: { -readonly [K in keyof PolicyRequest]: PolicyRequest[K] } = { client: null, server: null, port: 0, peerAddr: addr4 };
  // Decisions between two verified endpoints, per policy object: they depend only on the two
  // label sets, the direction and the port (network rules never match a peer that runs
  // Tessera, and a compiled policy keeps no state), so a repeated question is one lookup
  // instead of a walk over the rules. Keyed by the label arrays' identity (a cached token's
  // and a PU snapshot's are the same object every time), weakly; ports bounded per pair.
  type PortDecisions = Map<number, PolicyDecision>;
  let cachedFor: Policy | null = null;
  let cache: Array<WeakMap<readonly string[], WeakMap<readonly string[], PortDecisions>>> = [new WeakMap(), new WeakMap()];
  function ask(c: PacketContext, ingress: boolean, client: PolicyRequest['client'], server: PolicyRequest['server'], port: number): PolicyDecision {
    const p = deps.policy();
    if (client !== null && server !== null) {
      if (p !== cachedFor) {
        cachedFor = p;
        cache = [new WeakMap(), new WeakMap()];
      }
      const byClient = cache[ingress ? 0 : 1]!;
      let byServer = byClient.get(client.labels);
      if (byServer === undefined) byClient.set(client.labels, (byServer = new WeakMap()));
      let ports = byServer.get(server.labels);
      if (ports === undefined) byServer.set(server.labels, (ports = new Map()));
      let d = ports.get(port);
      if (d === undefined) {
        d = evaluate(c, p, ingress, client, server, port);
        if (ports.size >= PORTS_PER_PAIR) ports.clear();
        ports.set(port, d);
      }
      return d;
    }
    return evaluate(c, p, ingress, client, server, port);
  }
  function evaluate(c: PacketContext, p: Policy, ingress: boolean, client: PolicyRequest['client'], server: PolicyRequest['server'], port: number): PolicyDecision {
    const { buf, pkt } = c;
    const a = pkt.addrLength === 4 ? addr4 : addr16;
    for (let i = 0; i < a.length; i++) a[i] = buf[pkt.srcAddrOffset + i]!;
    request.client = client;
    request.server = server;
    request.port = port;
    request.peerAddr = a;
    return ingress ? p.ingress(request) : p.egress(request);
  }

  function payloadOf(c: PacketContext): Uint8Array {
    return c.buf.subarray(c.pkt.payloadOffset, c.pkt.payloadOffset + c.pkt.payloadLength);
  }

  // The two rewrites, as reused edit objects (no object or view per packet).
  const attachEdit: RebuildEdit = { addOption: MARKER_OPTION, append: blockBuf, appendLength: 0, maxLength: opt.maxPacketLength };
  const stripEdit: RebuildEdit = { removeOptionAt: 0, payloadLength: 0 };

  /** Add the marker option and append `n` bytes of blockBuf after whatever payload the packet has. */
  function attach(c: PacketContext, n: number): number | 'too-large' {
    attachEdit.appendLength = n;
    const len = rebuild(c.buf, c.pkt, attachEdit, c.out);
    return typeof len === 'number' ? len : 'too-large';
  }

  /** Remove the marker option and the block (which starts `keep` bytes into the payload). */
  function strip(c: PacketContext, optAt: number, keep: number): number | null {
    stripEdit.removeOptionAt = optAt;
    stripEdit.payloadLength = keep;
    const len = rebuild(c.buf, c.pkt, stripEdit, c.out);
    return typeof len === 'number' ? len : null;
  }

  // ---- egress (POSTROUTING): our PU is the client (SYN) or the server (SYN-ACK) ----

  function synOut(c: PacketContext): Decision {
    const { pkt } = c;
    const pu = deps.puByIndex(puIndexFromMark(c.mark));
    // The nfmark names a PU this worker does not know (yet: its snapshot is on the way), or
    // one without a token: leaving untagged would skip the egress decision. The kernel
    // retransmits the SYN in a second.
    if (!pu || pu.tokens.length === 0) return drop(c, 'no-pu');
    // TCP Fast Open: the data would reach the server before any proof, and leave unjudged.
    // Dropped, the client kernel retransmits the SYN without the data.
    if (pkt.payloadLength > 0) return drop(c, 'fast-open');
    const r = engine.clientSynOut(setTuple(c, true), pkt.seq, pu, blockBuf);
    if (r.kind === 'refuse') return drop(c, r.reason as Reason);
    const len = attach(c, r.length);
    if (len === 'too-large') return drop(c, 'too-large');
    return accept(c, VERDICT_REPEAT, OP_SET_CLIENT_PENDING | (c.mark & PU_INDEX_MASK), len, null);
  }

  function synAckOut(c: PacketContext): Decision {
    const { buf, pkt } = c;
    // Simultaneous open: our local client sent a SYN on this tuple, a crossed SYN came in and
    // the stack answers it with its own ISN. Neither side could prove itself: refused.
    // (Our SYN-ACK leaves on the tuple our SYN left on, client = this host, with our SYN's ISN:
    // the engine's client state, kept for every SYN it tagged, knows.)
    if (engine.clientSent(setTuple(c, true), pkt.seq)) return drop(c, 'simultaneous-open');
    const isnC = (pkt.ack - 1) >>> 0;
    const t = setTuple(c, false);
    keyTuple(serverFlows.key, t, isnC);
    const st = flowOf(clock);
    // Lost state (restart, eviction): drop; the client's SYN retransmission is judged anew.
    if (!st) return drop(c, 'no-state');
    // A peer without Tessera, allowed at its SYN: the flow is authorized already.
    if (st.untagged) return pass(c, 'ok');
    const pu = deps.puByIndex(st.puIndex);
    if (!pu || pu.tokens.length === 0) return drop(c, 'no-pu');
    const r = engine.serverSynAckOut(t, isnC, pkt.seq, pu, blockBuf);
    if (r.kind === 'refuse') return drop(c, r.reason as Reason);
    const len = attach(c, r.length);
    if (len === 'too-large') return drop(c, 'too-large');
    // The server's side of the flow is decided here: from now on its packets stay in the
    // kernel, the client's ACK included. A retry block authorizes nothing (still pending:
    // the rules drop the ACK; the client drops this SYN-ACK and sends its SYN again).
    if (r.kind === 'retry') return pass(c, 'retry', len);
    return accept(c, VERDICT_REPEAT, OP_CLEAR_SERVER_PENDING, len, null);
  }

  // ---- ingress (INPUT): our PU is the server (SYN) or the client (SYN-ACK) ----

  /** The server flow under serverFlows.key, unless its time to live has passed (then forgotten). */
  function flowOf(now: number): ServerFlow | undefined {
    const v = serverFlows.peek();
    if (v !== undefined && now - v.at > opt.stateTtlMs) {
      serverFlows.delete();
      return undefined;
    }
    return v;
  }

  /** Record the server flow under serverFlows.key (set by the caller). */
  function keepFlow(now: number, puIndex: number, untagged: boolean): void {
    // A new object starts with the values it keeps (a time is a double): created as
    // { at: 0 } and then given a time, its map's field changes representation (Smi to
    // double) and V8 throws away the optimized code of every pass that touches flows.
    const f = serverFlows.peek() ?? freeFlows.pop() ?? { at: now, puIndex, untagged };
    f.at = now;
    f.puIndex = puIndex;
    f.untagged = untagged;
    serverFlows.set(f);
  }

  function synIn(c: PacketContext): Decision {
    const { buf, pkt, mark } = c;
    c.direction = 'ingress';
    c.stage = 'syn';
    // The kernel's socket lookup (PU_DEST) names the PU that owns the listening socket, from
    // its first SYN; the scanned ports are the fallback. A retransmitted SYN meets the
    // request socket the first one made, which the lookup does not name: the PU judged at the
    // first SYN is still the server. HOST_SOCK: a full socket of no PU (not ours to judge).
    const lookedUp = (mark & PU_DEST) !== 0;
    const hostSocket = !lookedUp && (mark & HOST_SOCK) !== 0;
    const t = setTuple(c, false);
    keyTuple(serverFlows.key, t, pkt.seq);
    const earlier = lookedUp ? undefined : flowOf(clock);
    const pu = lookedUp ? deps.puByIndex(puIndexFromMark(mark)) : earlier ? deps.puByIndex(earlier.puIndex) : hostSocket ? undefined : deps.puByLocalPort(pkt.dstPort);
    c.local = pu;
    if (!pu && lookedUp) return drop(c, 'no-pu');
    const optAt = findOption(buf, pkt, MARKER_KIND, MARKER_EXID);
    if (optAt < 0) {
      // Not a PU's service: not ours to judge.
      if (!pu) return pass(c, 'no-pu');
      const d = ask(c, true, null, pu, pkt.dstPort);
      if (!d.allow) return refuse(c, 'missing-token', d);
      keepFlow(clock, pu.index, true);
      // Allowed, no proof will follow: TESSERA-APPLY turns "clear server pending" into AUTHORIZED.
      return accept(c, VERDICT_REPEAT, OP_CLEAR_SERVER_PENDING, 0, d);
    }
    // Data in front of the block: stripping would hand it to the application with the SYN,
    // before any proof. A Tessera client never sends it (its SYN with data is dropped). Read
    // from the trailer's block length, before any verification is spent on it.
    const n = pkt.payloadLength;
    if (n >= 4 && ((buf[pkt.payloadOffset + n - 2]! << 8) | buf[pkt.payloadOffset + n - 1]!) < n) return refuse(c, 'fast-open');
    sourceOf = c;
    const r = engine.serverSynIn(t, pkt.seq, payloadOf(c));
    sourceOf = null;
    if (r.kind === 'refuse') {
      // No flow record: a flood must not fill the flow log (counted under 'rate-limited').
      if ((r.reason as string) === RATE_LIMITED) return drop(c, 'rate-limited');
      // Refused in silence, recorded: a verbatim copy of a SYN already judged (an attacker's,
      // or the network's duplicate: a reset would reach the real client), a proof outside the
      // freshness window (an old capture, or a clock beyond the skew), a proof made before
      // this worker started (the client's retransmission carries a fresh one and passes), a
      // full strike register (the retransmission may find room). Never accepted.
      return refuse(c, r.reason as Reason, null, SILENT.has(r.reason));
    }
    if (r.blockStart > 0) return refuse(c, 'fast-open');
    if (r.peer) c.peer = peerOf(r.peer);
    const stripped = strip(c, optAt, 0);
    if (stripped === null) return refuse(c, 'bad-packet');
    // A Tessera peer calling an unprotected local service: deliver it as a plain SYN.
    if (!pu) return pass(c, 'no-pu', stripped);
    if (r.kind === 'retry') {
      // First contact: nothing to authorize yet. A verified token is still judged now, so a
      // peer policy refuses learns it at once rather than after the retry.
      if (c.peer) {
        const d = ask(c, true, c.peer, pu, pkt.dstPort);
        if (!d.allow) return refuse(c, 'policy', d);
      }
      keepFlow(clock, pu.index, false);
      return pass(c, 'retry', stripped, OP_SET_SERVER_PENDING);
    }
    const d = ask(c, true, c.peer, pu, pkt.dstPort);
    if (!d.allow) return refuse(c, 'policy', d);
    keepFlow(clock, pu.index, false);
    // The connection is decided here (proof, register, policy); its SYN-ACK authorizes it.
    return accept(c, VERDICT_REPEAT, OP_SET_SERVER_PENDING, stripped, d);
  }

  function synAckIn(c: PacketContext): Decision {
    const { buf, pkt } = c;
    c.direction = 'egress';
    c.stage = 'syn-ack';
    const pu = deps.puByIndex(puIndexFromMark(c.mark));
    c.local = pu;
    if (!pu) return pass(c, 'no-pu');
    const optAt = findOption(buf, pkt, MARKER_KIND, MARKER_EXID);
    if (optAt < 0) {
      // A server without Tessera: the PU's network rules decide (default: refuse).
      const d = ask(c, false, pu, null, pkt.srcPort);
      if (!d.allow) return refuse(c, 'missing-token', d);
      return accept(c, VERDICT_REPEAT, OP_CLEAR_CLIENT_PENDING, 0, d);
    }
    const r = engine.clientSynAckIn(setTuple(c, true), (pkt.ack - 1) >>> 0, pkt.seq, payloadOf(c));
    if (r.kind === 'refuse') return refuse(c, r.reason as Reason);
    // A retry: the engine learned what the server needs. Silently dropped: the kernel's SYN
    // retransmission carries it (same ISN), and a reset would end the connect().
    if (r.kind === 'retry') return drop(c, 'retry');
    c.peer = peerOf(r.peer);
    const d = ask(c, false, pu, c.peer, pkt.srcPort);
    if (!d.allow) return refuse(c, 'policy', d);
    const stripped = strip(c, optAt, r.blockStart);
    if (stripped === null) return refuse(c, 'bad-packet');
    // AUTHORIZED before our stack sees the SYN-ACK, so its ACK and data leave in the kernel.
    return accept(c, VERDICT_REPEAT, OP_CLEAR_CLIENT_PENDING, stripped, d);
  }

  function handle(buf: Uint8Array, hook: number, mark: number, out: Uint8Array): Decision {
    outcomes.counters.packets++;
    clock = deps.now();
    const c = ctx;
    c.buf = buf;
    c.out = out;
    c.mark = mark;
    c.local = undefined;
    c.peer = null;
    const pkt = parseTcp(buf, undefined, parsed);
    // Not a TCP packet we can read: refused both ways. On egress a PU's process can shape its
    // own packets (an IPv6 routing header, say): accepting would let them leave unjudged.
    if (!pkt.ok) return drop(c, 'bad-packet');
    c.pkt = pkt;
    const egress = hook === HOOK_POST_ROUTING || hook === HOOK_LOCAL_OUT;
    c.egress = egress;
    // Our rewrite computes fresh checksums, so a corrupted inbound packet must be refused
    // before it is rewritten, or it would leave here looking valid.
    if (!egress && verifyChecksums(buf, pkt) !== null) return drop(c, 'bad-packet');
    const flags = pkt.flags & FLAG_MASK;
    if (flags === TCP_SYN) return egress ? synOut(c) : synIn(c);
    if (flags === (TCP_SYN | TCP_ACK)) return egress ? synAckOut(c) : synAckIn(c);
    // The rules queue no ACK in protocol v2: one that arrives here (rules of another version
    // during an upgrade) is not judged, so it is refused, never let through.
    if ((pkt.flags & ACK_MASK) === TCP_ACK) return drop(c, 'no-state');
    // SYN+FIN, SYN+RST and other mixes never reach a socket as a handshake: refuse them.
    if (flags & TCP_SYN) return drop(c, 'bad-packet');
    return pass(c, 'ok');
  }

  return {
    handle,
    setHostStaticKeys: (keys) => engine.setHostKeys(keys),
    peersChanged: () => engine.clearPeerTokens(),
    stats() {
      const e = engine.stats();
      return {
        ...outcomes.counters,
        serverState: e.serverState,
        clientState: e.clientState,
        register: e.registerSize,
        registerFull: e.registerFull,
        byReason: outcomes.byReason(),
      };
    },
  };
}
