// The server's strike register: every SYN proof accepted within the freshness window, so the
// same proof is accepted once. docs/protocol.md ("No replay", "Bounded state") argues the
// numbers.
//
// Entries are kept in arrival order in a ring of fixed capacity next to a Map for lookup.
// Each entry lives `retentionMs` from its arrival (server clock); retention is chosen as the
// width of the freshness window (skew + maxAge + skew), so an entry outlives the time its
// proof could still pass the freshness check. Arrival order = expiry order, so expiring is
// popping the ring's head: O(1) per operation, no timers, no scans.
//
// Full (capacity live entries): `strike` answers 'full' and records nothing; the caller
// refuses the proof. Never 'new' without recording it: an unrecorded accepted proof could be
// accepted a second time.

import { TesseraError } from '../../../errors.js';

export type Strike = 'new' | 'seen' | 'full';

export class StrikeRegister {
  readonly capacity: number;
  readonly retentionMs: number;
  readonly #map = new Map<string, number>();
  readonly #keys: string[];
  readonly #times: Float64Array;
  #head = 0;
  #count = 0;
  /** Times 'full' was answered. */
  full = 0;

  constructor(capacity: number, retentionMs: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', `registerEntries must be an integer >= 1, got ${String(capacity)}`);
    }
    this.capacity = capacity;
    this.retentionMs = retentionMs;
    this.#keys = new Array<string>(capacity).fill('');
    this.#times = new Float64Array(capacity);
  }

  get size(): number {
    return this.#count;
  }

  /** Drop the entries whose retention has passed at `now`. */
  expire(now: number): void {
    while (this.#count > 0 && this.#times[this.#head]! + this.retentionMs <= now) {
      const k = this.#keys[this.#head]!;
      // Only if the map still points at this arrival (keys are unique while live, but be exact).
      if (this.#map.get(k) === this.#times[this.#head]) this.#map.delete(k);
      this.#keys[this.#head] = '';
      this.#head = this.#head + 1 === this.capacity ? 0 : this.#head + 1;
      this.#count--;
    }
  }

  /** Has `key` been seen within the retention? Records it when not (and when there is room). */
  strike(key: string, now: number): Strike {
    this.expire(now);
    if (this.#map.has(key)) return 'seen';
    if (this.#count === this.capacity) {
      this.full++;
      return 'full';
    }
    let at = this.#head + this.#count;
    if (at >= this.capacity) at -= this.capacity;
    this.#keys[at] = key;
    this.#times[at] = now;
    this.#map.set(key, now);
    this.#count++;
    return 'new';
  }
}
