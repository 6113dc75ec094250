// The flow log: a bounded ring served newest-last, followers that see each new record once,
// counters by verdict, and refusal log lines within their per-second budget.
import { describe, expect, it, vi } from 'vitest';
import { createFlowLog } from '../../../src/daemon/flow-log.js';
import type { FlowRecord } from '../../../src/datapath/index.js';
import type { FlowEntry } from '../../../src/api/index.js';
import { capturingLogger } from './fakes.js';

const rec = (i: number, verdict: FlowRecord['verdict'] = 'accept', reason = 'ok'): FlowRecord => ({
  time: Date.parse('2026-01-01T00:00:00Z') + i,
  direction: 'ingress',
  stage: 'ack',
  verdict,
  reason,
  ruleId: 'r1',
  localPu: 'proc-1',
  localLabels: ['app=web'],
  localPort: 80,
  remoteAddr: '10.213.0.2',
  remotePort: 40000 + i,
  remoteHost: 'b',
  remotePu: 'proc-2',
  remoteLabels: ['app=web'],
});

function setup(size = 8, perSecond = 2) {
  const l = capturingLogger();
  const counted: Record<string, number> = {};
  const seen: FlowRecord[] = [];
  const flows = createFlowLog({ size, refusalLinesPerSecond: perSecond, log: l.log, count: (n) => void (counted[n] = (counted[n] ?? 0) + 1), onRecord: (r) => void seen.push(r), now: () => 5_000 });
  return { flows, l, counted, seen };
}

describe('flow log', () => {
  it('keeps at most the ring size, newest last, with ISO times', () => {
    const t = setup(8);
    for (let i = 0; i < 50; i++) t.flows.add([rec(i)]);
    const all = t.flows.recent({ deniedOnly: false, limit: 10_000 });
    expect(all).toHaveLength(8);
    expect(all.map((f) => f.remotePort)).toEqual([42, 43, 44, 45, 46, 47, 48, 49].map((i) => 40000 + i));
    expect(all[0]!.time).toBe(new Date(Date.parse('2026-01-01T00:00:00Z') + 42).toISOString());
    expect(t.flows.recent({ deniedOnly: false, limit: 3 }).map((f) => f.remotePort)).toEqual([40047, 40048, 40049]);
    expect(t.seen).toHaveLength(50);
  });

  it('filters refusals and counts each verdict', () => {
    const t = setup();
    t.flows.add([rec(1), rec(2, 'reject', 'bad-signature'), rec(3, 'drop', 'replay'), rec(4)]);
    expect(t.flows.recent({ deniedOnly: true, limit: 100 }).map((f) => f.reason)).toEqual(['bad-signature', 'replay']);
    expect(t.counted).toEqual({ flows_accepted: 2, flows_rejected: 2 });
  });

  it('tells each follower every new record until it unsubscribes', () => {
    const t = setup();
    const got: FlowEntry[] = [];
    const stop = t.flows.subscribe((f) => void got.push(f));
    t.flows.add([rec(1), rec(2)]);
    stop();
    t.flows.add([rec(3)]);
    expect(got.map((f) => f.remotePort)).toEqual([40001, 40002]);
    expect(typeof got[0]!.time).toBe('string');
  });

  it('logs refusals within the budget and sums the rest in one line', () => {
    const t = setup(8, 2);
    t.flows.add(Array.from({ length: 5 }, (_, i) => rec(i, 'reject', 'bad-signature')));
    t.flows.add([rec(9)]); // accepts are not limited
    expect(t.l.at('info').map((l) => l.msg)).toEqual(['reject ingress bad-signature', 'reject ingress bad-signature', 'accept ingress ok']);
    t.flows.flushSuppressed();
    t.flows.flushSuppressed(); // reported once
    const warns = t.l.at('warn');
    expect(warns).toHaveLength(1);
    expect(warns[0]).toMatchObject({ suppressed: { 'bad-signature': 3 } });
    expect(warns[0]!.msg).toMatch(/^3 refusals not logged/);
  });

  it('arms its summary only when a refusal is kept out, and sends it a second later (no idle timer)', () => {
    vi.useFakeTimers();
    try {
      const t = setup(8, 1);
      t.flows.add([rec(1, 'reject', 'bad-signature')]);
      expect(vi.getTimerCount()).toBe(0); // within the budget: nothing pending
      t.flows.add([rec(2, 'reject', 'bad-signature'), rec(3, 'reject', 'bad-signature')]);
      expect(vi.getTimerCount()).toBe(1); // one timer for the whole second
      vi.advanceTimersByTime(1000);
      expect(t.l.at('warn')).toHaveLength(1);
      expect(t.l.at('warn')[0]).toMatchObject({ suppressed: { 'bad-signature': 2 } });
      expect(vi.getTimerCount()).toBe(0);
      t.flows.add([rec(4, 'reject', 'bad-signature')]);
      t.flows.stop();
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
