// The handshake's bookkeeping in one place: every packet ends in exactly one outcome, and the
// verdict, the counters and the flow record all follow from it. Handlers say what happened
// (drop, pass, accept, refuse) with the packet's context; nothing else counts or records.
//
//   kind     verdict                          counted as  flow record
//   drop     NF_DROP                          dropped     never (a flood must not fill the log)
//   pass     accept, nothing authorized       passed      never (not a decision of ours)
//   accept   accept/repeat, a step authorized accepted    when the step decides (`record`)
//   reject   a reset, or NF_DROP in drop mode rejected    always
//
// So: packets = accepted + passed + rejected + dropped, and byReason (every outcome's
// reason, 'ok' included) sums to packets as well.

import { findOption, formatAddress, rebuild, toReset, type TcpPacket } from '../../packet/index.js';
import type { PolicyDecision } from '../../policy/index.js';
import type { FlowRecord } from '../../flow.js';
import { observeFlow } from '../../learn/observer.js';
import { REJECT_BIT } from '../../marks.js';
import { VERDICT_ACCEPT, VERDICT_DROP, VERDICT_REPEAT, verdictMark } from './verdict.js';
import { MARKER_EXID, MARKER_KIND } from './wire.js';
import type { Decision, HandshakeOptions, LocalPu, OutcomeKind, Reason, VerifiedPeer } from './types.js';

/** One packet as its handler learns about it; the outcome reads it. Reused packet to packet. */
export interface PacketContext {
  buf: Uint8Array;
  pkt: TcpPacket;
  out: Uint8Array;
  /** The nfmark the packet arrived with: its foreign bits go into every verdict mark. */
  mark: number;
  /** The connection's direction from this host (ingress: we serve) and its handshake step. */
  direction: FlowRecord['direction'];
  stage: FlowRecord['stage'];
  local: LocalPu | undefined;
  /** The remote PU, once its token is verified. */
  peer: VerifiedPeer | null;
  /** Whether the packet is leaving this host (POSTROUTING). */
  egress?: boolean;
}

export function newContext(): PacketContext {
  return { buf: new Uint8Array(0), pkt: null as unknown as TcpPacket, out: new Uint8Array(0), mark: 0, direction: 'ingress', stage: 'syn', local: undefined, peer: null };
}

export interface Counters {
  packets: number;
  accepted: number;
  passed: number;
  rejected: number;
  dropped: number;
}

export interface Outcomes {
  readonly counters: Counters;
  /** Outcomes per reason ('ok' included), a copy. */
  byReason(): Record<string, number>;
  drop(c: PacketContext, reason: Reason): Decision;
  /**
   * Let it through unchanged (length 0) or as rewritten into c.out; nothing is authorized.
   * `ours`: a connmark operation that authorizes nothing (a retry's SERVER_PENDING).
   */
  pass(c: PacketContext, reason: Reason, length?: number, ours?: number): Decision;
  /**
   * A handshake step authorized: `ours` are the connmark operation bits. With a decision,
   * the step is the one that decides the connection: recorded, 'audit' when it was audited.
   */
  accept(c: PacketContext, verdict: number, ours: number, length: number, decision: PolicyDecision | null): Decision;
  /**
   * Refuse: a reset from the kernel for an inbound SYN or ACK (filter TESSERA-REJECT, our
   * block stripped first so the reset acknowledges exactly the client's SYN), a SYN-ACK
   * turned into a reset for our local client, or a drop in drop mode. With a policy
   * decision, its rule and its reject mode. `silent`: dropped whatever the reject mode (a
   * refusal the sender must not hear about: a replay, a proof from before a restart whose
   * retransmission will pass).
   */
  refuse(c: PacketContext, reason: Reason, decision?: PolicyDecision | null, silent?: boolean): Decision;
}

