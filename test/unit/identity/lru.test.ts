import { describe, expect, it } from 'vitest';
import { Lru } from '../../../src/identity/index.js';

describe('Lru', () => {
  it('evicts the least recently used generation and get() refreshes recency', () => {
    const l = new Lru<string, number>(4); // generations of 2
    l.set('a', 1);
    l.set('b', 2); // {a, b} become the old generation
    l.set('c', 3);
    expect(l.get('a')).toBe(1); // promoted: {c, a} become old, {a, b} is dropped but a moved
    l.set('d', 4);
    l.set('e', 5); // {d, e} old; {c, a} dropped
    expect(l.has('a')).toBe(false);
    expect(l.has('b')).toBe(false);
    expect(l.get('d')).toBe(4);
    expect(l.size).toBeLessThanOrEqual(4);
  });
  it('peek does not refresh; set on an existing key replaces without growing', () => {
    const l = new Lru<string, number>(4);
    l.set('a', 1);
    l.set('b', 2);
    expect(l.peek('a')).toBe(1);
    l.set('b', 22);
    expect(l.size).toBe(2);
    expect(l.peek('b')).toBe(22);
    l.set('c', 3);
    l.set('d', 4); // a was not refreshed by peek: its generation goes
    expect(l.has('a')).toBe(false);
    expect(l.get('c')).toBe(3);
    expect([...l.values()].sort()).toEqual([3, 4]);
  });
  it('never grows past its bound, and keeps at least half of it', () => {
    const l = new Lru<number, number>(100);
    for (let i = 0; i < 10_000; i++) {
      l.set(i, i);
      expect(l.size).toBeLessThanOrEqual(100);
      expect(l.size).toBeGreaterThanOrEqual(Math.min(i + 1, 50));
    }
    expect(l.get(9_999)).toBe(9_999);
    expect(l.get(9_950)).toBe(9_950);
    expect(l.get(9_899)).toBeUndefined();
  });
  it('a hot entry survives any number of insertions', () => {
    const l = new Lru<number, number>(100);
    l.set(-1, -1);
    for (let i = 0; i < 1000; i++) {
      l.set(i, i);
      expect(l.get(-1)).toBe(-1);
    }
    expect(l.delete(-1)).toBe(true);
    expect(l.has(-1)).toBe(false);
  });
  it('refuses a bound below 1', () => {
    expect(() => new Lru(0)).toThrow(expect.objectContaining({ code: 'TESSERA_ERR_INVALID_CONFIG' }));
  });
});
