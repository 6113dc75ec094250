// Exponential backoff with jitter for reconnects and relists, so a fleet that lost etcd does
// not come back as one synchronized storm (Cilium #22037/#23467). Pure apart from `random`.

export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  random?: () => number;
}

export interface Backoff {
  /** The delay before the next attempt: half the exponential step, plus up to half again at random. */
  next(): number;
  reset(): void;
  readonly attempts: number;
}

export function createBackoff(opts: BackoffOptions): Backoff {
  const random = opts.random ?? Math.random;
  let attempts = 0;
  return {
    next() {
      const step = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.min(attempts, 30));
      attempts++;
      return Math.round(step / 2 + random() * (step / 2));
    },
    reset() {
      attempts = 0;
    },
    get attempts() {
      return attempts;
    },
  };
}
