// The server's strike register: every SYN proof accepted within the freshness window, so the
// same proof is accepted once, by whichever worker it reaches. docs/protocol.md ("No replay",
// "Bounded state") argues the numbers.
//
// Shared by all the host's queue workers: the proofs do not cover the tuple (a NAT rewrites
// it), so a copy replayed from another address is refused only here, and NFQUEUE's
// --queue-balance may hand that copy to another worker than the original. The table lives in
// one SharedArrayBuffer (createRegisterBuffer, made by the pool, passed in workerData):
//
//   Int32 words: [magic, stripes, ways, seed] ‖ lock[stripes], then, 64-byte aligned, one
//   block per stripe, contiguous (a stripe's scan reads its first 12 × ways bytes, in order):
//     expiry[ways] Float64 (ms since the epoch; 0 = empty) ‖ tag[ways] Int32 (the proof's first
//     word) ‖ rest[ways] × 4 Int32 (the proof's words 1-3, the tuple hash)
//
// A proof has two candidate stripes, from its first two words mixed with the buffer's random
// seed; it is looked up in both and recorded in the one with more room ("two choices"). With
// one stripe per proof, stripes fill unevenly (balls into bins): the first 'full' came at
// about 60 % of capacity. With two, the fullest stripe stays within a few slots of the
// average, and the first 'full' comes at about 94 % (above 90 %: test/unit/datapath/v2/register-fill.test.ts
// counts it). The seed keeps a client that grinds its proofs from aiming at chosen stripes.
// A stripe's Int32 lock is a spin lock taken by Atomics.compareExchange (0 = free, else the
// holder's id: the pool frees the locks of a worker that died holding one, releaseHeldBy);
// the two stripes' locks are taken in stripe order, so two workers never wait on each other.
// Everything in a stripe is read and written under its lock. Expired slots are reused in
// place: no timers, no scans on the packet path.
//
// Each entry lives `retentionMs` from its arrival; retention is the width of the freshness
// window (skew + maxAge + skew), so an entry outlives the time its proof could still pass the
// freshness check. A stripe with all its ways live answers 'full' and records nothing: the
// caller refuses the proof. Never 'new' without recording it: an unrecorded accepted proof
// could be accepted a second time.

import { TesseraError } from '../../../errors.js';

/** 'new': recorded now; 'same': live, struck from this tuple; 'seen': live, struck from another tuple; 'full': no room. */
export type Strike = 'new' | 'same' | 'seen' | 'full';

const MAGIC = 0x54535232; // "TSR2"
const HEADER = 4;
/** Bytes per way in a stripe's block: expiry 8, tag 4, rest 16. */
const WAY_BYTES = 28;
/** 32 ways × two candidate stripes read as much memory per strike as one stripe of 64 did. */
const MAX_WAYS = 32;
/**
 * A stripe lock is first spun for (the critical section is a few dozen operations), then
 * waited for in 1 ms sleeps (Atomics.wait: a holder that lost its CPU on a busy machine gets
 * it back), and given up after about a second (answering 'full': refuse, never accept).
 */
const SPINS = 1 << 14;
const WAITS = 1_000;
/** The table is counted (size) at most this often, by the clock the handle was last given. */
const SIZE_EVERY_MS = 1_000;

/** Byte offset of the first stripe block: after the header and the locks, 64-byte aligned. */
function blocksAt(stripes: number): number {
  return Math.ceil(((HEADER + stripes) * 4) / 64) * 64;
}

/** A register's shared memory for `entries` proofs (rounded up to whole stripes). */
export function createRegisterBuffer(entries: number): SharedArrayBuffer {
  if (!Number.isInteger(entries) || entries < 1 || entries > 1 << 24) {
    throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', `registerEntries must be an integer in 1..${1 << 24}, got ${String(entries)}`);
  }
  const ways = Math.min(MAX_WAYS, entries);
  const stripes = Math.ceil(entries / ways);
  const sab = new SharedArrayBuffer(blocksAt(stripes) + stripes * ways * WAY_BYTES);
  const i32 = new Int32Array(sab, 0, HEADER);
  i32[1] = stripes;
  i32[2] = ways;
  const seed = new Int32Array(1);
  crypto.getRandomValues(seed);
  i32[3] = seed[0]!;
  Atomics.store(i32, 0, MAGIC);
  return sab;
}

