// A bounded least-recently-used map. Map keeps insertion order, so "touch" is delete + set
// and the oldest entry is the first key: every operation is O(1) with no extra links.
// get() touches lazily: an entry used again before a quarter of the bound of newer entries
// arrived stays where it is (it is still far from eviction), so a hot entry, like the token
// of a busy peer on every packet, costs a lookup and not a delete + re-insert per hit.
// All identity caches (verified tokens, certificates, X25519 results) use it so that
// no cache can grow past its bound, whatever a peer sends (ARCHITECTURE: bounded state).

import { TesseraError } from '../errors.js';

export class Lru<K, V> {
  readonly #max: number;
  readonly #slack: number;
  readonly #map = new Map<K, { v: V; seq: number }>();
  /** Counts insertions and touches: an entry's seq says how many came after it. */
  #seq = 0;

  constructor(maxEntries: number) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', `cache size must be an integer >= 1, got ${String(maxEntries)}`);
    }
    this.#max = maxEntries;
    this.#slack = Math.floor(maxEntries / 4);
  }

  get size(): number {
    return this.#map.size;
  }

  get maxEntries(): number {
    return this.#max;
  }

  /** Returns the value and marks it recently used. */
  get(key: K): V | undefined {
    const e = this.#map.get(key);
    if (e === undefined) return undefined;
    if (this.#seq - e.seq >= this.#slack) {
      this.#map.delete(key);
      e.seq = ++this.#seq;
      this.#map.set(key, e);
    }
    return e.v;
  }

  /** Returns the value without changing its position. */
  peek(key: K): V | undefined {
    return this.#map.get(key)?.v;
  }

  has(key: K): boolean {
    return this.#map.has(key);
  }

  /** Inserts or replaces; evicts the least recently used entry when full. */
  set(key: K, value: V): void {
    if (this.#map.has(key)) this.#map.delete(key);
    else if (this.#map.size >= this.#max) {
      const oldest = this.#map.keys().next();
      if (!oldest.done) this.#map.delete(oldest.value);
    }
    this.#map.set(key, { v: value, seq: ++this.#seq });
  }

  delete(key: K): boolean {
    return this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }
}
