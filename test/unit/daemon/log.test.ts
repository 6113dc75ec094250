// The refusal log budget: a flood of refusals cannot grow the log at packet rate, and what
// it holds back is reported, per reason, once.
import { describe, expect, it } from 'vitest';
import { createRefusalLogBudget } from '../../../src/daemon/log.js';

describe('refusal log budget', () => {
  it('lets N lines per second per reason through and counts the rest', () => {
    let t = 10_000;
    const b = createRefusalLogBudget(3, () => t);
    const allowed = Array.from({ length: 10 }, () => b.allow('bad-signature')).filter(Boolean).length;
    expect(allowed).toBe(3);
    expect(b.allow('replay')).toBe(true); // reasons have separate budgets
    expect(b.drain()).toEqual({ 'bad-signature': 7 });
    expect(b.drain()).toBeNull(); // reported once
    t += 1000; // a new second: a fresh budget
    expect(b.allow('bad-signature')).toBe(true);
    expect(b.drain()).toBeNull();
  });
  it('a flood of a million refusals yields at most the budget in lines', () => {
    let t = 0;
    const b = createRefusalLogBudget(50, () => t);
    let lines = 0;
    for (let i = 0; i < 1_000_000; i++) {
      t = Math.floor(i / 100_000) * 1000; // 100 k refusals per second, for 10 s
      if (b.allow('missing-token')) lines++;
    }
    expect(lines).toBe(500);
    expect(b.drain()).toEqual({ 'missing-token': 999_500 });
  });
});
