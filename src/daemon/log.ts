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
