// Counters read from a daemon's Prometheus text (local API), for integration tests that
// assert counts: tessera_reasons_total by reason, or any metric summed over its queues.

import { createApiClient } from '../../src/api/index.js';

/** Each match of `re` (group 1 = key, group 2 = value) in the daemon's metrics, summed by key. */
export async function metricSums(socket: string, re: RegExp): Promise<Record<string, number>> {
  const text = await createApiClient(socket).metrics();
  const r: Record<string, number> = {};
  for (const m of text.matchAll(re)) r[m[1]!] = (r[m[1]!] ?? 0) + Number(m[2]);
  return r;
}

/** tessera_reasons_total by reason, summed over the queues; without 'ok' (every packet has a reason, so 'ok' counts the accepted and passed ones). */
export const reasonCounts = (socket: string): Promise<Record<string, number>> =>
  metricSums(socket, /^tessera_reasons_total\{[^}]*reason="((?!ok")[^"]+)"[^}]*\} (\d+)$/gm);