function layout(sab: SharedArrayBuffer): { i32: Int32Array; f64: Float64Array; stripes: number; ways: number; seed: number } {
  const head = new Int32Array(sab, 0, HEADER);
  if (Atomics.load(head, 0) !== MAGIC) throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', 'strike register buffer is not one createRegisterBuffer made');
  const stripes = head[1]!;
  const ways = head[2]!;
  // ways × 28 is a multiple of 4 (and of 8 for even ways; 1-way tables are tests): whole views.
  const bytes = sab.byteLength - (sab.byteLength % 8);
  return { i32: new Int32Array(sab, 0, sab.byteLength / 4), f64: new Float64Array(sab, 0, bytes / 8), stripes, ways, seed: head[3]! };
}

/** Free the stripe locks `holder` holds (a worker that ended inside a critical section). Returns how many. */
export function releaseHeldBy(sab: SharedArrayBuffer, holder: number): number {
  const { i32, stripes } = layout(sab);
  let n = 0;
  for (let s = 0; s < stripes; s++) if (Atomics.compareExchange(i32, HEADER + s, holder, 0) === holder) n++;
  return n;
}

export class StrikeRegister {
  readonly capacity: number;
  readonly retentionMs: number;
  readonly #i32: Int32Array;
  readonly #f64: Float64Array;
  readonly #stripes: number;
  readonly #ways: number;
  readonly #holder: number;
  readonly #seed: number;
  /** Byte offset of stripe 0's block, and bytes per block. */
  readonly #blocks: number;
  readonly #block: number;
  #lastNow = 0;
  #sizeAt: number | null = null;
  #size = 0;
  /** Times this handle answered 'full'. */
  full = 0;

