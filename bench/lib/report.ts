// Pure summary and formatting of benchmark samples: medians per scenario, ratios, the
// markdown table and the two issue targets. No I/O, so it is tested without root.

/** What bench/c/client.c prints for short connections. */
export interface ClientResult {
  connections: number;
  errors: number;
  timeouts: number;
  /** Finished after the deadline, not counted (so no half-open handshake leaks into the next run). */
  drained: number;
  abandoned: number;
  seconds: number;
  connPerSec: number;
  connectP50Us: number;
  connectP99Us: number;
  connectMeanUs: number;
  totalP50Us: number;
  totalP99Us: number;
  /** Failed connections by errno name (ETIMEDOUT: our own per-connection timeout). */
  errnos?: Record<string, number>;
}

/** What bench/c/client.c prints with --bulk. */
export interface BulkResult {
  bytes: number;
  seconds: number;
  mbPerSec: number;
  complete: boolean;
  errors: number;
}

/** One scenario measured once (one round of the round-robin). */
export interface RunSample {
  scenario: string;
  run: number;
  rate?: ClientResult;
  latency?: ClientResult;
  /** utime+stime of every handler process (both hosts) during the rate phase, µs. */
  handlerCpuUs?: number;
  /** The part of handlerCpuUs spent in the handlers' main threads (a Node handler's control plane). */
  handlerMainThreadCpuUs?: number;
  bulk?: BulkResult;
  /** TIME_WAIT sockets in the server host when the rate phase started. */
  serverTimeWait?: number;
  /** Why this run produced no (or partial) numbers. */
  failure?: string;
}

export interface ScenarioRow {
  id: string;
  title: string;
  passes: number;
  runs: number;
  /** Successful connections over every phase of every run. */
  connections: number;
  /** Failed connections (refused, reset, timed out) over every phase of every run. */
  errors: number;
  /** The errors by errno name. */
  errnos: Record<string, number>;
  failures: string[];
  connPerSec: number | null;
  ratioToBaseline: number | null;
  connectP50Us: number | null;
  addedP50Us: number | null;
  connectP99Us: number | null;
  handlerCpuUsPerConn: number | null;
  ratioToCAccept: number | null;
  bulkMBps: number | null;
  /** Per-run values behind the medians, in run order. */
  samples: { connPerSec: number[]; connectP50Us: number[]; connectP99Us: number[]; handlerCpuUsPerConn: number[]; bulkMBps: number[] };
}

export interface Target {
  name: string;
  value: number | null;
  op: '>=' | '<=' | '<';
  target: number;
  pass: boolean | null;
  note?: string;
}

export interface ScenarioInfo {
  id: string;
  title: string;
  passes: number;
}

export const BASELINE_ID = 'baseline';
export const C_ACCEPT_ID = 'c-accept';
export const TESSERA_ACCEPT_ID = 'tessera-accept';
export const TESSERA_CA_ID = 'tessera-ca';
export const TESSERA_CA_POLICY_ID = 'tessera-ca-policy50';
export const NFQUEUE_NPM_ID = 'nfqueue-npm';
/** The daemon's own rules and PUs with an accept-all handler: four queue passes, no protocol work. */
export const TESSERA_FLOOR4_ID = 'tessera-daemon-accept';

