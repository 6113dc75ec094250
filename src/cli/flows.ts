// `tessera flows`: recent and followed authorization decisions, filtered like `hubble
// observe` (client and server labels, verdict, reason, port, since), and `--revoke`.
// Filtering is done here over the API's records, the same for recent and followed ones.

import { createApiClient, type FlowEntry } from '../api/index.js';
import { parseCommand, usageError, type Values } from './spec.js';
import { flowsSpec } from './commands.js';
import { fixedRow, paint, table, type CliIo } from './output.js';
import { printHelp, socketPath } from './common.js';
import { parseLabel } from '../identity/index.js';

export interface FlowFilter {
  verdicts?: readonly string[];
  reasons?: readonly string[];
  /** Each entry: labels that must all be present ("k=v" or a key "k"); entries are alternatives. */
  fromLabels?: readonly (readonly string[])[];
  toLabels?: readonly (readonly string[])[];
  ports?: readonly number[];
  /** Epoch ms. */
  since?: number;
}

function hasLabels(have: readonly string[] | null, want: readonly string[]): boolean {
  return want.every((w) => (w.includes('=') ? !!have?.includes(w) : !!have?.some((l) => l.startsWith(`${w}=`))));
}

/** The client ("from") and server ("to") sides of a decision, whichever host recorded it. */
function sides(f: FlowEntry): { from: readonly string[] | null; to: readonly string[] | null; serverPort: number } {
  return f.direction === 'ingress' ? { from: f.remoteLabels, to: f.localLabels, serverPort: f.localPort } : { from: f.localLabels, to: f.remoteLabels, serverPort: f.remotePort };
}

export function matchFlow(f: FlowEntry, q: FlowFilter): boolean {
  const s = sides(f);
  if (q.verdicts?.length && !q.verdicts.includes(f.verdict)) return false;
  if (q.reasons?.length && !q.reasons.includes(f.reason)) return false;
  if (q.ports?.length && !q.ports.includes(s.serverPort)) return false;
  if (q.fromLabels?.length && !q.fromLabels.some((w) => hasLabels(s.from, w))) return false;
  if (q.toLabels?.length && !q.toLabels.some((w) => hasLabels(s.to, w))) return false;
  if (q.since !== undefined && Date.parse(f.time) < q.since) return false;
  return true;
}

/**
 * "k=v,k2" → ['k=v', 'k2']: each a label or a bare key. One that no record can carry (an
 * empty list, a bad key, a control character) is a usage error, not a filter that never matches.
 */
function labelFilter(flag: string, values: readonly string[]): string[][] {
  return values.map((x) => {
    const want = x.split(',').filter((l) => l !== '');
    if (want.length === 0) throw usageError('flows', `--${flag} needs labels (key=value or key, comma-separated), got "${x}"`);
    for (const l of want) {
      try {
        parseLabel(l.includes('=') ? l : `${l}=`);
      } catch (err) {
        const why = l.includes('=') ? (err as Error).message : `"${l}" is not a label key (1 to 63 of A-Z a-z 0-9 . _ / -, starting with a letter or digit)`;
        throw usageError('flows', `--${flag}: ${why}`);
      }
    }
    return want;
  });
}

export function filterOf(v: Values<typeof flowsSpec>): FlowFilter {
  return {
    verdicts: v.denied ? (v.verdict.length ? v.verdict.filter((x) => x !== 'accept') : ['reject', 'drop']) : v.verdict,
    reasons: v.reason,
    fromLabels: labelFilter('from-label', v['from-label']),
    toLabels: labelFilter('to-label', v['to-label']),
    ports: v.port,
    ...(v.since !== undefined ? { since: v.since } : {}),
  };
}

function formatLabels(labels: readonly string[] | null): string {
  return labels && labels.length ? labels.join(',') : '-';
}

/** One line per decision, stable for grep when piped. */
export function formatFlow(f: FlowEntry): string {
  const who = f.remotePu ? `${f.remoteHost}/${f.remotePu} [${formatLabels(f.remoteLabels)}]` : 'unprotected peer';
  const arrow = f.direction === 'ingress' ? '<-' : '->';
  return `${f.time} ${f.verdict.toUpperCase().padEnd(6)} ${f.reason.padEnd(16)} ${f.localPu ?? '-'} [${formatLabels(f.localLabels)}]:${f.localPort} ${arrow} ${f.remoteAddr}:${f.remotePort} ${who} rule=${f.ruleId}`;
}

