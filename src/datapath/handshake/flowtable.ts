// The handshake's per-connection tables without a string per lookup: keys are 11 int32 words
// (address length, client address, server address, ports, ISN) written by the caller into
// `key`, hashed with a per-table random seed, and kept in typed arrays; values in a plain
// array beside them. Bounded like identity's Lru (two generations: a full young generation
// becomes the old one and the previous old one is dropped whole), and the values of a
// dropped generation are handed to `recycle`, so a steady stream of connections reuses the
// same value objects instead of allocating one each.
//
// Why not Lru<string, V>: building the key string (String.fromCharCode over the tuple) and
// hashing it cost more per lookup than the rest of a pass's table work, and each string is
// garbage a moment later; a handshake pass does three to four such lookups.
//
// Open addressing with linear probing; deletes leave tombstones, which count toward a
// generation's fill (a generation is cleared when it is dropped), so probes stay short: at
// most half of a generation's slots are ever in use. Seeded hashing keeps an attacker who
// chooses ports and ISNs from aiming at one probe chain.

import { randomFillSync } from 'node:crypto';
import type { TupleView } from './v2/types.js';

export const KEY_WORDS = 11;
const EMPTY = 0;
const USED = 1;
const GONE = 2;
const MIN_SLOTS = 64;

class Generation<V> {
  keys: Int32Array;
  state: Uint8Array;
  vals: Array<V | undefined>;
  /** Slots used or tombstoned since the last clear (what probes walk over). */
  filled = 0;
  live = 0;
  constructor(readonly slots: number) {
    this.keys = new Int32Array(slots * KEY_WORDS);
    this.state = new Uint8Array(slots);
    this.vals = new Array<V | undefined>(slots).fill(undefined);
  }
}

export class FlowTable<V> {
  /** The key of the next get/peek/set/delete: fill all KEY_WORDS words (keyTuple, keyPacket). */
  readonly key = new Int32Array(KEY_WORDS);
  readonly #half: number;
  readonly #maxSlots: number;
  readonly #seed: number;
  readonly #recycle: ((v: V) => void) | undefined;
  #young: Generation<V>;
  #old: Generation<V>;

  /** At most `maxEntries` entries (≥ 1); `recycle` receives the values of a dropped generation. */
  constructor(maxEntries: number, recycle?: (v: V) => void) {
    this.#half = Math.max(1, Math.floor(maxEntries / 2));
    let slots = MIN_SLOTS;
    while (slots < 2 * this.#half) slots *= 2;
    this.#maxSlots = slots;
    const seed = new Int32Array(1);
    randomFillSync(seed);
    this.#seed = seed[0]! | 1;
    this.#recycle = recycle;
    this.#young = new Generation<V>(Math.min(MIN_SLOTS, slots));
    this.#old = new Generation<V>(Math.min(MIN_SLOTS, slots));
  }

  get size(): number {
    return this.#young.live + this.#old.live;
  }

  #hash(k: Int32Array): number {
    let h = this.#seed;
    for (let i = 0; i < KEY_WORDS; i++) {
      h = Math.imul(h ^ k[i]!, 0x9e3779b1);
      h ^= h >>> 15;
    }
    h = Math.imul(h ^ (h >>> 13), 0x85ebca6b);
    return (h ^ (h >>> 16)) >>> 0;
  }

