// The handshake state machine: a pure function from (packet bytes, hook, nfmark) to a verdict.
// No I/O, no clock of its own, no queue: the worker feeds it packets and applies what it
// returns. docs/protocol.md describes the exchange; this file implements it.
//
//   client host                                   server host
//   SYN out    attach nonceC + token(C)    ───▶   SYN in     verify token(C), find PU by port,
//              connmark += CLIENT_PENDING                    ingress policy, keep (nonceC, token(C)),
//                                                            strip, connmark += SERVER_PENDING
//   SYN-ACK in verify token(S) and macS,   ◀───   SYN-ACK out nonceS, K, macS, attach token(S),
//              egress policy, strip, keep macC                keep the expected macC
//   ACK out    attach macC               ───▶  ACK in    compare macC with the kept one (proof
//              connmark: CLIENT_PENDING→AUTH                 of possession for THIS connection),
//                                                            strip, SERVER_PENDING→AUTHORIZED
//
// Per-connection values are keyed by (remote address, remote port, client ISN), which stay the
// same at every hook of a host even when that host NATs the flow, and nonces are derived from
// them with the host secret. Two bounded maps hold what a later packet needs: the server's
// (nonceC, the verified client and its ingress decision, then the expected macC) from SYN in to ACK in, and the
// client's macC from SYN-ACK in to ACK out; both are LRU-bounded so a SYN flood cannot grow
// memory. Keeping the server's entry until the ACK lets the ACK carry 16 bytes instead of
// the client's token again (docs/protocol.md, "State").
//
// What is not a handshake this machine can judge is refused, never waved through: a PU's SYN
// with data (TCP Fast Open), a queued packet the parser cannot read, a tagged SYN with data
// in front of the block, a simultaneous open, a client ACK with no SYN-ACK verified behind
// it. Every verdict mark keeps other software's nfmark bits (verdict.ts).

import { parseTcp, findOption, rebuild, verifyChecksums, TCP_SYN, TCP_ACK, TCP_FIN, TCP_RST, type TcpPacket } from '../../packet/index.js';
import type { PolicyDecision } from '../../policy/index.js';
import type { FlowRecord } from '../../flow.js';
import { Lru } from '../../identity/index.js';
import {
  OP_SET_CLIENT_PENDING,
  OP_CLEAR_CLIENT_PENDING,
  OP_SET_SERVER_PENDING,
  OP_CLEAR_SERVER_PENDING,
  HOST_SOCK,
  PU_DEST,
  PU_INDEX_MASK,
  puIndexFromMark,
} from '../../marks.js';
import { Bounded, RecentFlows, SourceBudget } from './tables.js';
import { createFlowKeys } from './keys.js';
import { createOutcomes, newContext, type PacketContext } from './outcome.js';
import { HOOK_LOCAL_OUT, HOOK_POST_ROUTING, VERDICT_ACCEPT, VERDICT_REPEAT } from './verdict.js';
import { BlockType, MARKER_EXID, MARKER_KIND, MARKER_OPTION, decodeBlock, encodeBlock, type Block } from './wire.js';
import {
  DEFAULT_HANDSHAKE_OPTIONS,
  type Decision,
  type Handshake,
  type HandshakeDeps,
  type HandshakeOptions,
  type IssuedToken,
  type VerifiedPeer,
  type VerifyFailure,
} from './types.js';

export { HOOK_PRE_ROUTING, HOOK_LOCAL_IN, HOOK_FORWARD, HOOK_LOCAL_OUT, HOOK_POST_ROUTING, VERDICT_DROP, VERDICT_ACCEPT, VERDICT_REPEAT } from './verdict.js';
export { DEFAULT_HANDSHAKE_OPTIONS } from './types.js';
export type * from './types.js';
export type { FlowRecord };

interface ServerState {
  at: number;
  nonceC: Uint8Array;
  /** The client as verified on the SYN, and the ingress decision made then. */
  peer: VerifiedPeer;
  decision: PolicyDecision;
  /** The proof the ACK must carry; set when the SYN-ACK leaves. */
  macC: Uint8Array | null;
  /**
   * The local PU judged at the SYN (by the kernel's socket lookup or the port): its SYN-ACK
   * and ACK belong to it, whatever other socket shares the port number.
   */
  puIndex: number;
}
interface ClientState {
  at: number;
  macC: Uint8Array;
}