  /**
   * `holder` (≥ 1) names this thread in the locks it takes: one per worker of a shared buffer.
   * Without a buffer the register is private (tests, a single engine).
   */
  constructor(capacity: number, retentionMs: number, shared?: { buffer: SharedArrayBuffer; holder: number }) {
    const sab = shared?.buffer ?? createRegisterBuffer(capacity);
    const l = layout(sab);
    this.#i32 = l.i32;
    this.#f64 = l.f64;
    this.#stripes = l.stripes;
    this.#ways = l.ways;
    this.#seed = l.seed;
    this.#blocks = blocksAt(l.stripes);
    this.#block = l.ways * WAY_BYTES;
    this.capacity = l.stripes * l.ways;
    this.retentionMs = retentionMs;
    this.#holder = shared?.holder ?? 1;
    if (!Number.isInteger(this.#holder) || this.#holder < 1) throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', `register holder must be an integer >= 1, got ${String(this.#holder)}`);
  }

  /**
   * Live entries in the whole (shared) table as of the last time this handle was given the
   * clock. Stats only: read without the locks, and a scan of the table, so done at most once
   * per SIZE_EVERY_MS of that clock (the worker asks every 250 ms under load).
   */
  get size(): number {
    const now = this.#lastNow;
    if (this.#sizeAt !== null && now >= this.#sizeAt && now - this.#sizeAt < SIZE_EVERY_MS) return this.#size;
    let n = 0;
    for (let st = 0; st < this.#stripes; st++) {
      const e = (this.#blocks + st * this.#block) / 8;
      for (let w = 0; w < this.#ways; w++) if (this.#f64[e + w]! > now) n++;
    }
    this.#sizeAt = now;
    this.#size = n;
    return n;
  }

  /** Entries whose retention has passed at `now` stop counting; their slots are reused when next touched. */
  expire(now: number): void {
    if (now > this.#lastNow) this.#lastNow = now;
  }

  /**
   * Has the proof whose first 16 bytes are `mac` been struck within the retention, and from
   * which tuple? Records it (with `tupleHash`) when not, and when one of its stripes has room.
   */
  strike(mac: Uint8Array, tupleHash: number, now: number): Strike {
    return this.strikeAt(mac, 0, tupleHash, now);
  }

  /** strike() for the proof at buf[at..at+16) (no view made). */
  strikeAt(buf: Uint8Array, at: number, tupleHash: number, now: number): Strike {
    this.expire(now);
    const k0 = word(buf, at);
    const k1 = word(buf, at + 4);
    const k2 = word(buf, at + 8);
    const k3 = word(buf, at + 12);
    const s1 = mix(k0 ^ this.#seed) % this.#stripes;
    const s2 = mix(k1 ^ ~this.#seed) % this.#stripes;
    const lo = s1 < s2 ? s1 : s2;
    const hi = s1 < s2 ? s2 : s1;
    const i32 = this.#i32;
    if (!this.#lock(lo)) return this.#refuse();
    if (hi !== lo && !this.#lock(hi)) {
      Atomics.store(i32, HEADER + lo, 0);
      return this.#refuse();
    }
    let answer: Strike = 'full';
    const a = this.#scan(s1, k0, k1, k2, k3, tupleHash, now);
    if (a < -2) {
      answer = a === SAME ? 'same' : 'seen';
    } else {
      const b = hi === lo ? a : this.#scan(s2, k0, k1, k2, k3, tupleHash, now);
      if (b < -2) {
        answer = b === SAME ? 'same' : 'seen';
      } else {
        // Free slot counts were kept in #freeIn: record in the stripe with more room.
        const free = b >= 0 && this.#lastFree > this.#firstFree ? b : a >= 0 ? a : b;
        if (free >= 0) {
          // free = the way's byte offset (see #scan).
          const w = this.#way(free);
          const base = free - w * 8;
          const tag = (base + this.#ways * 8) / 4 + w;
          const rest = (base + this.#ways * 12) / 4 + w * 4;
          i32[tag] = k0;
          i32[rest] = k1;
          i32[rest + 1] = k2;
          i32[rest + 2] = k3;
          i32[rest + 3] = tupleHash | 0;
          this.#f64[free / 8] = now + this.retentionMs;
          answer = 'new';
        }
      }
    }
    if (hi !== lo) Atomics.store(i32, HEADER + hi, 0);
    Atomics.store(i32, HEADER + lo, 0);
    if (answer === 'full') this.full++;
    return answer;
  }

  #refuse(): Strike {
    this.full++;
    return 'full';
  }

  #lock(stripe: number): boolean {
    const i32 = this.#i32;
    const lock = HEADER + stripe;
    for (let spins = 0; spins < SPINS; spins++) if (Atomics.compareExchange(i32, lock, 0, this.#holder) === 0) return true;
    for (let waits = 0; waits < WAITS; waits++) {
      const held = Atomics.compareExchange(i32, lock, 0, this.#holder);
      if (held === 0) return true;
      Atomics.wait(i32, lock, held, 1);
    }
    return false;
  }

  /** Free slots of the last two stripes scanned (first, then second). */
  #firstFree = 0;
  #lastFree = 0;

  /** The way of a free slot (its expiry's byte offset) within its stripe's block. */
  #way(byteOffset: number): number {
    return ((byteOffset - this.#blocks) % this.#block) / 8;
  }

  /**
   * One stripe, under its lock: SAME or SEEN when the proof is live there, else the byte
   * offset of the first free way's expiry (-1: none), with the stripe's free way count in
   * #lastFree (the previous scan's moved to #firstFree).
   */
  #scan(stripe: number, k0: number, k1: number, k2: number, k3: number, tupleHash: number, now: number): number {
    const i32 = this.#i32;
    const f64 = this.#f64;
    const ways = this.#ways;
    const base = this.#blocks + stripe * this.#block;
    const exp = base / 8;
    const tag = (base + ways * 8) / 4;
    const rest = (base + ways * 12) / 4;
    let free = -1;
    let count = 0;
    this.#firstFree = this.#lastFree;
    for (let w = 0; w < ways; w++) {
      if (f64[exp + w]! > now) {
        if (i32[tag + w] !== k0) continue;
        const p = rest + w * 4;
        if (i32[p] === k1 && i32[p + 1] === k2 && i32[p + 2] === k3) return i32[p + 3] === (tupleHash | 0) ? SAME : SEEN;
      } else {
        if (free === -1) free = base + w * 8;
        count++;
      }
    }
    this.#lastFree = count;
    return free;
  }
}

const SAME = -3;
const SEEN = -4;

/** A 32-bit finalizer (murmur3's): spreads every input bit over the stripe index. */
function mix(x: number): number {
  let h = x | 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function word(b: Uint8Array, p: number): number {
  return (b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!;
}