export function createOutcomes(opt: HandshakeOptions, now: () => number, onFlow: (r: FlowRecord) => void): Outcomes {
  const counters: Counters = { packets: 0, accepted: 0, passed: 0, rejected: 0, dropped: 0 };
  const byReason: Record<string, number> = Object.create(null);
  const result: Decision = { kind: 'pass', verdict: VERDICT_ACCEPT, mark: -1, length: 0, reason: 'ok' };

  /** 'ok' is by far the most common reason: a plain counter, merged into byReason when read. */
  let ok = 0;
  /** The one exit of every packet: `ours` is our nfmark bits (-1: leave the mark alone). */
  function settle(c: PacketContext, kind: OutcomeKind, verdict: number, ours: number, length: number, reason: Reason): Decision {
    if (reason === 'ok') ok++;
    else byReason[reason] = (byReason[reason] ?? 0) + 1;
    result.kind = kind;
    result.verdict = verdict;
    result.mark = verdictMark(c.mark, ours);
    result.length = length;
    result.reason = reason;
    return result;
  }

  // The text of recent peer addresses (IPv4, by their 32-bit value): a record per connection
  // need not format and allocate the same string again. Bounded: cleared when full.
  const addresses = new Map<number, string>();
  function addressText(buf: Uint8Array, at: number, length: 4 | 16): string {
    if (length !== 4) return formatAddress(buf, at, length);
    const k = (buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!;
    let s = addresses.get(k);
    if (s === undefined) {
      if (addresses.size >= 4096) addresses.clear();
      s = formatAddress(buf, at, 4);
      addresses.set(k, s);
    }
    return s;
  }

  /** The flow record of a deciding step. Records are made only on inbound packets: the remote end is the source. */
  function record(c: PacketContext, verdict: FlowRecord['verdict'], reason: Reason, decision: PolicyDecision | null): void {
    const { buf, pkt, local, peer } = c;
    const r: FlowRecord = {
      time: now(),
      direction: c.direction,
      stage: c.stage,
      verdict,
      reason,
      ruleId: decision?.ruleId ?? 'protocol',
      localPu: local?.id ?? null,
      localLabels: local?.labels ?? null,
      localPort: pkt.dstPort,
      remoteAddr: addressText(buf, pkt.srcAddrOffset, pkt.addrLength),
      remotePort: pkt.srcPort,
      remoteHost: peer?.host ?? null,
      remotePu: peer?.pu ?? null,
      remoteLabels: peer?.labels ?? null,
    };
    if (decision?.observed?.length) r.observed = decision.observed;
    if (decision?.mode) r.mode = decision.mode;
    // Learn mode's edge table sees every deciding record, whether or not the record is sent on.
    observeFlow(r);
    onFlow(r);
  }

  return {
    counters,
    byReason: () => (ok > 0 ? { ok, ...byReason } : { ...byReason }),
    drop(c, reason) {
      counters.dropped++;
      return settle(c, 'drop', VERDICT_DROP, -1, 0, reason);
    },
    pass(c, reason, length = 0, ours = -1) {
      counters.passed++;
      return settle(c, 'pass', ours === -1 ? VERDICT_ACCEPT : VERDICT_REPEAT, ours, length, reason);
    },
    accept(c, verdict, ours, length, decision) {
      counters.accepted++;
      const reason: Reason = decision?.audit ? (decision.mode === 'learn' ? 'learn' : 'audit') : 'ok';
      if (decision) record(c, 'accept', reason, decision);
      return settle(c, 'accept', verdict, ours, length, reason);
    },
    refuse(c, reason, decision = null, silent = false) {
      counters.rejected++;
      record(c, 'reject', reason, decision);
      if (silent || (decision?.reject ?? opt.rejectMode) === 'drop') return settle(c, 'reject', VERDICT_DROP, -1, 0, reason);
      const { buf, pkt, out } = c;
      if (c.stage === 'syn-ack') {
        const len = toReset(buf, pkt, out);
        return typeof len === 'number' ? settle(c, 'reject', VERDICT_ACCEPT, -1, len, reason) : settle(c, 'reject', VERDICT_DROP, -1, 0, reason);
      }
      const len = rebuild(buf, pkt, { removeOptionAt: findOption(buf, pkt, MARKER_KIND, MARKER_EXID), payload: null }, out);
      return settle(c, 'reject', VERDICT_ACCEPT, REJECT_BIT, typeof len === 'number' ? len : 0, reason);
    },
  };
}
