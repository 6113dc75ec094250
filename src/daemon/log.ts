// The one root logger. Components take a child ({ component }) of it. Secrets are redacted.
// JSON lines (NDJSON) for collectors when stdout is not a terminal; readable lines, in the
// manner of pino-pretty, when a person watches it in a terminal. Our own small formatter
// rather than pino-pretty: the daemon needs one line layout, not pino-pretty's ~20
// dependencies and its worker-thread transport inside a process that already runs
// datapath workers.

import pino, { type Logger } from 'pino';

const LEVELS: Record<number, { name: string; color: number }> = {
  10: { name: 'TRACE', color: 90 },
  20: { name: 'DEBUG', color: 36 },
  30: { name: 'INFO', color: 32 },
  40: { name: 'WARN', color: 33 },
  50: { name: 'ERROR', color: 31 },
  60: { name: 'FATAL', color: 35 },
};
const HIDDEN = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'component']);

function value(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/** One NDJSON log line as "12:00:01.234 INFO  flow: message key=value ..." (no newline). */
export function prettyLine(json: string, color = false): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.trimEnd();
  }
  const lv = LEVELS[o.level as number] ?? { name: String(o.level), color: 0 };
  const time = typeof o.time === 'string' ? o.time.slice(11, 23) : typeof o.time === 'number' ? new Date(o.time).toISOString().slice(11, 23) : '';
  const level = color ? `\x1b[${lv.color}m${lv.name.padEnd(5)}\x1b[0m` : lv.name.padEnd(5);
  const component = typeof o.component === 'string' ? `${o.component}: ` : '';
  const fields = Object.entries(o)
    .filter(([k]) => !HIDDEN.has(k))
    .map(([k, v]) => `${color ? `\x1b[2m${k}=\x1b[0m` : `${k}=`}${value(v)}`);
  return [time, level, `${component}${String(o.msg ?? '')}`, ...fields].filter(Boolean).join(' ');
}

export interface LoggerOptions {
  /** Readable lines instead of NDJSON (default: stdout is a terminal). */
  pretty?: boolean;
  color?: boolean;
  /** Where lines go (default stdout). */
  write?: (text: string) => void;
}

export function createLogger(level: string, opts: LoggerOptions = {}): Logger {
  const pretty = opts.pretty ?? !!process.stdout.isTTY;
  const color = opts.color ?? (!!process.stdout.isTTY && !process.env.NO_COLOR && process.env.TERM !== 'dumb');
  const write = opts.write;
  const options = {
    level,
    base: { pid: process.pid },
    redact: { paths: ['secret', 'psk', 'key', '*.secret', '*.privateKey', 'token'], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (!pretty && !write) return pino(options);
  const out = write ?? ((t: string) => void process.stdout.write(t));
  return pino(options, { write: (line: string) => out(pretty ? prettyLine(line, color) + '\n' : line) });
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
