// The handshake's bookkeeping, as a property over random packet sequences: every packet ends
// in exactly one outcome; the verdict counters add up to the packets handled; a packet makes
// at most one flow record, whose verdict and reason are its outcome's; refusals are always
// recorded, drops and passes never; and per reason, the records never exceed the counters.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { HOOK_POST_ROUTING, HOOK_PRE_ROUTING, type Decision, type FlowRecord, type HandshakeStats } from '../../../src/datapath/handshake/handshake.js';
import { createSecret } from '../../../src/identity/index.js';
import { markForPuIndex, PU_DEST } from '../../../src/marks.js';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from '../../../src/packet/index.js';
import { A_ADDR, B_ADDR, DIRECTORY, M_ADDR, makeHost, repair, seg, type Host } from './handshake-helpers.js';

const KINDS = ['accepted', 'passed', 'rejected', 'dropped'] as const;
const KIND_OF: Record<Decision['kind'], (typeof KINDS)[number]> = { accept: 'accepted', pass: 'passed', reject: 'rejected', drop: 'dropped' };

function sum(s: HandshakeStats): number {
  return s.accepted + s.passed + s.rejected + s.dropped;
}

/** Hands one packet to `h` and checks that exactly one outcome followed from it. */
function checkedHandle(h: Host, bytes: Uint8Array, hook: number, mark: number, calls: Map<Host, number>): { bytes: Uint8Array; d: Decision } {
  const before = h.hs.stats();
  const flowsBefore = h.flows.length;
  const out = new Uint8Array(65536);
  const d = h.hs.handle(bytes, hook, mark, out);
  calls.set(h, (calls.get(h) ?? 0) + 1);
  const after = h.hs.stats();
  expect(after.packets - before.packets).toBe(1);
  const moved = KINDS.filter((k) => after[k] !== before[k]);
  expect(moved, `reason ${d.reason}`).toEqual([KIND_OF[d.kind]]);
  expect(after[KIND_OF[d.kind]] - before[KIND_OF[d.kind]]).toBe(1);
  expect((after.byReason[d.reason] ?? 0) - (before.byReason[d.reason] ?? 0)).toBe(1);
  const made = h.flows.slice(flowsBefore);
  if (d.kind === 'reject') expect(made.map((r) => [r.verdict, r.reason])).toEqual([['reject', d.reason]]);
  else if (d.kind === 'accept') expect(made.every((r) => r.verdict === 'accept' && r.reason === d.reason) && made.length <= 1).toBe(true);
  else expect(made).toEqual([]);
  return { bytes: d.length > 0 ? out.slice(0, d.length) : bytes, d: { ...d } };
}

/** One packet: a flow's next step (-1) or any step, maybe mutated, maybe at the wrong hook. */
const step = fc.record({
  flow: fc.integer({ min: 0, max: 3 }),
  step: fc.oneof({ arbitrary: fc.constant(-1), weight: 3 }, { arbitrary: fc.integer({ min: 0, max: 8 }), weight: 2 }),
  flip: fc.oneof({ arbitrary: fc.constant(null), weight: 5 }, { arbitrary: fc.tuple(fc.nat(), fc.nat(255)), weight: 1 }),
  wrongHook: fc.oneof({ arbitrary: fc.constant(false), weight: 9 }, { arbitrary: fc.constant(true), weight: 1 }),
  lookup: fc.boolean(),
});

