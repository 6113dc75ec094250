// `tessera status`: the daemon at a glance for a person (health, policy, rules, counters
// grouped, PUs), the whole status as JSON for a program. Tolerates daemons of earlier
// versions: `policy` was a name (now an object), `health` and `rules` may be absent.

import { createApiClient, type PuInfo, type StatusResponse } from '../api/index.js';
import { parseCommand } from './spec.js';
import { statusSpec } from './commands.js';
import { fixedRow, humanDuration, paint, table, type CliIo } from './output.js';
import { printHelp, socketPath } from './common.js';

interface PolicyStatus {
  source: string;
  revision: string;
  loadedAt: string;
  warnings: string[];
  lastError?: { message: string; at: string };
}
interface Health {
  state: 'ok' | 'degraded';
  problems: { component: string; message: string; since: string }[];
}
/** What a daemon of this or an earlier version sends. */
export type StatusView = Omit<StatusResponse, 'policy' | 'rules'> & {
  policy: string | PolicyStatus;
  rules?: StatusResponse['rules'];
  health?: Health;
};

function labels(l: readonly string[] | null): string {
  return l && l.length ? l.join(',') : '-';
}

export function formatPu(p: PuInfo): string[] {
  const lines = [`${p.id}  ${p.kind}  ${p.name}`, `  labels:  ${labels(p.labels)}`, `  classid: ${p.classid}  pids: ${p.pids.join(',') || '-'}  listening: ${p.ports.join(',') || '-'}`];
  for (const r of p.posture) lines.push(`  risk:    ${r.flag} (fix: ${r.fix})`);
  return lines;
}

/** Counters grouped by their first word: "flows_accepted" is "accepted" under "flows". */
export function groupCounters(counters: Record<string, number>): [string, [string, number][]][] {
  const groups = new Map<string, [string, number][]>();
  for (const [k, v] of Object.entries(counters)) {
    if (k === 'uptime_seconds') continue;
    const at = k.indexOf('_');
    const [group, name] = at < 0 ? [k, ''] : [k.slice(0, at), k.slice(at + 1)];
    if (!groups.has(group)) groups.set(group, []);
    groups.get(group)!.push([name, v]);
  }
  return [...groups];
}

export function renderStatus(s: StatusView, io: Pick<CliIo, 'tty' | 'color'>): string[] {
  const c = io.color;
  const out: string[] = [];
  const field = (k: string, v: string): number => out.push(`  ${k.padEnd(9)} ${v}`);
  const uptime = s.counters.uptime_seconds;
  out.push(paint(c, 'bold', 'daemon'));
  field('host', `${s.host}  trust ${s.trust}  queues ${s.queues.join(',')}  ${s.failOpen ? paint(c, 'yellow', 'FAIL-OPEN') : 'fail-closed'}${uptime !== undefined ? `  up ${humanDuration(uptime)}` : ''}`);
  if (s.health) {
    field('health', s.health.state === 'ok' ? paint(c, 'green', 'ok') : paint(c, 'red', 'DEGRADED'));
    for (const p of s.health.problems) out.push(`            ${p.component}: ${p.message} (since ${p.since})`);
  }
  if (s.rules) {
    const r = s.rules;
    const last = r.lastFailure ? ` (last failure ${r.lastFailure.at}: ${r.lastFailure.error})` : '';
    field('rules', r.ok ? `${paint(c, 'green', 'ok')} since ${r.since}${last}` : `${paint(c, 'red', 'FAILING')} since ${r.since}: ${r.error ?? 'unknown error'} (new PUs are refused; retried every 10 s)`);
  }
  if (typeof s.policy === 'string') field('policy', s.policy);
  else {
    const p = s.policy;
    field('policy', `${p.source}  revision ${p.revision}  loaded ${p.loadedAt}`);
    for (const w of p.warnings) out.push(`            ${paint(c, 'yellow', 'warning')}: ${w}`);
    if (p.lastError) out.push(`            ${paint(c, 'red', 'reload refused')} ${p.lastError.at}: ${p.lastError.message} (the policy above still runs)`);
  }
  if (s.learn) {
    // Learn mode (docs/learning.md): how many PUs run in each mode, and the edge table's fill.
    const n: Record<string, number> = {};
    for (const m of Object.values(s.learn.modes)) n[m] = (n[m] ?? 0) + 1;
    const modes = Object.keys(n).sort().map((m) => `${m} ${n[m]}`).join(', ') || 'no PUs';
    field('modes', `${modes}; ${s.learn.edges} edges observed (bound ${s.learn.maxEdges}${s.learn.dropped ? `, ${s.learn.dropped} not recorded: table full` : ''})`);
  }
  out.push('', paint(c, 'bold', 'counters'));
  // One row per group, its counters in aligned columns: "flows  accepted 10  rejected 2".
  const rows = groupCounters(s.counters).map(([g, entries]) => [g, ...entries.map(([n, v]) => (n ? `${n} ${v}` : String(v)))]);
  const widths = rows.reduce<number[]>((w, r) => r.map((c, i) => Math.max(w[i] ?? 0, c.length)), []);
  for (const r of rows) out.push(`  ${fixedRow(r, widths.map((w) => w + 1))}`);
  out.push('', paint(c, 'bold', `PUs (${s.pus.length})`));
  if (s.pus.length === 0) out.push('  no PUs');
  else if (io.tty) {
    const rows = s.pus.map((p) => [p.id, p.kind, labels(p.labels), p.ports.join(',') || '-', p.pids.join(',') || '-', p.classid, p.name]);
    out.push(...table(['ID', 'KIND', 'LABELS', 'PORTS', 'PIDS', 'CLASSID', 'NAME'], rows, c).map((l) => `  ${l}`));
    for (const p of s.pus) for (const r of p.posture) out.push(`  ${paint(c, 'yellow', 'risk:')}    ${p.id}: ${r.flag} (fix: ${r.fix})`);
  } else for (const p of s.pus) out.push(...formatPu(p));
  return out;
}

export async function statusCommand(args: string[], io: CliIo): Promise<number> {
  const parsed = parseCommand(statusSpec, args);
  if (parsed === 'help') return printHelp('status', io);
  const { values } = parsed;
  const s = (await createApiClient(socketPath(values.socket)).status()) as unknown as StatusView;
  if (values.json) io.out(JSON.stringify(s, null, 2));
  else for (const l of renderStatus(s, io)) io.out(l);
  return 0;
}
