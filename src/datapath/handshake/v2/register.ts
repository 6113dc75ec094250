// The server's strike register: every SYN proof accepted within the freshness window, so the
// same proof is accepted once, by whichever worker it reaches. docs/protocol.md ("No replay",
// "Bounded state") argues the numbers.
//
// Shared by all the host's queue workers: the proofs do not cover the tuple (a NAT rewrites
// it), so a copy replayed from another address is refused only here, and NFQUEUE's
// --queue-balance may hand that copy to another worker than the original. The table lives in
// one SharedArrayBuffer (createRegisterBuffer, made by the pool, passed in workerData):
//
//   Int32 words: [magic, stripes, ways, 0] ‖ lock[stripes] ‖ slot[stripes × ways] × 6 words
//                (the proof's first 4 words, the tuple hash, 0)
//   Float64:     expiry[stripes × ways] (ms since the epoch; 0 = empty), 8-aligned after
//
// A proof goes to stripe (word 0 mod stripes); the stripe's Int32 lock is a spin lock taken by
// Atomics.compareExchange (0 = free, else the holder's id: the pool frees the locks of a worker
// that died holding one, releaseHeldBy). Everything in a stripe is read and written under its
// lock. Expired slots are reused in place: no timers, no scans on the packet path.
//
// Each entry lives `retentionMs` from its arrival; retention is the width of the freshness
// window (skew + maxAge + skew), so an entry outlives the time its proof could still pass the
// freshness check. A stripe with all its ways live answers 'full' and records nothing: the
// caller refuses the proof. Never 'new' without recording it: an unrecorded accepted proof
// could be accepted a second time.

import { TesseraError } from '../../../errors.js';

/** 'new': recorded now; 'same': live, struck from this tuple; 'seen': live, struck from another tuple; 'full': no room. */
export type Strike = 'new' | 'same' | 'seen' | 'full';

const MAGIC = 0x54535231; // "TSR1"
const HEADER = 4;
const SLOT = 6;
const MAX_WAYS = 64;
/** Lock attempts before giving up (answering 'full'): the critical section is a few dozen operations. */
const SPIN_LIMIT = 1 << 22;
/** The table is counted (size) at most this often, by the clock the handle was last given. */
const SIZE_EVERY_MS = 1_000;

/** A register's shared memory for `entries` proofs (rounded up to whole stripes). */
export function createRegisterBuffer(entries: number): SharedArrayBuffer {
  if (!Number.isInteger(entries) || entries < 1 || entries > 1 << 24) {
    throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', `registerEntries must be an integer in 1..${1 << 24}, got ${String(entries)}`);
  }
  const ways = Math.min(MAX_WAYS, entries);
  const stripes = Math.ceil(entries / ways);
  const words = HEADER + stripes + stripes * ways * SLOT;
  const f64At = Math.ceil((words * 4) / 8) * 8;
  const sab = new SharedArrayBuffer(f64At + stripes * ways * 8);
  const i32 = new Int32Array(sab, 0, words);
  i32[1] = stripes;
  i32[2] = ways;
  Atomics.store(i32, 0, MAGIC);
  return sab;
}

function layout(sab: SharedArrayBuffer): { i32: Int32Array; f64: Float64Array; stripes: number; ways: number } {
  const head = new Int32Array(sab, 0, HEADER);
  if (Atomics.load(head, 0) !== MAGIC) throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', 'strike register buffer is not one createRegisterBuffer made');
  const stripes = head[1]!;
  const ways = head[2]!;
  const words = HEADER + stripes + stripes * ways * SLOT;
  const f64At = Math.ceil((words * 4) / 8) * 8;
  return { i32: new Int32Array(sab, 0, words), f64: new Float64Array(sab, f64At, stripes * ways), stripes, ways };
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
    for (let i = 0; i < this.#f64.length; i++) if (this.#f64[i]! > now) n++;
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
   * which tuple? Records it (with `tupleHash`) when not, and when its stripe has room.
   */
  strike(mac: Uint8Array, tupleHash: number, now: number): Strike {
    this.expire(now);
    const k0 = word(mac, 0);
    const k1 = word(mac, 4);
    const k2 = word(mac, 8);
    const k3 = word(mac, 12);
    const s = (k0 >>> 0) % this.#stripes;
    const i32 = this.#i32;
    const f64 = this.#f64;
    const lock = HEADER + s;
    let spins = 0;
    while (Atomics.compareExchange(i32, lock, 0, this.#holder) !== 0) {
      if (++spins >= SPIN_LIMIT) {
        this.full++;
        return 'full';
      }
    }
    let answer: Strike = 'full';
    let free = -1;
    const first = s * this.#ways;
    const slots = HEADER + this.#stripes;
    for (let w = 0; w < this.#ways; w++) {
      const e = first + w;
      const exp = f64[e]!;
      if (exp > now) {
        const at = slots + e * SLOT;
        if (i32[at] === k0 && i32[at + 1] === k1 && i32[at + 2] === k2 && i32[at + 3] === k3) {
          answer = i32[at + 4] === (tupleHash | 0) ? 'same' : 'seen';
          free = -2;
          break;
        }
      } else if (free === -1) free = e;
    }
    if (free >= 0) {
      const at = slots + free * SLOT;
      i32[at] = k0;
      i32[at + 1] = k1;
      i32[at + 2] = k2;
      i32[at + 3] = k3;
      i32[at + 4] = tupleHash | 0;
      f64[free] = now + this.retentionMs;
      answer = 'new';
    }
    Atomics.store(i32, lock, 0);
    if (answer === 'full') this.full++;
    return answer;
  }
}

function word(b: Uint8Array, p: number): number {
  return (b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!;
}