export const FLOW_HEADER = ['TIME', 'VERDICT', 'REASON', 'LOCAL', 'DIR', 'PEER', 'PEER IDENTITY', 'RULE'] as const;
const FLOW_WIDTHS = [12, 7, 16, 28, 3, 22, 32, 0];

/** The cells of a decision in a terminal's table. */
export function flowCells(f: FlowEntry, color?: boolean): string[] {
  const v = f.verdict.toUpperCase();
  return [
    f.time.slice(11, 23),
    paint(color, f.verdict === 'accept' ? 'green' : 'red', v),
    f.reason,
    `${f.localPu ?? '-'} [${formatLabels(f.localLabels)}]:${f.localPort}`,
    f.direction === 'ingress' ? '<-' : '->',
    `${f.remoteAddr}:${f.remotePort}`,
    f.remotePu ? `${f.remoteHost}/${f.remotePu} [${formatLabels(f.remoteLabels)}]` : 'unprotected peer',
    f.ruleId,
  ];
}

async function revoke(v: Values<typeof flowsSpec>, io: CliIo): Promise<number> {
  const cut = await createApiClient(socketPath(v.socket)).revoke(v['dry-run']);
  for (const f of cut) {
    const line = `${f.cut ? 'CUT' : v['dry-run'] ? 'WOULD CUT' : 'GONE'} ${f.direction} ${f.localPu ?? '-'} [${f.localLabels.join(',')}]:${f.localPort} ${f.direction === 'ingress' ? '<-' : '->'} ${f.remoteAddr}:${f.remotePort} [${(f.remoteLabels ?? ['no tessera']).join(',')}] refused by ${f.ruleId}`;
    io.out(v.json ? JSON.stringify(f) : line);
  }
  if (!v.json) io.out(`${cut.length} established connection(s) refused by the current policy${v['dry-run'] ? ' (dry run: nothing cut)' : ''}`);
  return 0;
}

export async function flowsCommand(args: string[], io: CliIo, opts: { now?: number } = {}): Promise<number> {
  const parsed = parseCommand(flowsSpec, args, opts);
  if (parsed === 'help') return printHelp('flows', io);
  const v = parsed.values;
  const filtered = v.verdict.length + v.reason.length + v['from-label'].length + v['to-label'].length + v.port.length > 0 || v.since !== undefined;
  if (v.revoke) {
    if (filtered || v.follow || v.denied) throw usageError('flows', '--revoke takes no filters and no --follow: it re-judges every established connection');
    return revoke(v, io);
  }
  if (v['dry-run']) throw usageError('flows', '--dry-run goes with --revoke');
  const q = filterOf(v);
  const client = createApiClient(socketPath(v.socket));
  const deniedOnly = v.denied || (v.verdict.length > 0 && !v.verdict.includes('accept'));
  if (v.follow) {
    if (io.tty && !v.json) io.out(paint(io.color, 'bold', fixedRow(FLOW_HEADER, FLOW_WIDTHS)));
    const show = (f: FlowEntry): void => {
      if (matchFlow(f, q)) io.out(v.json ? JSON.stringify(f) : io.tty ? fixedRow(flowCells(f, io.color), FLOW_WIDTHS) : formatFlow(f));
    };
    const follower = client.followFlows({ deniedOnly }, show);
    const stop = (): void => follower.stop();
    process.once('SIGINT', stop);
    io.onClosed?.(stop);
    try {
      await follower.done;
    } finally {
      process.off('SIGINT', stop);
    }
    return 0;
  }
  // With filters, ask for all the daemon keeps and keep the latest `limit` that match.
  const all = await client.flows({ deniedOnly, limit: filtered ? 10_000 : v.limit });
  const shown = all.filter((f) => matchFlow(f, q)).slice(-v.limit);
  if (v.json) for (const f of shown) io.out(JSON.stringify(f));
  else if (io.tty) {
    if (shown.length === 0) io.out('no decisions match');
    else for (const l of table(FLOW_HEADER, shown.map((f) => flowCells(f, io.color)), io.color)) io.out(l);
  } else for (const f of shown) io.out(formatFlow(f));
  return 0;
}