  /** The slot holding `k` in g, or -1. */
  #find(g: Generation<V>, k: Int32Array, h: number): number {
    const mask = g.slots - 1;
    const keys = g.keys;
    for (let s = h & mask, n = 0; n < g.slots; s = (s + 1) & mask, n++) {
      const st = g.state[s]!;
      if (st === EMPTY) return -1;
      if (st === USED) {
        // Last word first: the ISN and ports tell connections apart, the addresses and the
        // address length are mostly the same from one connection to the next.
        const at = s * KEY_WORDS;
        let i = KEY_WORDS - 1;
        while (i >= 0 && keys[at + i] === k[i]) i--;
        if (i < 0) return s;
      }
    }
    return -1;
  }

  #insert(g: Generation<V>, k: Int32Array, h: number, v: V): void {
    const mask = g.slots - 1;
    let s = h & mask;
    while (g.state[s] === USED) s = (s + 1) & mask;
    // A tombstone is reused in place (it was counted in `filled` already).
    if (g.state[s] === EMPTY) g.filled++;
    g.state[s] = USED;
    const at = s * KEY_WORDS;
    for (let i = 0; i < KEY_WORDS; i++) g.keys[at + i] = k[i]!;
    g.vals[s] = v;
    g.live++;
  }

  #remove(g: Generation<V>, s: number): void {
    g.state[s] = GONE;
    g.vals[s] = undefined;
    g.live--;
  }

  /** Room in young for one more entry: grow it (rehash) below the bound, else start a new generation. */
  #room(): void {
    const y = this.#young;
    if (y.live + 1 > this.#half) {
      const dropped = this.#old;
      if (this.#recycle) for (let s = 0; s < dropped.slots; s++) if (dropped.state[s] === USED) this.#recycle(dropped.vals[s]!);
      this.#old = y;
      // Reuse the dropped generation's arrays when they are the full size (steady state: no allocation).
      if (dropped.slots === this.#maxSlots) {
        dropped.state.fill(EMPTY);
        dropped.vals.fill(undefined);
        dropped.filled = 0;
        dropped.live = 0;
        this.#young = dropped;
      } else {
        this.#young = new Generation<V>(this.#maxSlots);
      }
      return;
    }
    if (2 * (y.filled + 1) <= y.slots) return;
    // Mostly tombstones, or simply full for its size: rehash into a table of the right size.
    const slots = Math.min(this.#maxSlots, 2 * y.live + 2 <= y.slots ? y.slots : y.slots * 2);
    const g = new Generation<V>(slots);
    const k = new Int32Array(KEY_WORDS);
    for (let s = 0; s < y.slots; s++) {
      if (y.state[s] !== USED) continue;
      for (let i = 0; i < KEY_WORDS; i++) k[i] = y.keys[s * KEY_WORDS + i]!;
      this.#insert(g, k, this.#hash(k), y.vals[s]!);
    }
    this.#young = g;
  }

  /** The value under `key`, marked recently used. */
  get(): V | undefined {
    const k = this.key;
    const h = this.#hash(k);
    const y = this.#young;
    const s = this.#find(y, k, h);
    if (s >= 0) return y.vals[s];
    const o = this.#old;
    const t = this.#find(o, k, h);
    if (t < 0) return undefined;
    const v = o.vals[t]!;
    this.#remove(o, t);
    this.#room();
    this.#insert(this.#young, k, h, v);
    return v;
  }

  /** The value under `key`, without marking it used. */
  peek(): V | undefined {
    const k = this.key;
    const h = this.#hash(k);
    const s = this.#find(this.#young, k, h);
    if (s >= 0) return this.#young.vals[s];
    const t = this.#find(this.#old, k, h);
    return t >= 0 ? this.#old.vals[t] : undefined;
  }

  /** Insert or replace the value under `key` (marked recently used). */
  set(v: V): void {
    const k = this.key;
    const h = this.#hash(k);
    const s = this.#find(this.#young, k, h);
    if (s >= 0) {
      this.#young.vals[s] = v;
      return;
    }
    const t = this.#find(this.#old, k, h);
    if (t >= 0) this.#remove(this.#old, t);
    this.#room();
    this.#insert(this.#young, k, h, v);
  }

  delete(): boolean {
    const k = this.key;
    const h = this.#hash(k);
    for (const g of [this.#young, this.#old]) {
      const s = this.#find(g, k, h);
      if (s >= 0) {
        this.#remove(g, s);
        return true;
      }
    }
    return false;
  }
}

/**
 * An empty free list for recycled values. A `[]` literal starts with Smi elements, and the
 * first object pushed (at a table's first rotation) changes its map: the optimized passes
 * that pop from it were deoptimized then. This one holds objects from the start.
 */
export function freeList<V extends object>(): V[] {
  const a: object[] = [{}];
  a.pop();
  return a as V[];
}

function addrWords(k: Int32Array, at: number, b: Uint8Array, off: number, len: number): void {
  for (let w = 0; w < 4; w++) {
    const p = off + w * 4;
    k[at + w] = w * 4 < len ? (b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]! : 0;
  }
}

/** The key of a connection by role (TupleView) and client ISN. */
export function keyTuple(k: Int32Array, t: TupleView, isnC: number): void {
  k[0] = t.addrLength;
  addrWords(k, 1, t.buf, t.clientAddrOffset, t.addrLength);
  addrWords(k, 5, t.buf, t.serverAddrOffset, t.addrLength);
  k[9] = (t.clientPort << 16) | t.serverPort;
  k[10] = isnC | 0;
}

/** The key of a packet's direction (source, destination, ports) and a number (an ISN, or 0). */
export function keyPacket(k: Int32Array, buf: Uint8Array, srcOff: number, dstOff: number, addrLength: number, srcPort: number, dstPort: number, n: number): void {
  k[0] = addrLength;
  addrWords(k, 1, buf, srcOff, addrLength);
  addrWords(k, 5, buf, dstOff, addrLength);
  k[9] = (srcPort << 16) | dstPort;
  k[10] = n | 0;
}
