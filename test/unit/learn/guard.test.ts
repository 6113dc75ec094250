import { describe, expect, it } from 'vitest';
import { RefusalGuard } from '../../../src/learn/guard.js';

describe('RefusalGuard', () => {
  it('reports once when refusals after enforcing exceed factor × before, and never without arming', () => {
    const g = new RefusalGuard({ windowMs: 60_000, factor: 5, minRefusals: 20 });
    let total = 0;
    let t = 0;
    // Before: 2 refusals a minute, sampled every 5 s.
    for (let i = 0; i < 24; i++, t += 5000) {
      if (i % 6 === 0) total++;
      expect(g.sample(t, total)).toBeNull();
    }
    g.arm(t, 'app=api moved to enforce');
    const alerts = [];
    for (let i = 0; i < 24; i++, t += 5000) {
      total += 3; // 36 a minute
      const a = g.sample(t, total);
      if (a) alerts.push(a);
    }
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.before).toBe(1);
    expect(alerts[0]!.refusals).toBeGreaterThanOrEqual(20);
    expect(alerts[0]!.message).toMatch(/refusals spiked after app=api moved to enforce/);
  });

  it('stays quiet for a modest rise, for few refusals, and after its watch ends', () => {
    const g = new RefusalGuard({ windowMs: 60_000, factor: 5, minRefusals: 20, watchMs: 120_000 });
    let total = 0;
    let t = 0;
    for (let i = 0; i < 12; i++, t += 5000) g.sample(t, (total += 1)); // 12 a minute
    g.arm(t, 'x');
    for (let i = 0; i < 24; i++, t += 5000) expect(g.sample(t, (total += 2))).toBeNull(); // 24 a minute: 2×, not 5×
    const h = new RefusalGuard({ minRefusals: 20 });
    h.arm(0, 'y');
    expect(h.sample(5000, 10)).toBeNull(); // 10 < 20
    h.arm(5000, 'z');
    expect(h.sample(5000 + 700_000, 1000)).toBeNull(); // watch over
  });
});
