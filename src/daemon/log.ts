// The one root logger. Components take a child ({ component }) of it. Secrets are redacted.

import pino, { type Logger } from 'pino';

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    redact: { paths: ['secret', 'psk', 'key', '*.secret', '*.privateKey', 'token'], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

/** Log an error at most once per `everyMs` per key, counting the ones suppressed. */
export function rateLimited(log: Logger, everyMs = 10_000): (key: string, obj: object, msg: string) => void {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (key, obj, msg) => {
    const now = Date.now();
    const e = last.get(key);
    if (e && now - e.at < everyMs) {
      e.suppressed++;
      return;
    }
    log.warn({ ...obj, suppressed: e?.suppressed ?? 0 }, msg);
    last.set(key, { at: now, suppressed: 0 });
  };
}

/**
 * A per-second budget of refusal log lines per reason code. A peer can make refusals at
 * packet rate (a SYN flood with bad tokens), and one log line per refusal would let it grow
 * the log as fast; accepted flows need a valid handshake and are not limited. Suppressed
 * refusals are still counted in the metrics and kept in `tessera flows`; `drain()` returns
 * how many lines each reason lost since the last call, for one summary line.
 */
export function createRefusalLogBudget(perSecondPerReason: number, now: () => number = Date.now): {
  allow(reason: string): boolean;
  drain(): Record<string, number> | null;
} {
  let second = -1;
  const used = new Map<string, number>();
  let suppressed: Record<string, number> = {};
  let any = false;
  return {
    allow(reason) {
      const s = Math.floor(now() / 1000);
      if (s !== second) {
        second = s;
        used.clear();
      }
      const n = (used.get(reason) ?? 0) + 1;
      used.set(reason, n);
      if (n <= perSecondPerReason) return true;
      suppressed[reason] = (suppressed[reason] ?? 0) + 1;
      any = true;
      return false;
    },
    drain() {
      if (!any) return null;
      const out = suppressed;
      suppressed = {};
      any = false;
      return out;
    },
  };
}
