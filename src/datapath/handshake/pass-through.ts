// The daemon's `--accept-all` benchmark mode: every queued handshake packet is accepted with
// the connmark operations the protocol would ask for (so a connection still takes its four
// queue passes and ends AUTHORIZED), but nothing is attached, checked or decided. What the
// full-auth benchmark row costs beyond this row is the protocol's own work. Its verdict marks
// follow the same rule as the handshake's (verdictMark: other software's bits kept).
//
// Four passes (protocol v2): the server authorizes when its SYN-ACK leaves, the client when
// the SYN-ACK arrives. `sixPasses` (--six-passes, with the ruleset's queue.ackPass): protocol
// v1's layout, where both ends authorize at the client's first ACK instead.

import { parseTcp, TCP_SYN, TCP_ACK, TCP_FIN, TCP_RST } from '../../packet/index.js';
import { OP_SET_CLIENT_PENDING, OP_CLEAR_CLIENT_PENDING, OP_SET_SERVER_PENDING, OP_CLEAR_SERVER_PENDING, PU_INDEX_MASK } from '../../marks.js';
import { HOOK_LOCAL_OUT, HOOK_POST_ROUTING, VERDICT_ACCEPT, VERDICT_REPEAT, verdictMark } from './verdict.js';
import type { Decision, Handshake } from './handshake.js';

const FLAG_MASK = TCP_SYN | TCP_ACK | TCP_FIN | TCP_RST;
const ACK_MASK = TCP_SYN | TCP_ACK | TCP_RST;

export function createPassThrough(sixPasses = false): Handshake {
  const result: Decision = { kind: 'accept', verdict: VERDICT_ACCEPT, mark: -1, length: 0, reason: 'ok' };
  let packets = 0;
  function handle(buf: Uint8Array, hook: number, mark: number): Decision {
    packets++;
    const pkt = parseTcp(buf);
    const egress = hook === HOOK_POST_ROUTING || hook === HOOK_LOCAL_OUT;
    const flags = pkt.ok ? pkt.flags & FLAG_MASK : 0;
    const isAck = pkt.ok && (pkt.flags & ACK_MASK) === TCP_ACK;
    result.verdict = VERDICT_ACCEPT;
    result.mark = -1;
    if (flags === TCP_SYN) {
      result.verdict = VERDICT_REPEAT;
      result.mark = verdictMark(mark, egress ? OP_SET_CLIENT_PENDING | (mark & PU_INDEX_MASK) : OP_SET_SERVER_PENDING);
    } else if (!sixPasses && flags === (TCP_SYN | TCP_ACK)) {
      result.verdict = VERDICT_REPEAT;
      result.mark = verdictMark(mark, egress ? OP_CLEAR_SERVER_PENDING : OP_CLEAR_CLIENT_PENDING);
    } else if (sixPasses && isAck) {
      result.verdict = VERDICT_REPEAT;
      result.mark = verdictMark(mark, egress ? OP_CLEAR_CLIENT_PENDING : OP_CLEAR_SERVER_PENDING);
    }
    return result;
  }
  return {
    handle,
    stats: () => ({ packets, accepted: packets, passed: 0, rejected: 0, dropped: 0, serverState: 0, clientState: 0, byReason: {} }),
  };
}