describe('handshake outcomes: one per packet, counters that add up, records that match', () => {
  it('holds over random sequences of handshake steps, mutations, replays and stray packets', async () => {
    const psk = createSecret();
    let clock = Date.now();
    const a = makeHost('host-a', psk, {}, { now: () => clock });
    const b = makeHost('host-b', psk, { failedVerifyBurst: 2, failedVerifyPerSecond: 1 }, { now: () => clock });
    DIRECTORY.set('10.213.9.2', b.staticKey.publicRaw);
    await a.addPu(1, ['app=nginx']);
    await a.addPu(2, ['app=other']);
    await b.addPu(1, ['app=nginx'], 80);
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 60, size: 'large' }), async (steps) => {
        const calls = new Map<Host, number>();
        const startA = a.hs.stats();
        const startB = b.hs.stats();
        const flowsA = a.flows.length;
        const flowsB = b.flows.length;
        /** Per flow: the last packet each step put on the wire. */
        const wire = new Map<string, Uint8Array>();
        const next = [0, 0, 0, 0];
        for (const s of steps) {
          const at = s.step >= 0 ? s.step : next[s.flow]!;
          next[s.flow] = (at + 1) % 7;
          clock += 50;
          const sport = 41000 + s.flow;
          const client = s.flow % 2 === 0 ? 1 : 2;
          const isnC = 7000 + s.flow * 100;
          const isnS = 9000 + s.flow * 100;
          const src = s.flow === 3 ? M_ADDR : A_ADDR;
          const mutate = (x: Uint8Array): Uint8Array => {
            if (!s.flip) return x;
            const m = x.slice();
            m[s.flip[0] % m.length] = s.flip[1];
            return repair(m);
          };
          const pre = s.wrongHook ? HOOK_POST_ROUTING : HOOK_PRE_ROUTING;
          const post = s.wrongHook ? HOOK_PRE_ROUTING : HOOK_POST_ROUTING;
          const key = (n: string) => `${s.flow}:${n}`;
          switch (at) {
            case 0: // the client's SYN leaves a
              wire.set(key('syn'), checkedHandle(a, mutate(seg(src, B_ADDR, sport, 80, isnC, 0, TCP_SYN)), post, markForPuIndex(client), calls).bytes);
              break;
            case 1: // it reaches b (or an untagged one, if none left a)
              checkedHandle(b, mutate(wire.get(key('syn')) ?? seg(src, B_ADDR, sport, 80, isnC, 0, TCP_SYN)), pre, s.lookup ? PU_DEST | markForPuIndex(1) : 0, calls);
              break;
            case 2: // b's SYN-ACK leaves
              wire.set(key('synack'), checkedHandle(b, mutate(seg(B_ADDR, src, 80, sport, isnS, isnC + 1, TCP_SYN | TCP_ACK)), post, 0, calls).bytes);
              break;
            case 3: // it reaches a
              checkedHandle(a, mutate(wire.get(key('synack')) ?? seg(B_ADDR, src, 80, sport, isnS, isnC + 1, TCP_SYN | TCP_ACK)), pre, markForPuIndex(client), calls);
              break;
            case 4: // a's ACK leaves (never queued in v2: whatever reaches a queue is refused)
              wire.set(key('ack'), checkedHandle(a, mutate(seg(src, B_ADDR, sport, 80, isnC + 1, isnS + 1, TCP_ACK)), post, 0, calls).bytes);
              break;
            case 5: // it reaches b
              checkedHandle(b, mutate(wire.get(key('ack')) ?? seg(src, B_ADDR, sport, 80, isnC + 1, isnS + 1, TCP_ACK)), pre, 0, calls);
              break;
            case 6: // a data segment behind the proof, both ways
              checkedHandle(a, mutate(seg(src, B_ADDR, sport, 80, isnC + 11, isnS + 1, TCP_ACK, Uint8Array.of(1, 2, 3))), post, 0, calls);
              checkedHandle(b, mutate(seg(src, B_ADDR, sport, 80, isnC + 11, isnS + 1, TCP_ACK, Uint8Array.of(1, 2, 3))), pre, 0, calls);
              break;
            case 7: // stray flags: FIN, RST, SYN+FIN
              checkedHandle(b, mutate(seg(src, B_ADDR, sport, 80, isnC, 0, [TCP_FIN | TCP_ACK, TCP_RST, TCP_SYN | TCP_FIN][s.flow % 3]!)), pre, 0, calls);
              break;
            case 8: // bytes that are no packet; time passes (entries expire)
              checkedHandle(s.flow % 2 ? a : b, Uint8Array.of(0x45, s.flow, 0, 0), pre, 0, calls);
              clock += 20_000;
              break;
          }
        }
        for (const [h, start, flowsStart] of [[a, startA, flowsA], [b, startB, flowsB]] as const) {
          const st = h.hs.stats();
          const handled = calls.get(h) ?? 0;
          expect(st.packets - start.packets).toBe(handled);
          expect(sum(st) - sum(start)).toBe(handled);
          const reasons = (s: HandshakeStats) => Object.values(s.byReason).reduce((n, v) => n + v, 0);
          expect(reasons(st) - reasons(start)).toBe(handled);
          const made: FlowRecord[] = h.flows.slice(flowsStart);
          expect(made.filter((r) => r.verdict === 'reject').length).toBe(st.rejected - start.rejected);
          expect(made.filter((r) => r.verdict === 'accept').length).toBeLessThanOrEqual(st.accepted - start.accepted);
          const perReason = new Map<string, number>();
          for (const r of made) perReason.set(r.reason, (perReason.get(r.reason) ?? 0) + 1);
          for (const [reason, n] of perReason) expect(n, reason).toBeLessThanOrEqual((st.byReason[reason] ?? 0) - (start.byReason[reason] ?? 0));
        }
      }),
      { numRuns: 300 },
    );
    // The sequences reached the decisions that matter, not only the refusals at the door.
    const seen: Record<string, number> = {};
    for (const h of [a, b]) for (const [r, n] of Object.entries(h.hs.stats().byReason)) seen[r] = (seen[r] ?? 0) + n;
    console.log(`outcomes: a ${JSON.stringify(a.hs.stats())}, b ${JSON.stringify(b.hs.stats())}`);
    for (const r of ['ok', 'no-pu', 'policy', 'missing-token', 'malformed', 'no-state', 'bad-packet']) expect(seen[r] ?? 0, r).toBeGreaterThan(0);
    expect(a.flows.some((r) => r.verdict === 'accept' && r.stage === 'syn-ack') && b.flows.some((r) => r.verdict === 'accept' && r.stage === 'syn')).toBe(true);
  });
});
