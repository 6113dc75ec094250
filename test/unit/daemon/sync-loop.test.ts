// The sync loop: coalesced, one transaction at a time; a caller's promise covers every change
// made before its call; a failed transaction degrades health (status and /readyz) until a
// later one succeeds.
import { describe, expect, it } from 'vitest';
import { createSyncLoop } from '../../../src/daemon/sync-loop.js';
import { createHealth } from '../../../src/daemon/health.js';
import { capturingLogger } from './fakes.js';

function setup() {
  let clock = Date.parse('2026-01-01T00:00:00Z');
  const now = () => new Date(clock);
  const health = createHealth(now);
  const l = capturingLogger();
  const calls = { push: 0, apply: 0, save: 0, counted: 0 };
  let failWith: Error | null = null;
  let release: (() => void) | null = null;
  let gate = false;
  const loop = createSyncLoop({
    pushWorkers: () => void calls.push++,
    async applyRules() {
      calls.apply++;
      if (gate) await new Promise<void>((r) => (release = r));
      if (failWith) throw failWith;
      return true;
    },
    save: () => void calls.save++,
    health,
    log: l.log,
    count: () => void calls.counted++,
    retryEverySeconds: 10,
    now,
  });
  return {
    loop,
    health,
    l,
    calls,
    fail: (e: Error | null) => (failWith = e),
    hold: (g: boolean) => (gate = g),
    release: () => release?.(),
    tick: (ms: number) => (clock += ms),
  };
}

describe('sync loop', () => {
  it('while held, updates the workers only: no rule transaction, no state write', async () => {
    const t = setup();
    await t.loop.sync();
    expect(t.calls).toEqual({ push: 1, apply: 0, save: 0, counted: 0 });
    expect(t.health.readiness().reasons).toContain('host rules not applied');
  });

  it('coalesces changes made during a transaction into one more run', async () => {
    const t = setup();
    t.loop.hold(false);
    t.hold(true);
    const first = t.loop.sync();
    await new Promise((r) => setImmediate(r)); // the transaction is running
    const during = [t.loop.sync(), t.loop.sync(), t.loop.sync()];
    t.hold(false);
    t.release();
    await Promise.all([first, ...during]);
    expect(t.calls.apply).toBe(2); // the first, then one for all three changes
    expect(t.calls.counted).toBe(2);
    expect(t.calls.save).toBe(1);
  });

  it('a failed transaction rejects, degrades health with the reason, and a later success recovers', async () => {
    const t = setup();
    t.loop.hold(false);
    await t.loop.sync();
    expect(t.health.readiness().ready).toBe(false); // workers and policy not reported in this test
    expect(t.health.readiness().reasons).not.toContain('host rules not applied');

    t.fail(new Error('iptables-restore: Resource temporarily unavailable\nmore detail'));
    t.tick(1000);
    await expect(t.loop.sync()).rejects.toThrow(/Resource temporarily/);
    const failingSince = new Date(Date.parse('2026-01-01T00:00:01Z')).toISOString();
    expect(t.health.health()).toEqual({
      state: 'degraded',
      problems: [{ component: 'rules', message: expect.stringContaining('Resource temporarily unavailable'), since: failingSince }],
    });
    expect(t.loop.rules()).toMatchObject({ ok: false, error: 'iptables-restore: Resource temporarily unavailable', since: failingSince });
    expect(t.health.readiness().reasons).toContain('host rules not applied');
    expect(t.l.at('error')).toHaveLength(1);

    t.tick(1000); // still failing: the problem keeps its first `since`
    await expect(t.loop.sync()).rejects.toThrow();
    expect(t.health.health().problems[0]!.since).toBe(failingSince);

    t.fail(null);
    t.tick(1000);
    await t.loop.sync();
    expect(t.health.health()).toEqual({ state: 'ok', problems: [] });
    expect(t.loop.rules()).toMatchObject({ ok: true, lastFailure: { error: 'iptables-restore: Resource temporarily unavailable' } });
    expect(t.l.at('info').map((l) => l.msg)).toContain('rules applied again');
    expect(t.health.readiness().reasons).not.toContain('host rules not applied');
  });

  it('syncInBackground swallows the failure it already reported', async () => {
    const t = setup();
    t.loop.hold(false);
    t.fail(new Error('boom'));
    t.loop.syncInBackground();
    await t.loop.idle();
    expect(t.health.health().state).toBe('degraded');
  });
});

describe('health', () => {
  it('is ready only with rules, workers and policy all reported', () => {
    const h = createHealth();
    expect(h.readiness()).toEqual({ ready: false, reasons: ['host rules not applied', 'datapath workers not bound to their queues', 'no policy loaded'] });
    h.setReady('rules', true);
    h.setReady('workers', true);
    h.setReady('policy', true);
    expect(h.readiness()).toEqual({ ready: true, reasons: [] });
    h.setReady('workers', false);
    expect(h.readiness().ready).toBe(false);
  });
});