const LABEL_CLIENT_NONCE = 1;
const LABEL_SERVER_NONCE = 2;
const TAG_SYNACK = 0x5341; // "SA"
const TAG_ACK = 0x4143; // "AC"

const FLAG_MASK = TCP_SYN | TCP_ACK | TCP_FIN | TCP_RST;
/** The third packet is any segment with ACK and without SYN/RST: FIN must not dodge the proof. */
const ACK_MASK = TCP_SYN | TCP_ACK | TCP_RST;
/** How long data segments queued behind a proof ACK are let through (ms). */
const RECENT_TTL_MS = 2_000;

export function createHandshake(deps: HandshakeDeps): Handshake {
  const opt: HandshakeOptions = { ...DEFAULT_HANDSHAKE_OPTIONS, ...deps.options };
  const { crypto } = deps;
  const serverState = new Bounded<ServerState>(opt.stateEntries);
  const clientState = new Bounded<ClientState>(opt.stateEntries);
  const recentServer = new RecentFlows(opt.stateEntries, RECENT_TTL_MS);
  const recentClient = new RecentFlows(opt.stateEntries, RECENT_TTL_MS);
  /** ISN of the SYN each local client sent, by (remote address, remote port, local port): spots a simultaneous open. */
  const clientSyns = new Lru<string, number>(opt.stateEntries);
  const budget = new SourceBudget(opt.budgetSources, opt.failedVerifyBurst, opt.failedVerifyPerSecond);
  const { flowInput, flowKey, tupleKey, sourceKey, macInput } = createFlowKeys();
  const blockBuf = new Uint8Array(4096);
  const outcomes = createOutcomes(opt, deps.now, deps.onFlow);
  const { drop, pass, accept, refuse } = outcomes;
  const ctx = newContext();

  /** The peer's address (the packet's source) as bytes, for network rules; a view, no copy of the text. */
  function peerAddr(c: PacketContext): Uint8Array {
    return c.buf.subarray(c.pkt.srcAddrOffset, c.pkt.srcAddrOffset + c.pkt.addrLength);
  }

  /** Add the marker option and append the block after whatever payload the packet has. */
  function attach(c: PacketContext, block: Block): number | 'too-large' {
    const n = encodeBlock(block, blockBuf);
    const len = rebuild(c.buf, c.pkt, { addOption: MARKER_OPTION, append: blockBuf.subarray(0, n), maxLength: opt.maxPacketLength }, c.out);
    return typeof len === 'number' ? len : 'too-large';
  }

  /**
   * A handshake packet without our block from a peer without Tessera: the local PU's
   * network rules decide (default: refuse). Allowed, no proof will follow, so `op` ends the
   * flow's pending state at once (revoke can find it, the ACK is no longer queued).
   */
  function untagged(c: PacketContext, d: PolicyDecision, op: number): Decision {
    if (!d.allow) return refuse(c, 'missing-token', d);
    return accept(c, VERDICT_REPEAT, op, 0, d);
  }

  // ---- egress (POSTROUTING): our PU is the client (SYN, ACK) or the server (SYN-ACK) ----

  function synOut(c: PacketContext): Decision {
    const { buf, pkt } = c;
    const pu = deps.puByIndex(puIndexFromMark(c.mark));
    // The nfmark names a PU this worker does not know (yet: its snapshot is on the way), or
    // one without a token: leaving untagged would skip the egress decision. The kernel
    // retransmits the SYN in a second.
    if (!pu || pu.tokens.length === 0) return drop(c, 'no-pu');
    // TCP Fast Open: the data would reach the server before any proof, and leave unjudged.
    // Dropped, the client kernel retransmits the SYN without the data (and sends it after
    // the handshake).
    if (pkt.payloadLength > 0) return drop(c, 'fast-open');
    const token = pu.tokens[0]!;
    const isnC = pkt.seq;
    const tuple = tupleKey(buf, pkt.dstAddrOffset, pkt.addrLength, pkt.dstPort, pkt.srcPort);
    recentClient.forget(tuple);
    const nonceC = crypto.nonce(flowInput(buf, pkt.dstAddrOffset, pkt.addrLength, pkt.dstPort, [LABEL_CLIENT_NONCE, isnC], []));
    const len = attach(c, { type: BlockType.Syn, nonceC, token: token.bytes });
    if (len === 'too-large') return drop(c, 'too-large');
    clientSyns.set(tuple, isnC);
    return accept(c, VERDICT_REPEAT, OP_SET_CLIENT_PENDING | (c.mark & PU_INDEX_MASK), len, null);
  }

  function synAckOut(c: PacketContext): Decision {
    const { buf, pkt } = c;
    // Simultaneous open: our local client sent a SYN on this tuple, a crossed SYN came in and
    // the stack answers it with its own ISN. Neither side would ever prove itself (the
    // protocol has no such exchange), so the flow is refused here, not authorized later.
    // (A host that only serves has sent no SYN: no key to build.)
    if (clientSyns.size > 0 && clientSyns.peek(tupleKey(buf, pkt.dstAddrOffset, pkt.addrLength, pkt.dstPort, pkt.srcPort)) === pkt.seq) {
      return drop(c, 'simultaneous-open');
    }
    const isnC = (pkt.ack - 1) >>> 0;
    const key = flowKey(buf, pkt.dstAddrOffset, pkt.addrLength, pkt.dstPort, isnC);
    const st = serverState.get(key, deps.now(), opt.stateTtlMs);
    const pu = st ? deps.puByIndex(st.puIndex) : deps.puByLocalPort(pkt.srcPort);
    // Lost state (restart, eviction): drop; the client's SYN retransmission rebuilds it.
    if (!pu || !st || pu.tokens.length === 0) return drop(c, pu ? 'no-state' : 'no-pu');
    const token = pu.tokens[0]!;
    const hashC = st.peer.tokenHash;
    const nonceS = crypto.nonce(
      flowInput(buf, pkt.dstAddrOffset, pkt.addrLength, pkt.dstPort, [LABEL_SERVER_NONCE, isnC, pkt.seq], [st.nonceC, hashC]),
    );
    const k = crypto.sessionKey(crypto.sharedSecret(token.epkPrivate, st.peer.epk), st.nonceC, nonceS);
    const macS = crypto.mac(k, macInput(TAG_SYNACK, token.hash, hashC));
    // What only the holder of the client token's key can send back in the ACK.
    st.macC = crypto.mac(k, macInput(TAG_ACK, hashC, token.hash));
    const len = attach(c, { type: BlockType.SynAck, nonceS, macS, token: token.bytes });
    if (len === 'too-large') return drop(c, 'too-large');
    return accept(c, VERDICT_ACCEPT, -1, len, null);
  }

  function ackOut(c: PacketContext): Decision {
    const { buf, pkt } = c;
    const isnC = (pkt.seq - 1) >>> 0;
    const key = flowKey(buf, pkt.dstAddrOffset, pkt.addrLength, pkt.dstPort, isnC);
    const now = deps.now();
    const st = clientState.get(key, now, opt.stateTtlMs);
    const tuple = tupleKey(buf, pkt.dstAddrOffset, pkt.addrLength, pkt.dstPort, pkt.srcPort);
    if (!st) {
      // Segments queued right behind the proof ACK pass unchanged: nothing is authorized here.
      if (recentClient.covers(tuple, pkt.seq, now)) return pass(c, 'ok');
      // No SYN-ACK was verified for this flow (state lost to a restart or eviction, or a
      // simultaneous open answered by a SYN-ACK we never checked): it must not be marked
      // authorized here, and there is no proof to send. Dropped; the server would refuse it.
      return drop(c, 'no-state');
    }
    const len = attach(c, { type: BlockType.Ack, macC: st.macC });
    if (len === 'too-large') return drop(c, 'too-large');
    clientState.delete(key);
    recentClient.add(tuple, isnC, now);
    return accept(c, VERDICT_REPEAT, OP_CLEAR_CLIENT_PENDING, len, null);
  }

  // ---- ingress (PREROUTING): our PU is the server (SYN, ACK) or the client (SYN-ACK) ----

  /**
   * Verify a SYN's token, spending from its source's budget only when the caches cannot
   * answer. null: the source has used up its failed verifications; refuse unverified (no
   * flow record: a flood must not fill the flow log; counted under 'rate-limited').
   */
  function verifyBudgeted(buf: Uint8Array, pkt: TcpPacket, token: Uint8Array): VerifiedPeer | VerifyFailure | null {
    const known = crypto.cached(token);
    if (known !== null) return known;
    // IPv6 sources by /64: one host commonly holds the whole prefix.
    const source = sourceKey(buf, pkt.srcAddrOffset, pkt.addrLength === 16 ? 8 : 4);
    const now = deps.now();
    if (!budget.allows(source, now)) return null;
    const peer = crypto.verify(token);
    if (!peer.ok) budget.charge(source, now);
    return peer;
  }

  function synIn(c: PacketContext): Decision {
    const { buf, pkt, mark } = c;
    c.direction = 'ingress';
    c.stage = 'syn';
    // The kernel's socket lookup (PU_DEST) names the PU that owns the listening socket, from
    // its first SYN; the scanned ports are the fallback. A PU the lookup names but this worker
    // does not know yet (its snapshot is on the way) is refused: the client retries.
    // A retransmitted SYN meets the request socket the first one made, which the lookup does
    // not name: the PU judged at the first SYN is still the server.
    // HOST_SOCK: the lookup found a full socket that is no PU's, so the port map (a PU may
    // share the port number on another address or family) is not consulted. Neither bit: no
    // full socket (a reused 4-tuple in TIME_WAIT, which TCP hands to the listener): by port.
    const lookedUp = (mark & PU_DEST) !== 0;
    const hostSocket = !lookedUp && (mark & HOST_SOCK) !== 0;
    // The flow key is built only where it is needed: a first SYN named by the lookup and then
    // refused (a flood) never pays for it.
    let key = lookedUp ? '' : flowKey(buf, pkt.srcAddrOffset, pkt.addrLength, pkt.srcPort, pkt.seq);
    const earlier = lookedUp ? undefined : serverState.get(key, deps.now(), opt.stateTtlMs);
    const pu = lookedUp
      ? deps.puByIndex(puIndexFromMark(mark))
      : earlier
        ? deps.puByIndex(earlier.puIndex)
        : hostSocket
          ? undefined
          : deps.puByLocalPort(pkt.dstPort);
    c.local = pu;
    if (!pu && lookedUp) return drop(c, 'no-pu');
    const optAt = findOption(buf, pkt, MARKER_KIND, MARKER_EXID);
    if (optAt < 0) {
      // Not a PU's service: not ours to judge.
      if (!pu) return pass(c, 'no-pu');
      // Allowed: TESSERA-APPLY turns "clear server pending" into AUTHORIZED.
      return untagged(c, deps.policy().ingress({ client: null, server: pu, port: pkt.dstPort, peerAddr: peerAddr(c) }), OP_CLEAR_SERVER_PENDING);
    }
    const decoded = decodeBlock(buf.subarray(pkt.payloadOffset, pkt.payloadOffset + pkt.payloadLength));
    if (typeof decoded === 'string' || decoded.block.type !== BlockType.Syn) return refuse(c, 'malformed');
    // Data in front of the block: stripping would hand it to the application with the SYN,
    // before any proof. A Tessera client never sends it (its SYN with data is dropped).
    if (decoded.keptPayload > 0) return refuse(c, 'fast-open');
    const peer = verifyBudgeted(buf, pkt, decoded.block.token);
    if (peer === null) return drop(c, 'rate-limited');
    if (!peer.ok) return refuse(c, peer.reason);
    c.peer = peer;
    const stripped = rebuild(buf, pkt, { removeOptionAt: optAt, payloadLength: decoded.keptPayload }, c.out);
    if (typeof stripped !== 'number') return refuse(c, 'bad-packet');
    // A tessera peer calling an unprotected local service: deliver it as a plain SYN.
    if (!pu) return pass(c, 'no-pu', stripped);
    const d = deps.policy().ingress({ client: peer, server: pu, port: pkt.dstPort, peerAddr: peerAddr(c) });
    if (!d.allow) return refuse(c, 'policy', d);
    recentServer.forget(tupleKey(buf, pkt.srcAddrOffset, pkt.addrLength, pkt.srcPort, pkt.dstPort));
    // A real copy: the block is a view of the queue's receive buffer, which the next batch
    // overwrites (and Buffer.prototype.slice would return a view, not a copy).
    if (lookedUp) key = flowKey(buf, pkt.srcAddrOffset, pkt.addrLength, pkt.srcPort, pkt.seq);
    serverState.set(key, { at: deps.now(), nonceC: new Uint8Array(decoded.block.nonceC), peer, decision: d, macC: null, puIndex: pu.index });
    // Not recorded yet: the connection is decided at its ACK.
    return accept(c, VERDICT_REPEAT, OP_SET_SERVER_PENDING, stripped, null);
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
      // Allowed: nothing more to prove; stop queueing this flow's ACK.
      return untagged(c, deps.policy().egress({ client: pu, server: null, port: pkt.srcPort, peerAddr: peerAddr(c) }), OP_CLEAR_CLIENT_PENDING);
    }
    const decoded = decodeBlock(buf.subarray(pkt.payloadOffset, pkt.payloadOffset + pkt.payloadLength));
    if (typeof decoded === 'string' || decoded.block.type !== BlockType.SynAck) return refuse(c, 'malformed');
    const block = decoded.block;
    const peer = crypto.verify(block.token);
    if (!peer.ok) return refuse(c, peer.reason);
    c.peer = peer;
    const isnC = (pkt.ack - 1) >>> 0;
    const nonceC = crypto.nonce(flowInput(buf, pkt.srcAddrOffset, pkt.addrLength, pkt.srcPort, [LABEL_CLIENT_NONCE, isnC], []));
    // Which of our tokens did the SYN carry? The MAC tells: try the newest first.
    let macC: Uint8Array | null = null;
    let mine: IssuedToken | null = null;
    for (const t of pu.tokens) {
      const k = crypto.sessionKey(crypto.sharedSecret(t.epkPrivate, peer.epk), nonceC, block.nonceS);
      if (crypto.equal(crypto.mac(k, macInput(TAG_SYNACK, peer.tokenHash, t.hash)), block.macS)) {
        macC = crypto.mac(k, macInput(TAG_ACK, t.hash, peer.tokenHash));
        mine = t;
        break;
      }
    }
    if (!macC || !mine) return refuse(c, 'bad-mac');
    const d = deps.policy().egress({ client: pu, server: peer, port: pkt.srcPort, peerAddr: peerAddr(c) });
    if (!d.allow) return refuse(c, 'policy', d);
    const stripped = rebuild(buf, pkt, { removeOptionAt: optAt, payloadLength: decoded.keptPayload }, c.out);
    if (typeof stripped !== 'number') return refuse(c, 'bad-packet');
    clientState.set(flowKey(buf, pkt.srcAddrOffset, pkt.addrLength, pkt.srcPort, isnC), { at: deps.now(), macC });
    return accept(c, VERDICT_ACCEPT, -1, stripped, d);
  }

  function ackIn(c: PacketContext): Decision {
    const { buf, pkt } = c;
    c.direction = 'ingress';
    c.stage = 'ack';
    const isnC = (pkt.seq - 1) >>> 0;
    const key = flowKey(buf, pkt.srcAddrOffset, pkt.addrLength, pkt.srcPort, isnC);
    const now = deps.now();
    const optAt = findOption(buf, pkt, MARKER_KIND, MARKER_EXID);
    const st = serverState.get(key, now, opt.stateTtlMs);
    const pu = st ? deps.puByIndex(st.puIndex) : deps.puByLocalPort(pkt.dstPort);
    c.local = pu;
    const tuple = tupleKey(buf, pkt.srcAddrOffset, pkt.addrLength, pkt.srcPort, pkt.dstPort);
    if (optAt < 0) {
      if (recentServer.covers(tuple, pkt.seq, now)) return pass(c, 'ok');
      // Data before the proof: hold it back (dropped; the client retransmits).
      return drop(c, 'missing-proof');
    }
    const decoded = decodeBlock(buf.subarray(pkt.payloadOffset, pkt.payloadOffset + pkt.payloadLength));
    if (typeof decoded === 'string' || decoded.block.type !== BlockType.Ack) return refuse(c, 'malformed');
    if (!st && recentServer.covers(tuple, pkt.seq, now)) {
      // A copy of a proof we already accepted (the network duplicated it): strip and pass.
      const len = rebuild(buf, pkt, { removeOptionAt: optAt, payloadLength: decoded.keptPayload }, c.out);
      return typeof len === 'number' ? pass(c, 'ok', len) : refuse(c, 'bad-packet');
    }
    c.peer = st?.peer ?? null;
    // No SYN-ACK of ours answered this flow (or its entry is gone: restart, eviction).
    if (!pu || !st || !st.macC) return refuse(c, pu ? 'no-state' : 'no-pu');
    // The client cannot prove it holds the key of the token for THIS connection: a replay.
    if (!crypto.equal(decoded.block.macC, st.macC)) return refuse(c, 'replay');
    const stripped = rebuild(buf, pkt, { removeOptionAt: optAt, payloadLength: decoded.keptPayload }, c.out);
    if (typeof stripped !== 'number') return refuse(c, 'bad-packet');
    recentServer.add(tuple, isnC, now);
    serverState.delete(key);
    // The ingress decision was made on the SYN, against the token verified there.
    return accept(c, VERDICT_REPEAT, OP_CLEAR_SERVER_PENDING, stripped, st.decision);
  }

  function handle(buf: Uint8Array, hook: number, mark: number, out: Uint8Array): Decision {
    outcomes.counters.packets++;
    const c = ctx;
    c.buf = buf;
    c.out = out;
    c.mark = mark;
    c.local = undefined;
    c.peer = null;
    const pkt = parseTcp(buf);
    // Not a TCP packet we can read: refused both ways. Only handshake packets of PU flows are
    // queued, and on egress a PU's process can shape its own (an IPv6 routing header, say):
    // accepting would let it leave unjudged.
    if (!pkt.ok) return drop(c, 'bad-packet');
    c.pkt = pkt;
    const egress = hook === HOOK_POST_ROUTING || hook === HOOK_LOCAL_OUT;
    // Our rewrite computes fresh checksums, so a corrupted inbound packet must be refused
    // before it is rewritten, or it would leave here looking valid. (Egress packets come
    // from our own stack with checksums completed by the kernel before queueing.)
    if (!egress && verifyChecksums(buf, pkt) !== null) return drop(c, 'bad-packet');
    const flags = pkt.flags & FLAG_MASK;
    const isAck = (pkt.flags & ACK_MASK) === TCP_ACK;
    if (egress) {
      if (flags === TCP_SYN) return synOut(c);
      if (flags === (TCP_SYN | TCP_ACK)) return synAckOut(c);
      if (isAck) return ackOut(c);
      return pass(c, 'ok');
    }
    if (flags === TCP_SYN) return synIn(c);
    if (flags === (TCP_SYN | TCP_ACK)) return synAckIn(c);
    if (isAck) return ackIn(c);
    // SYN+FIN, SYN+RST and other mixes never reach a socket as a handshake: refuse them.
    if (flags & TCP_SYN) return drop(c, 'bad-packet');
    return pass(c, 'ok');
  }

  return {
    handle,
    stats: () => ({
      ...outcomes.counters,
      serverState: serverState.map.size,
      clientState: clientState.map.size,
      byReason: outcomes.byReason(),
    }),
  };
}