/** Median of the finite values; null when there are none. */
export function median(values: readonly number[]): number | null {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

function ratio(a: number | null, b: number | null): number | null {
  return a === null || b === null || b === 0 ? null : a / b;
}

/** Medians per scenario, in the order given; ratios against baseline and C accept-all. */
export function summarize(scenarios: readonly ScenarioInfo[], samples: readonly RunSample[]): ScenarioRow[] {
  const rows = scenarios.map((s): ScenarioRow => {
    const mine = samples.filter((x) => x.scenario === s.id);
    const cps = mine.flatMap((x) => (x.rate && x.rate.connections > 0 ? [x.rate.connPerSec] : []));
    const p50 = mine.flatMap((x) => (x.latency && x.latency.connections > 0 ? [x.latency.connectP50Us] : []));
    const p99 = mine.flatMap((x) => (x.latency && x.latency.connections > 0 ? [x.latency.connectP99Us] : []));
    const cpu = mine.flatMap((x) =>
      x.rate && x.rate.connections > 0 && x.handlerCpuUs !== undefined ? [x.handlerCpuUs / x.rate.connections] : [],
    );
    const bulk = mine.flatMap((x) => (x.bulk && x.bulk.complete ? [x.bulk.mbPerSec] : []));
    const phases = mine.flatMap((x) => [x.rate, x.latency].filter((r): r is ClientResult => r !== undefined));
    const errnos: Record<string, number> = {};
    for (const p of phases) for (const [k, n] of Object.entries(p.errnos ?? {})) errnos[k] = (errnos[k] ?? 0) + n;
    return {
      id: s.id,
      title: s.title,
      passes: s.passes,
      runs: mine.length,
      connections: phases.reduce((n, r) => n + r.connections, 0),
      errors: phases.reduce((n, r) => n + r.errors, 0) + mine.reduce((n, x) => n + (x.bulk?.errors ?? 0), 0),
      errnos,
      failures: mine.flatMap((x) => (x.failure ? [`run ${x.run}: ${x.failure}`] : [])),
      connPerSec: median(cps),
      ratioToBaseline: null,
      connectP50Us: median(p50),
      addedP50Us: null,
      connectP99Us: median(p99),
      // A scenario without handlers has no handler CPU at all, not an unknown one.
      handlerCpuUsPerConn: s.passes === 0 ? 0 : median(cpu),
      ratioToCAccept: null,
      bulkMBps: median(bulk),
      samples: { connPerSec: cps, connectP50Us: p50, connectP99Us: p99, handlerCpuUsPerConn: cpu, bulkMBps: bulk },
    };
  });
  const base = rows.find((r) => r.id === BASELINE_ID);
  const c = rows.find((r) => r.id === C_ACCEPT_ID);
  for (const r of rows) {
    r.ratioToBaseline = ratio(r.connPerSec, base?.connPerSec ?? null);
    r.addedP50Us = r.connectP50Us === null || !base || base.connectP50Us === null ? null : r.connectP50Us - base.connectP50Us;
    r.ratioToCAccept = ratio(r.connPerSec, c?.connPerSec ?? null);
  }
  return rows;
}

/** The issue targets, computed from the rows: reported, never asserted. */
export function targets(rows: readonly ScenarioRow[], opts: { bulk?: boolean } = {}): Target[] {
  const row = (id: string): ScenarioRow | undefined => rows.find((r) => r.id === id);
  const t = row(TESSERA_ACCEPT_ID);
  const c = row(C_ACCEPT_ID);
  const base = row(BASELINE_ID);
  const ca = row(TESSERA_CA_ID);
  const npm = row(NFQUEUE_NPM_ID);
  const floor4 = row(TESSERA_FLOOR4_ID);
  const absent = (need: Record<string, ScenarioRow | undefined>): string | undefined => {
    const gone = Object.entries(need).filter(([, r]) => !r).map(([id]) => id);
    return gone.length ? `${gone.join(', ')} not measured` : undefined;
  };
  const mk = (name: string, value: number | null, op: '>=' | '<=' | '<', target: number, missing: string | undefined): Target => {
    const pass = value === null ? null : op === '>=' ? value >= target : op === '<=' ? value <= target : value < target;
    const note = value === null ? (missing ?? 'not computable from this run') : undefined;
    return note === undefined ? { name, value, op, target, pass } : { name, value, op, target, pass, note };
  };
  // A ratio of added latencies only means something when C adds a positive amount.
  const added = t && c && c.addedP50Us !== null && c.addedP50Us > 0 && t.addedP50Us !== null ? t.addedP50Us / c.addedP50Us : null;
  const out = [
    mk('tessera accept-all conn/s / C accept-all conn/s', t && c ? ratio(t.connPerSec, c.connPerSec) : null, '>=', 0.95, absent({ [TESSERA_ACCEPT_ID]: t, [C_ACCEPT_ID]: c })),
    mk('tessera added p50 / C added p50', added, '<=', 1.3, absent({ [TESSERA_ACCEPT_ID]: t, [C_ACCEPT_ID]: c })),
    mk('full mutual auth (CA) conn/s / four-pass floor conn/s', ca && floor4 ? ratio(ca.connPerSec, floor4.connPerSec) : null, '>=', 0.85, absent({ [TESSERA_CA_ID]: ca, [TESSERA_FLOOR4_ID]: floor4 })),
    mk('full mutual auth (CA) added connect p50 µs', ca && base ? ca.addedP50Us : null, '<=', 150, absent({ [TESSERA_CA_ID]: ca, [BASELINE_ID]: base })),
    mk(
      'full mutual auth (CA) handler CPU per conn / npm nfqueue accept-all handler CPU per conn',
      ca && npm ? ratio(ca.handlerCpuUsPerConn, npm.handlerCpuUsPerConn) : null,
      '<',
      1,
      absent({ [TESSERA_CA_ID]: ca, [NFQUEUE_NPM_ID]: npm }),
    ),
  ];
  const ca50 = row(TESSERA_CA_POLICY_ID);
  out.push(
    mk('full mutual auth with a 50-rule policy conn/s / without', ca50 && ca ? ratio(ca50.connPerSec, ca.connPerSec) : null, '>=', 0.95, absent({ [TESSERA_CA_POLICY_ID]: ca50, [TESSERA_CA_ID]: ca })),
  );
  if (opts.bulk) {
    out.push(
      mk('full mutual auth (CA) bulk MB/s / baseline bulk MB/s', ca && base ? ratio(ca.bulkMBps, base.bulkMBps) : null, '>=', 0.98, absent({ [TESSERA_CA_ID]: ca, [BASELINE_ID]: base })),
    );
  }
  return out;
}

function fmt(v: number | null, digits = 0): string {
  if (v === null) return '–';
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function fmtSigned(v: number | null, digits = 0): string {
  if (v === null) return '–';
  return (v > 0 ? '+' : '') + fmt(v, digits);
}

export interface TableOptions {
  bulk: boolean;
  skipped: readonly { id: string; title: string; reason: string }[];
}

/** The markdown table, then notes (errors, failures, skips) and the targets. */
export function markdown(rows: readonly ScenarioRow[], tgts: readonly Target[], opts: TableOptions): string {
  const head = [
    'scenario',
    'conn/s (32)',
    'ratio to baseline',
    'connect p50 µs (1)',
    'added p50 vs baseline µs',
    'p99 µs',
    'handler CPU µs/conn',
    'per pass: added p50 µs / CPU µs',
    'ratio to C accept-all conn/s',
  ];
  if (opts.bulk) head.push('bulk MB/s');
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
  for (const r of rows) {
    const cells = [
      r.passes > 0 ? `${r.title}, ${r.passes} passes` : r.title,
      fmt(r.connPerSec),
      fmt(r.ratioToBaseline, 2),
      fmt(r.connectP50Us),
      r.id === BASELINE_ID ? '0' : fmtSigned(r.addedP50Us),
      fmt(r.connectP99Us),
      fmt(r.handlerCpuUsPerConn, 1),
      r.passes > 0 ? `${fmt(r.addedP50Us === null ? null : r.addedP50Us / r.passes, 0)} / ${fmt(r.handlerCpuUsPerConn === null ? null : r.handlerCpuUsPerConn / r.passes, 1)}` : '–',
      fmt(r.ratioToCAccept, 2),
    ];
    if (opts.bulk) cells.push(fmt(r.bulkMBps));
    lines.push(`| ${cells.join(' | ')} |`);
  }
  for (const s of opts.skipped) {
    const cells = [`${s.title}`, `skipped: ${s.reason}`, ...Array<string>(head.length - 2).fill('')];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  const notes: string[] = [];
  for (const r of rows) {
    if (r.errors > 0) {
      const kinds = Object.entries(r.errnos).map(([k, n]) => `${k} ${n}`).join(', ');
      notes.push(`- ${r.id}: ${r.errors} failed connections over ${r.runs} runs${kinds ? ` (${kinds})` : ''}`);
    }
    for (const f of r.failures) notes.push(`- ${r.id} ${f}`);
  }
  const out = [lines.join('\n')];
  if (notes.length) out.push(['Notes:', ...notes].join('\n'));
  out.push(
    [
      'Targets (reported, not asserted):',
      ...tgts.map((t) => {
        const verdict = t.pass === null ? 'n/a' : t.pass ? 'PASS' : 'FAIL';
        const value = t.value === null ? `– (${t.note ?? 'n/a'})` : t.value.toFixed(2);
        return `- ${t.name} = ${value} (target ${t.op} ${t.target}) ${verdict}`;
      }),
    ].join('\n'),
  );
  return out.join('\n\n');
}
