// The promotion guard (issue 15, optional part): after a policy change moves some PU to
// enforce, watch the refusal counter; if refusals in a window exceed `factor` times what the
// same window held before the change (and at least `minRefusals`), report it once, so the
// operator can go back to audit (`tessera policy promote SELECTOR --to audit`). It reports,
// it never reverts by itself. Pure: the daemon feeds it samples of the cumulative counter.

export interface GuardOptions {
  /** The window refusals are counted in (default 60 s). */
  readonly windowMs?: number;
  /** How much more than before counts as a spike (default 5×). */
  readonly factor?: number;
  /** Fewer refusals than this in a window are never a spike (default 20). */
  readonly minRefusals?: number;
  /** How long after the change the guard watches (default 10 min). */
  readonly watchMs?: number;
}

export interface GuardAlert {
  readonly at: number;
  readonly why: string;
  readonly refusals: number;
  readonly before: number;
  readonly message: string;
}

export class RefusalGuard {
  private readonly windowMs: number;
  private readonly factor: number;
  private readonly minRefusals: number;
  private readonly watchMs: number;
  /** (time, cumulative refusals), oldest first, at most the window before plus the watch. */
  private samples: Array<[number, number]> = [];
  private armed: { at: number; why: string; before: number } | null = null;
  last: GuardAlert | null = null;

  constructor(o: GuardOptions = {}) {
    this.windowMs = o.windowMs ?? 60_000;
    this.factor = o.factor ?? 5;
    this.minRefusals = o.minRefusals ?? 20;
    this.watchMs = o.watchMs ?? 600_000;
  }

  /** Refusals counted in (t - windowMs, t], from the samples. */
  private inWindow(t: number): number {
    let lo: number | null = null;
    let hi: number | null = null;
    for (const [at, total] of this.samples) {
      if (at <= t - this.windowMs) lo = total;
      if (at <= t) hi = total;
    }
    const first = this.samples[0]?.[1] ?? 0;
    return Math.max(0, (hi ?? first) - (lo ?? first));
  }

  /** A policy change made some PU enforce: watch from now. */
  arm(now: number, why: string): void {
    this.armed = { at: now, why, before: this.inWindow(now) };
  }

  /** One reading of the cumulative refusal counter; returns an alert the first time a spike is seen. */
  sample(now: number, totalRefusals: number): GuardAlert | null {
    this.samples.push([now, totalRefusals]);
    const keep = now - this.windowMs - this.watchMs;
    while (this.samples.length > 2 && this.samples[1]![0] <= keep) this.samples.shift();
    const a = this.armed;
    if (a === null) return null;
    if (now - a.at > this.watchMs) {
      this.armed = null;
      return null;
    }
    const after = this.inWindow(now);
    if (after < this.minRefusals || after <= this.factor * Math.max(a.before, 1)) return null;
    this.armed = null;
    const secs = Math.round(this.windowMs / 1000);
    this.last = {
      at: now,
      why: a.why,
      refusals: after,
      before: a.before,
      message: `refusals spiked after ${a.why}: ${after} in ${secs} s, ${a.before} in ${secs} s before it; if the application broke, go back with tessera policy promote SELECTOR --to audit`,
    };
    return this.last;
  }
}
