// The handshake's bounded tables, all on identity's two-generation Lru (ARCHITECTURE:
// bounded state): per-flow entries with a time to live and the per-source budget of failed token verifications.

import { Lru } from '../../identity/index.js';

/** Per-flow entries with a time to live, in a bounded map. */
export class Bounded<V extends { at: number }> {
  readonly map: Lru<string, V>;
  constructor(max: number) {
    this.map = new Lru(max);
  }
  set(k: string, v: V): void {
    this.map.set(k, v);
  }
  get(k: string, now: number, ttl: number): V | undefined {
    const v = this.map.peek(k);
    if (v && now - v.at > ttl) {
      this.map.delete(k);
      return undefined;
    }
    return v;
  }
  delete(k: string): void {
    this.map.delete(k);
  }
}

/**
 * A token bucket per source of failed token verifications: `burst` failures at once, then
 * `perSecond`. Sources that never fail have no entry; the map holds at most `max` sources
 * (the least recently charged go first, which only gives an evicted source a fresh bucket).
 */
export class SourceBudget {
  private readonly map: Lru<string, { tokens: number; at: number }>;
  constructor(max: number, private readonly burst: number, private readonly perSecond: number) {
    this.map = new Lru(max);
  }
  /** Whether `source` may spend one more verification that could fail. */
  allows(source: string, now: number): boolean {
    const b = this.map.get(source);
    return b === undefined || this.refill(b, now) >= 1;
  }
  /** Record one failed verification of `source`. */
  charge(source: string, now: number): void {
    const b = this.map.get(source);
    if (b === undefined) this.map.set(source, { tokens: this.burst - 1, at: now });
    else b.tokens = this.refill(b, now) - 1;
  }
  get size(): number {
    return this.map.size;
  }
  private refill(b: { tokens: number; at: number }, now: number): number {
    if (now > b.at) {
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) * this.perSecond) / 1000);
      b.at = now;
    }
    return b.tokens;
  }
}
