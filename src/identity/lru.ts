// A bounded least-recently-used map. Map keeps insertion order, so "touch" is delete + set
// and the oldest entry is the first key: every operation is O(1) with no extra links.
// All identity caches (verified tokens, certificates, X25519 results) use it so that
// no cache can grow past its bound, whatever a peer sends (ARCHITECTURE: bounded state).

import { TesseraError } from '../errors.js';

export class Lru<K, V> {
  readonly #max: number;
  readonly #map = new Map<K, V>();

  constructor(maxEntries: number) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', `cache size must be an integer >= 1, got ${String(maxEntries)}`);
    }
    this.#max = maxEntries;
  }

  get size(): number {
    return this.#map.size;
  }

  get maxEntries(): number {
    return this.#max;
  }

  /** Returns the value and marks it most recently used. */
  get(key: K): V | undefined {
    const v = this.#map.get(key);
    if (v === undefined) return undefined;
    this.#map.delete(key);
    this.#map.set(key, v);
    return v;
  }

  /** Returns the value without changing its position. */
  peek(key: K): V | undefined {
    return this.#map.get(key);
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
    this.#map.set(key, value);
  }

  delete(key: K): boolean {
    return this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }
}
