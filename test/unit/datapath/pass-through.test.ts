// The daemon's --accept-all benchmark mode: each handshake packet gets the connmark operation
// the protocol would ask for, so a connection still takes all four queue passes (six with
// --six-passes, protocol v1's layout), and nothing else (no rewrite, no refusal).
import { describe, expect, it } from 'vitest';
import { createPassThrough } from '../../../src/datapath/handshake/pass-through.js';
import { HOOK_POST_ROUTING, HOOK_PRE_ROUTING, VERDICT_ACCEPT, VERDICT_REPEAT } from '../../../src/datapath/handshake/verdict.js';
import { NFMARK_MASK, OP_CLEAR_CLIENT_PENDING, OP_CLEAR_SERVER_PENDING, OP_SET_CLIENT_PENDING, OP_SET_SERVER_PENDING, REJECT_BIT, markForPuIndex } from '../../../src/marks.js';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from '../../../src/packet/index.js';
import { build } from '../packet/helpers.js';

const A = Uint8Array.of(10, 213, 1, 1);
const B = Uint8Array.of(10, 213, 1, 2);
const packet = (flags: number, payload = new Uint8Array(0)): Uint8Array =>
  build({ family: 4, src: A, dst: B, sport: 40000, dport: 80, seq: 1, ack: flags & TCP_ACK ? 1 : 0, flags, window: 64240, options: new Uint8Array(0), payload });

describe('createPassThrough (--accept-all)', () => {
  const out = new Uint8Array(2048);

  it('asks for the same connmark operations as protocol v2, rewriting nothing: SYN-ACK out and in authorize', () => {
    const hs = createPassThrough();
    const mark = markForPuIndex(7);
    const cases: Array<[string, number, number, number, number, number]> = [
      ['syn out', TCP_SYN, HOOK_POST_ROUTING, mark, VERDICT_REPEAT, (OP_SET_CLIENT_PENDING | mark) >>> 0],
      ['syn in', TCP_SYN, HOOK_PRE_ROUTING, 0, VERDICT_REPEAT, OP_SET_SERVER_PENDING],
      ['syn-ack out', TCP_SYN | TCP_ACK, HOOK_POST_ROUTING, 0, VERDICT_REPEAT, OP_CLEAR_SERVER_PENDING],
      ['syn-ack in', TCP_SYN | TCP_ACK, HOOK_PRE_ROUTING, mark, VERDICT_REPEAT, OP_CLEAR_CLIENT_PENDING],
      // The rules never queue an ACK in this layout; one that came would change nothing.
      ['ack in', TCP_ACK, HOOK_PRE_ROUTING, 0, VERDICT_ACCEPT, -1],
      ['rst in', TCP_RST | TCP_ACK, HOOK_PRE_ROUTING, 0, VERDICT_ACCEPT, -1],
    ];
    for (const [name, flags, hook, m, verdict, newMark] of cases) {
      const d = hs.handle(packet(flags), hook, m, out);
      expect({ name, verdict: d.verdict, mark: d.mark, length: d.length }).toEqual({ name, verdict, mark: newMark, length: 0 });
    }
  });

  it('with sixPasses asks for protocol v1\'s operations, rewriting nothing: the first ACK authorizes', () => {
    const hs = createPassThrough(true);
    const mark = markForPuIndex(7);
    const cases: Array<[string, number, number, number, number, number]> = [
      ['syn out', TCP_SYN, HOOK_POST_ROUTING, mark, VERDICT_REPEAT, (OP_SET_CLIENT_PENDING | mark) >>> 0],
      ['syn in', TCP_SYN, HOOK_PRE_ROUTING, 0, VERDICT_REPEAT, OP_SET_SERVER_PENDING],
      ['syn-ack out', TCP_SYN | TCP_ACK, HOOK_POST_ROUTING, 0, VERDICT_ACCEPT, -1],
      ['syn-ack in', TCP_SYN | TCP_ACK, HOOK_PRE_ROUTING, mark, VERDICT_ACCEPT, -1],
      ['ack out', TCP_ACK, HOOK_POST_ROUTING, 0, VERDICT_REPEAT, OP_CLEAR_CLIENT_PENDING],
      ['ack in', TCP_ACK, HOOK_PRE_ROUTING, 0, VERDICT_REPEAT, OP_CLEAR_SERVER_PENDING],
      // As in the protocol, a FIN|ACK is a third packet too (a FIN must not dodge the proof).
      ['fin-ack in', TCP_FIN | TCP_ACK, HOOK_PRE_ROUTING, 0, VERDICT_REPEAT, OP_CLEAR_SERVER_PENDING],
      ['rst in', TCP_RST | TCP_ACK, HOOK_PRE_ROUTING, 0, VERDICT_ACCEPT, -1],
    ];
    for (const [name, flags, hook, m, verdict, newMark] of cases) {
      const d = hs.handle(packet(flags), hook, m, out);
      expect({ name, verdict: d.verdict, mark: d.mark, length: d.length }).toEqual({ name, verdict, mark: newMark, length: 0 });
    }
    // Data behind the first ACK (ACK|PSH) is an ACK too: it clears the pending bit, as in the protocol.
    expect(hs.handle(packet(TCP_ACK | TCP_PSH, Uint8Array.of(1, 2, 3)), HOOK_PRE_ROUTING, 0, out).mark).toBe(OP_CLEAR_SERVER_PENDING);
    expect(hs.stats().packets).toBe(cases.length + 1);
  });

  it('keeps other software\'s mark bits in every verdict mark (kube-proxy 0x4000 and 0x8000)', () => {
    // And Tailscale's 0x80000 (see handshake-refusals.test.ts).
    const four = createPassThrough();
    const f = (0x4000 | 0x8000 | 0x80000) >>> 0;
    expect(four.handle(packet(TCP_SYN | TCP_ACK), HOOK_POST_ROUTING, f, out).mark).toBe((f | OP_CLEAR_SERVER_PENDING) >>> 0);
    const hs = createPassThrough(true);
    const foreign = (0x4000 | 0x8000 | 0x80000) >>> 0;
    expect(foreign & NFMARK_MASK).toBe(0);
    const pu = markForPuIndex(7);
    const marks = [
      hs.handle(packet(TCP_SYN), HOOK_POST_ROUTING, foreign | pu, out).mark,
      hs.handle(packet(TCP_SYN), HOOK_PRE_ROUTING, foreign | REJECT_BIT, out).mark,
      hs.handle(packet(TCP_ACK), HOOK_POST_ROUTING, foreign, out).mark,
      hs.handle(packet(TCP_ACK), HOOK_PRE_ROUTING, foreign, out).mark,
    ];
    expect(marks).toEqual([
      (foreign | OP_SET_CLIENT_PENDING | pu) >>> 0,
      (foreign | OP_SET_SERVER_PENDING) >>> 0,
      (foreign | OP_CLEAR_CLIENT_PENDING) >>> 0,
      (foreign | OP_CLEAR_SERVER_PENDING) >>> 0,
    ]);
  });

  it('accepts what it cannot parse, unchanged', () => {
    const hs = createPassThrough();
    const d = hs.handle(Uint8Array.of(0x45, 0, 0), HOOK_PRE_ROUTING, 0, out);
    expect({ verdict: d.verdict, mark: d.mark, length: d.length }).toEqual({ verdict: VERDICT_ACCEPT, mark: -1, length: 0 });
  });
});
