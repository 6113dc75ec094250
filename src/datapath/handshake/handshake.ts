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

import {
  parseTcp,
  findOption,
  rebuild,
  toReset,
  verifyChecksums,
  TCP_SYN,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  type TcpPacket,
} from '../../packet/index.js';
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
  REJECT_BIT,
  puIndexFromMark,
} from '../../marks.js';
import { Bounded, RecentFlows, SourceBudget } from './tables.js';
import { HOOK_LOCAL_OUT, HOOK_POST_ROUTING, VERDICT_ACCEPT, VERDICT_DROP, VERDICT_REPEAT, verdictMark } from './verdict.js';
import {
  BlockType,
  MARKER_EXID,
  MARKER_KIND,
  MARKER_OPTION,
  decodeBlock,
  encodeBlock,
  type Block,
} from './wire.js';

import {
  DEFAULT_HANDSHAKE_OPTIONS,
  type Decision,
  type Handshake,
  type HandshakeDeps,
  type HandshakeOptions,
  type IssuedToken,
  type LocalPu,
  type Reason,
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
  const scratch = new Uint8Array(256);
  const blockBuf = new Uint8Array(4096);
  const result: Decision = { verdict: VERDICT_ACCEPT, mark: -1, length: 0, reason: 'ok' };
  const counters = { packets: 0, accepted: 0, rejected: 0, dropped: 0 };
  const byReason: Record<string, number> = Object.create(null);
  /** The nfmark the packet being handled arrived with: its foreign bits go into every verdict mark. */
  let inMark = 0;

  /** The one exit of every handler: `ours` is our nfmark bits (-1: leave the mark alone). */
  function decide(verdict: number, ours: number, length: number, reason: Reason): Decision {
    result.verdict = verdict;
    result.mark = verdictMark(inMark, ours);
    result.length = length;
    result.reason = reason;
    if (reason !== 'ok') byReason[reason] = (byReason[reason] ?? 0) + 1;
    return result;
  }

  /** Write remoteAddr ‖ remotePort ‖ extra words into scratch; returns the written view. */
  function flowInput(buf: Uint8Array, addrOffset: number, addrLength: number, port: number, words: number[], extra: Uint8Array[]): Uint8Array {
    let p = 0;
    scratch.set(buf.subarray(addrOffset, addrOffset + addrLength), p);
    p += addrLength;
    scratch[p++] = port >> 8;
    scratch[p++] = port & 0xff;
    for (const w of words) {
      scratch[p++] = w >>> 24;
      scratch[p++] = (w >>> 16) & 0xff;
      scratch[p++] = (w >>> 8) & 0xff;
      scratch[p++] = w & 0xff;
    }
    for (const e of extra) {
      scratch.set(e, p);
      p += e.length;
    }
    return scratch.subarray(0, p);
  }

  // Map keys as one flat string of 16-bit units, built in one call: concatenating a char per
  // byte and a decimal ISN made cons strings that every lookup had to flatten and hash.
  // Address lengths differ per family (2 or 8 units), so keys of IPv4 and IPv6 never collide.
  const units: number[] = [];
  function keyOf(buf: Uint8Array, addrOffset: number, addrLength: number, a: number, b: number, c: number): string {
    units.length = 0;
    for (let i = 0; i < addrLength; i += 2) units.push((buf[addrOffset + i]! << 8) | buf[addrOffset + i + 1]!);
    units.push(a, b, c);
    return String.fromCharCode.apply(null, units);
  }

  /** (remote address, remote port, client ISN): the key of the per-flow handshake maps. */
  function flowKey(buf: Uint8Array, addrOffset: number, addrLength: number, port: number, isnC: number): string {
    return keyOf(buf, addrOffset, addrLength, port, isnC >>> 16, isnC & 0xffff);
  }

  /** (remote address, remote port, local port): the key of the recent-flow sets. */
  function tupleKey(buf: Uint8Array, addrOffset: number, addrLength: number, remotePort: number, localPort: number): string {
    return keyOf(buf, addrOffset, addrLength, remotePort, localPort, 0);
  }

  function addrString(buf: Uint8Array, off: number, len: number): string {
    if (len === 4) return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
    const parts: string[] = [];
    for (let i = 0; i < 16; i += 2) parts.push(((buf[off + i]! << 8) | buf[off + i + 1]!).toString(16));
    return parts.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
  }

  function macInput(tag: number, a: Uint8Array, b: Uint8Array): Uint8Array {
    scratch[0] = tag >> 8;
    scratch[1] = tag & 0xff;
    scratch.set(a, 2);
    scratch.set(b, 2 + a.length);
    return scratch.subarray(0, 2 + a.length + b.length);
  }

  function record(
    direction: FlowRecord['direction'],
    stage: FlowRecord['stage'],
    verdict: FlowRecord['verdict'],
    reason: Reason,
    ruleId: string,
    buf: Uint8Array,
    pkt: TcpPacket,
    local: LocalPu | undefined,
    peer: VerifiedPeer | null,
    remoteIsSource: boolean,
    decision?: PolicyDecision,
  ): void {
    deps.onFlow({
      time: deps.now(),
      direction,
      stage,
      verdict,
      reason,
      ruleId,
      localPu: local?.id ?? null,
      localLabels: local?.labels ?? null,
      localPort: remoteIsSource ? pkt.dstPort : pkt.srcPort,
      remoteAddr: addrString(buf, remoteIsSource ? pkt.srcAddrOffset : pkt.dstAddrOffset, pkt.addrLength),
      remotePort: remoteIsSource ? pkt.srcPort : pkt.dstPort,
      remoteHost: peer?.host ?? null,
      remotePu: peer?.pu ?? null,
      remoteLabels: peer?.labels ?? null,
      ...(decision?.observed?.length ? { observed: decision.observed } : {}),
    });
  }

  /** The peer's address as text, for network rules. Only computed when a policy is asked. */
  function peerAddr(buf: Uint8Array, pkt: TcpPacket): string {
    return addrString(buf, pkt.srcAddrOffset, pkt.addrLength);
  }

  /**
   * What a policy decision means for this packet: allowed, refused, or refused-but-audited
   * (let through and recorded with reason 'audit' so the flow log shows it apart).
   */
  function judge(d: PolicyDecision): 'allow' | 'reject' | 'audit' {
    if (!d.allow) return 'reject';
    return d.audit ? 'audit' : 'allow';
  }

  /** Drop a packet, counted under `reason`. */
  function drop(reason: Reason): Decision {
    counters.dropped++;
    return decide(VERDICT_DROP, -1, 0, reason);
  }

  /** Refuse an inbound packet: a reset from the kernel (filter TESSERA-REJECT) or a drop. */
  function rejectInbound(buf: Uint8Array, pkt: TcpPacket, out: Uint8Array, reason: Reason, mode: 'reset' | 'drop' = opt.rejectMode): Decision {
    counters.rejected++;
    if (mode === 'drop') return decide(VERDICT_DROP, -1, 0, reason);
    // Strip our block first so that the reset acknowledges exactly the client's SYN.
    const len = rebuild(buf, pkt, { removeOptionAt: findOption(buf, pkt, MARKER_KIND, MARKER_EXID), payload: null }, out);
    return decide(VERDICT_ACCEPT, REJECT_BIT, typeof len === 'number' ? len : 0, reason);
  }

  /** Refuse a SYN-ACK for our local client: turn it into a reset so connect() fails at once. */
  function rejectSynAck(buf: Uint8Array, pkt: TcpPacket, out: Uint8Array, reason: Reason, mode: 'reset' | 'drop' = opt.rejectMode): Decision {
    counters.rejected++;
    if (mode === 'drop') return decide(VERDICT_DROP, -1, 0, reason);
    const len = toReset(buf, pkt, out);
    return typeof len === 'number' ? decide(VERDICT_ACCEPT, -1, len, reason) : decide(VERDICT_DROP, -1, 0, reason);
  }

  /** Add the marker option and append the block after whatever payload the packet has. */
  function attach(buf: Uint8Array, pkt: TcpPacket, block: Block, out: Uint8Array): number | 'too-large' {
    const n = encodeBlock(block, blockBuf);
    const len = rebuild(buf, pkt, { addOption: MARKER_OPTION, append: blockBuf.subarray(0, n), maxLength: opt.maxPacketLength }, out);
    return typeof len === 'number' ? len : 'too-large';
  }

  // ---- egress (POSTROUTING): our PU is the client (SYN, ACK) or the server (SYN-ACK) ----

  function synOut(buf: Uint8Array, pkt: TcpPacket, mark: number, out: Uint8Array): Decision {
    const pu = deps.puByIndex(puIndexFromMark(mark));
    // The nfmark names a PU this worker does not know (yet: its snapshot is on the way), or
    // one without a token: leaving untagged would skip the egress decision. The kernel
    // retransmits the SYN in a second.
    if (!pu || pu.tokens.length === 0) return drop('no-pu');
    // TCP Fast Open: the data would reach the server before any proof, and leave unjudged.
    // Dropped, the client kernel retransmits the SYN without the data (and sends it after
    // the handshake).
    if (pkt.payloadLength > 0) return drop('fast-open');
    const token = pu.tokens[0]!;
    const isnC = pkt.seq;
    const tuple = tupleKey(buf, pkt.dstAddrOffset, pkt.addrLength, pkt.dstPort, pkt.srcPort);
    recentClient.forget(tuple);
    const nonceC = crypto.nonce(flowInput(buf, pkt.dstAddrOffset, pkt.addrLength, pkt.dstPort, [LABEL_CLIENT_NONCE, isnC], []));
    const len = attach(buf, pkt, { type: BlockType.Syn, nonceC, token: token.bytes }, out);
    if (len === 'too-large') return drop('too-large');
    clientSyns.set(tuple, isnC);
    counters.accepted++;
    return decide(VERDICT_REPEAT, OP_SET_CLIENT_PENDING | (mark & PU_INDEX_MASK), len, 'ok');
  }

  function synAckOut(buf: Uint8Array, pkt: TcpPacket, out: Uint8Array): Decision {
    // Simultaneous open: our local client sent a SYN on this tuple, a crossed SYN came in and
    // the stack answers it with its own ISN. Neither side would ever prove itself (the
    // protocol has no such exchange), so the flow is refused here, not authorized later.
    // (A host that only serves has sent no SYN: no key to build.)
    if (clientSyns.size > 0 && clientSyns.peek(tupleKey(buf, pkt.dstAddrOffset, pkt.addrLength, pkt.dstPort, pkt.srcPort)) === pkt.seq) {
      return drop('simultaneous-open');
    }
    const isnC = (pkt.ack - 1) >>> 0;
    const key = flowKey(buf, pkt.dstAddrOffset, pkt.addrLength, pkt.dstPort, isnC);
    const st = serverState.get(key, deps.now(), opt.stateTtlMs);
    const pu = st ? deps.puByIndex(st.puIndex) : deps.puByLocalPort(pkt.srcPort);
    // Lost state (restart, eviction): drop; the client's SYN retransmission rebuilds it.
    if (!pu || !st || pu.tokens.length === 0) return drop(pu ? 'no-state' : 'no-pu');
    const token = pu.tokens[0]!;
    const hashC = st.peer.tokenHash;
    const nonceS = crypto.nonce(
      flowInput(buf, pkt.dstAddrOffset, pkt.addrLength, pkt.dstPort, [LABEL_SERVER_NONCE, isnC, pkt.seq], [st.nonceC, hashC]),
    );
    const k = crypto.sessionKey(crypto.sharedSecret(token.epkPrivate, st.peer.epk), st.nonceC, nonceS);
    const macS = crypto.mac(k, macInput(TAG_SYNACK, token.hash, hashC));
    // What only the holder of the client token's key can send back in the ACK.
    st.macC = crypto.mac(k, macInput(TAG_ACK, hashC, token.hash));
    const len = attach(buf, pkt, { type: BlockType.SynAck, nonceS, macS, token: token.bytes }, out);
    if (len === 'too-large') return drop('too-large');
    counters.accepted++;
    return decide(VERDICT_ACCEPT, -1, len, 'ok');
  }

  function ackOut(buf: Uint8Array, pkt: TcpPacket, out: Uint8Array): Decision {
    const isnC = (pkt.seq - 1) >>> 0;
    const key = flowKey(buf, pkt.dstAddrOffset, pkt.addrLength, pkt.dstPort, isnC);
    const now = deps.now();
    const st = clientState.get(key, now, opt.stateTtlMs);
    const tuple = tupleKey(buf, pkt.dstAddrOffset, pkt.addrLength, pkt.dstPort, pkt.srcPort);
    if (!st) {
      // Segments queued right behind the proof ACK pass unchanged.
      if (recentClient.covers(tuple, pkt.seq, now)) {
        counters.accepted++;
        return decide(VERDICT_ACCEPT, -1, 0, 'ok');
      }
      // No SYN-ACK was verified for this flow (state lost to a restart or eviction, or a
      // simultaneous open answered by a SYN-ACK we never checked): it must not be marked
      // authorized here, and there is no proof to send. Dropped; the server would refuse it.
      return drop('no-state');
    }
    const len = attach(buf, pkt, { type: BlockType.Ack, macC: st.macC }, out);
    if (len === 'too-large') return drop('too-large');
    clientState.delete(key);
    recentClient.add(tuple, isnC, now);
    counters.accepted++;
    return decide(VERDICT_REPEAT, OP_CLEAR_CLIENT_PENDING, len, 'ok');
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
    const source = keyOf(buf, pkt.srcAddrOffset, pkt.addrLength === 16 ? 8 : 4, 0, 0, 0);
    const now = deps.now();
    if (!budget.allows(source, now)) return null;
    const peer = crypto.verify(token);
    if (!peer.ok) budget.charge(source, now);
    return peer;
  }

  function synIn(buf: Uint8Array, pkt: TcpPacket, mark: number, out: Uint8Array): Decision {
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
    if (!pu && lookedUp) return drop('no-pu');
    const optAt = findOption(buf, pkt, MARKER_KIND, MARKER_EXID);
    if (optAt < 0) {
      if (!pu) return decide(VERDICT_ACCEPT, -1, 0, 'no-pu');
      // A peer without Tessera: the PU's network rules decide (default: refuse).
      const d = deps.policy().ingress({ client: null, server: pu, port: pkt.dstPort, peerAddr: peerAddr(buf, pkt) });
      const j = judge(d);
      if (j !== 'reject') {
        counters.accepted++;
        record('ingress', 'syn', 'accept', j === 'audit' ? 'audit' : 'ok', d.ruleId, buf, pkt, pu, null, true, d);
        // No proof will follow from a peer without Tessera: mark the flow authorized now
        // (TESSERA-APPLY turns "clear server pending" into AUTHORIZED) so revoke can find it.
        return decide(VERDICT_REPEAT, OP_CLEAR_SERVER_PENDING, 0, j === 'audit' ? 'audit' : 'ok');
      }
      record('ingress', 'syn', 'reject', 'missing-token', d.ruleId, buf, pkt, pu, null, true, d);
      return rejectInbound(buf, pkt, out, 'missing-token', d.reject);
    }
    const decoded = decodeBlock(buf.subarray(pkt.payloadOffset, pkt.payloadOffset + pkt.payloadLength));
    if (typeof decoded === 'string' || decoded.block.type !== BlockType.Syn) {
      record('ingress', 'syn', 'reject', 'malformed', 'protocol', buf, pkt, pu, null, true);
      return rejectInbound(buf, pkt, out, 'malformed');
    }
    if (decoded.keptPayload > 0) {
      // Data in front of the block: stripping would hand it to the application with the SYN,
      // before any proof. A Tessera client never sends it (its SYN with data is dropped).
      record('ingress', 'syn', 'reject', 'fast-open', 'protocol', buf, pkt, pu, null, true);
      return rejectInbound(buf, pkt, out, 'fast-open');
    }
    const peer = verifyBudgeted(buf, pkt, decoded.block.token);
    if (peer === null) return drop('rate-limited');
    if (!peer.ok) {
      record('ingress', 'syn', 'reject', peer.reason, 'protocol', buf, pkt, pu, null, true);
      return rejectInbound(buf, pkt, out, peer.reason);
    }
    const stripped = rebuild(buf, pkt, { removeOptionAt: optAt, payloadLength: decoded.keptPayload }, out);
    if (typeof stripped !== 'number') return rejectInbound(buf, pkt, out, 'bad-packet');
    if (!pu) {
      // A tessera peer calling an unprotected local service: deliver it as a plain SYN.
      counters.accepted++;
      return decide(VERDICT_ACCEPT, -1, stripped, 'no-pu');
    }
    const d = deps.policy().ingress({ client: peer, server: pu, port: pkt.dstPort, peerAddr: peerAddr(buf, pkt) });
    if (judge(d) === 'reject') {
      record('ingress', 'syn', 'reject', 'policy', d.ruleId, buf, pkt, pu, peer, true, d);
      return rejectInbound(buf, pkt, out, 'policy', d.reject);
    }
    recentServer.forget(tupleKey(buf, pkt.srcAddrOffset, pkt.addrLength, pkt.srcPort, pkt.dstPort));
    // A real copy: the block is a view of the queue's receive buffer, which the next batch
    // overwrites (and Buffer.prototype.slice would return a view, not a copy).
    if (lookedUp) key = flowKey(buf, pkt.srcAddrOffset, pkt.addrLength, pkt.srcPort, pkt.seq);
    serverState.set(key, { at: deps.now(), nonceC: new Uint8Array(decoded.block.nonceC), peer, decision: d, macC: null, puIndex: pu.index });
    counters.accepted++;
    return decide(VERDICT_REPEAT, OP_SET_SERVER_PENDING, stripped, 'ok');
  }

  function synAckIn(buf: Uint8Array, pkt: TcpPacket, mark: number, out: Uint8Array): Decision {
    const pu = deps.puByIndex(puIndexFromMark(mark));
    const optAt = findOption(buf, pkt, MARKER_KIND, MARKER_EXID);
    if (!pu) return decide(VERDICT_ACCEPT, -1, 0, 'no-pu');
    if (optAt < 0) {
      // The peer does not run Tessera: its policy is the external-network rules (default deny).
      const d = deps.policy().egress({ client: pu, server: null, port: pkt.srcPort, peerAddr: peerAddr(buf, pkt) });
      const j = judge(d);
      if (j !== 'reject') {
        counters.accepted++;
        record('egress', 'syn-ack', 'accept', j === 'audit' ? 'audit' : 'ok', d.ruleId, buf, pkt, pu, null, true, d);
        // Not a tessera peer: nothing more to prove; stop queueing this flow's ACK.
        return decide(VERDICT_REPEAT, OP_CLEAR_CLIENT_PENDING, 0, j === 'audit' ? 'audit' : 'ok');
      }
      record('egress', 'syn-ack', 'reject', 'missing-token', d.ruleId, buf, pkt, pu, null, true, d);
      return rejectSynAck(buf, pkt, out, 'missing-token', d.reject);
    }
    const decoded = decodeBlock(buf.subarray(pkt.payloadOffset, pkt.payloadOffset + pkt.payloadLength));
    if (typeof decoded === 'string' || decoded.block.type !== BlockType.SynAck) {
      record('egress', 'syn-ack', 'reject', 'malformed', 'protocol', buf, pkt, pu, null, true);
      return rejectSynAck(buf, pkt, out, 'malformed');
    }
    const block = decoded.block;
    const peer = crypto.verify(block.token);
    if (!peer.ok) {
      record('egress', 'syn-ack', 'reject', peer.reason, 'protocol', buf, pkt, pu, null, true);
      return rejectSynAck(buf, pkt, out, peer.reason);
    }
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
    if (!macC || !mine) {
      record('egress', 'syn-ack', 'reject', 'bad-mac', 'protocol', buf, pkt, pu, peer, true);
      return rejectSynAck(buf, pkt, out, 'bad-mac');
    }
    const d: PolicyDecision = deps.policy().egress({ client: pu, server: peer, port: pkt.srcPort, peerAddr: peerAddr(buf, pkt) });
    const j = judge(d);
    if (j === 'reject') {
      record('egress', 'syn-ack', 'reject', 'policy', d.ruleId, buf, pkt, pu, peer, true, d);
      return rejectSynAck(buf, pkt, out, 'policy', d.reject);
    }
    const stripped = rebuild(buf, pkt, { removeOptionAt: optAt, payloadLength: decoded.keptPayload }, out);
    if (typeof stripped !== 'number') return rejectSynAck(buf, pkt, out, 'bad-packet');
    const key = flowKey(buf, pkt.srcAddrOffset, pkt.addrLength, pkt.srcPort, isnC);
    clientState.set(key, { at: deps.now(), macC });
    counters.accepted++;
    record('egress', 'syn-ack', 'accept', j === 'audit' ? 'audit' : 'ok', d.ruleId, buf, pkt, pu, peer, true, d);
    return decide(VERDICT_ACCEPT, -1, stripped, j === 'audit' ? 'audit' : 'ok');
  }

  function ackIn(buf: Uint8Array, pkt: TcpPacket, out: Uint8Array): Decision {
    const isnC = (pkt.seq - 1) >>> 0;
    const key = flowKey(buf, pkt.srcAddrOffset, pkt.addrLength, pkt.srcPort, isnC);
    const now = deps.now();
    const optAt = findOption(buf, pkt, MARKER_KIND, MARKER_EXID);
    const st = serverState.get(key, now, opt.stateTtlMs);
    const pu = st ? deps.puByIndex(st.puIndex) : deps.puByLocalPort(pkt.dstPort);
    const tuple = tupleKey(buf, pkt.srcAddrOffset, pkt.addrLength, pkt.srcPort, pkt.dstPort);
    if (optAt < 0) {
      if (recentServer.covers(tuple, pkt.seq, now)) return decide(VERDICT_ACCEPT, -1, 0, 'ok');
      // Data before the proof: hold it back (dropped; the client retransmits).
      return drop('missing-proof');
    }
    const decoded = decodeBlock(buf.subarray(pkt.payloadOffset, pkt.payloadOffset + pkt.payloadLength));
    if (typeof decoded === 'string' || decoded.block.type !== BlockType.Ack) {
      record('ingress', 'ack', 'reject', 'malformed', 'protocol', buf, pkt, pu, null, true);
      return rejectInbound(buf, pkt, out, 'malformed');
    }
    if (!st && recentServer.covers(tuple, pkt.seq, now)) {
      // A copy of a proof we already accepted (the network duplicated it): strip and pass.
      const len = rebuild(buf, pkt, { removeOptionAt: optAt, payloadLength: decoded.keptPayload }, out);
      return typeof len === 'number' ? decide(VERDICT_ACCEPT, -1, len, 'ok') : rejectInbound(buf, pkt, out, 'bad-packet');
    }
    if (!pu || !st || !st.macC) {
      // No SYN-ACK of ours answered this flow (or its entry is gone: restart, eviction).
      const reason: Reason = pu ? 'no-state' : 'no-pu';
      record('ingress', 'ack', 'reject', reason, 'protocol', buf, pkt, pu, st?.peer ?? null, true);
      return rejectInbound(buf, pkt, out, reason);
    }
    const peer = st.peer;
    if (!crypto.equal(decoded.block.macC, st.macC)) {
      // The client cannot prove it holds the key of the token for THIS connection: a replay.
      record('ingress', 'ack', 'reject', 'replay', 'protocol', buf, pkt, pu, peer, true);
      return rejectInbound(buf, pkt, out, 'replay');
    }
    // The ingress decision was made on the SYN, against the token verified there.
    const d = st.decision;
    const j = judge(d);
    const stripped = rebuild(buf, pkt, { removeOptionAt: optAt, payloadLength: decoded.keptPayload }, out);
    if (typeof stripped !== 'number') return rejectInbound(buf, pkt, out, 'bad-packet');
    recentServer.add(tuple, isnC, now);
    serverState.delete(key);
    counters.accepted++;
    record('ingress', 'ack', 'accept', j === 'audit' ? 'audit' : 'ok', d.ruleId, buf, pkt, pu, peer, true, d);
    return decide(VERDICT_REPEAT, OP_CLEAR_SERVER_PENDING, stripped, j === 'audit' ? 'audit' : 'ok');
  }

  function handle(buf: Uint8Array, hook: number, mark: number, out: Uint8Array): Decision {
    counters.packets++;
    inMark = mark;
    const pkt = parseTcp(buf);
    // Not a TCP packet we can read: refused both ways. Only handshake packets of PU flows are
    // queued, and on egress a PU's process can shape its own (an IPv6 routing header, say):
    // accepting would let it leave unjudged.
    if (!pkt.ok) return drop('bad-packet');
    const egress = hook === HOOK_POST_ROUTING || hook === HOOK_LOCAL_OUT;
    // Our rewrite computes fresh checksums, so a corrupted inbound packet must be refused
    // before it is rewritten, or it would leave here looking valid. (Egress packets come
    // from our own stack with checksums completed by the kernel before queueing.)
    if (!egress && verifyChecksums(buf, pkt) !== null) return drop('bad-packet');
    const flags = pkt.flags & FLAG_MASK;
    const isAck = (pkt.flags & ACK_MASK) === TCP_ACK;
    if (egress) {
      if (flags === TCP_SYN) return synOut(buf, pkt, mark, out);
      if (flags === (TCP_SYN | TCP_ACK)) return synAckOut(buf, pkt, out);
      if (isAck) return ackOut(buf, pkt, out);
      return decide(VERDICT_ACCEPT, -1, 0, 'ok');
    }
    if (flags === TCP_SYN) return synIn(buf, pkt, mark, out);
    if (flags === (TCP_SYN | TCP_ACK)) return synAckIn(buf, pkt, mark, out);
    if (isAck) return ackIn(buf, pkt, out);
    // SYN+FIN, SYN+RST and other mixes never reach a socket as a handshake: refuse them.
    if (flags & TCP_SYN) return drop('bad-packet');
    return decide(VERDICT_ACCEPT, -1, 0, 'ok');
  }

  return {
    handle,
    stats: () => ({
      ...counters,
      serverState: serverState.map.size,
      clientState: clientState.map.size,
      byReason: { ...byReason },
    }),
  };
}
