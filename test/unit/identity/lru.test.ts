import { describe, expect, it } from 'vitest';
import { Lru } from '../../../src/identity/index.js';

describe('Lru', () => {
  it('evicts the least recently used entry and get() refreshes recency', () => {
    const l = new Lru<string, number>(2);
    l.set('a', 1);
    l.set('b', 2);
    expect(l.get('a')).toBe(1); // a is now the newest
    l.set('c', 3); // evicts b
    expect(l.has('b')).toBe(false);
    expect(l.get('a')).toBe(1);
    expect(l.get('c')).toBe(3);
    expect(l.size).toBe(2);
  });
  it('peek does not refresh; set on an existing key replaces without evicting', () => {
    const l = new Lru<string, number>(2);
    l.set('a', 1);
    l.set('b', 2);
    expect(l.peek('a')).toBe(1);
    l.set('b', 22);
    expect(l.size).toBe(2);
    l.set('c', 3); // a was not refreshed by peek: it goes
    expect(l.has('a')).toBe(false);
    expect(l.get('b')).toBe(22);
  });
  it('never grows past its bound', () => {
    const l = new Lru<number, number>(100);
    for (let i = 0; i < 10_000; i++) l.set(i, i);
    expect(l.size).toBe(100);
    expect(l.get(9_999)).toBe(9_999);
    expect(l.get(9_899)).toBeUndefined();
  });
  it('a hot entry survives eviction without being re-inserted on every get', () => {
    const l = new Lru<number, number>(100);
    for (let i = 0; i < 100; i++) l.set(i, i);
    expect(l.get(0)).toBe(0); // oldest: touched, becomes the newest
    for (let i = 100; i < 199; i++) {
      l.set(i, i);
      expect(l.get(0)).toBe(0); // touched again and again, moved at most every 25 insertions
    }
    expect(l.size).toBe(100);
    expect(l.has(1)).toBe(false);
  });
  it('refuses a bound below 1', () => {
    expect(() => new Lru(0)).toThrow(expect.objectContaining({ code: 'TESSERA_ERR_INVALID_CONFIG' }));
  });
});
