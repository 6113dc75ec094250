// The metrics service: the daemon's own counters (typed, owned here) and the Prometheus text
// of GET /metrics, rendered by prom-client from one registry per daemon. The workers' figures
// (packets, verdicts, caches, handling time) are cumulative in the workers; they are read
// once per scrape and exposed as they are, not copied into prom-client counters.

import { Counter, Registry, collectDefaultMetrics } from 'prom-client';
import { HANDLING_BUCKETS_US, type WorkerStats } from '../datapath/index.js';

/** The daemon's own events. Each is `tessera_<name>_total` in Prometheus and `<name>` in status. */
export const COUNTERS = {
  flows_accepted: 'Flow records with an accept verdict.',
  flows_rejected: 'Flow records with a reject or drop verdict.',
  pus_created: 'PUs created (processes and containers).',
  pus_removed: 'PUs removed.',
  rule_transactions: 'Host rule transactions that changed the kernel.',
  datapath_errors: 'Errors reported by datapath workers.',
  policy_reloads: 'Policy files reloaded and applied.',
  policy_reload_errors: 'Policy reloads refused (the running policy stayed).',
  containers_enrolled: 'Containers enrolled by the runtime shim before their start.',
} as const;
export type CounterName = keyof typeof COUNTERS;

export interface MetricsSources {
  /** Per-worker cumulative figures (Datapath.stats()). */
  workerStats(): WorkerStats[];
  puCount(): number;
  /** 1 when /readyz would answer 200. */
  ready(): boolean;
  /** --cluster: the follower's view (docs/cluster.md); null without a fleet. */
  fleet?(): { policyRevision: number | null; staleSeconds: number | null; synced: boolean; refused: number } | null;
}

export interface Metrics {
  count(name: CounterName, n?: number): void;
  /** Current values, for `tessera status`. */
  counts(): Record<CounterName, number>;
  /** The Prometheus text exposition. */
  text(): Promise<string>;
  readonly contentType: string;
}

type Sample = { metricName?: string; labels: Record<string, string | number>; value: number };

/**
 * A family computed at scrape time from the workers' figures. prom-client's registry renders
 * any object with a name and get(); this keeps HELP, TYPE, escaping and the histogram's
 * _bucket/_sum/_count layout in prom-client's hands without double bookkeeping.
 */
function derived(registry: Registry, name: string, help: string, type: 'counter' | 'gauge' | 'histogram', values: () => Sample[]): void {
  const metric = { name, help, type, aggregator: 'sum', get: () => ({ name, help, type, values: values(), aggregator: 'sum' }), reset: () => {} };
  registry.registerMetric(metric as unknown as Counter);
}

export function createMetrics(src: MetricsSources, opts: { processMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.processMetrics) {
    // process_* and nodejs_*: memory, CPU, event loop lag. The lag is sampled every 200 ms:
    // prom-client's default (10 ms) woke an idle daemon 100 times a second, ~0.5 % of a core
    // (issue 17); a stall still shows in the lag figures when it delays a sample.
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 200 });
    // Gauges named *_total: promtool check metrics refuses them (a _total is a counter).
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
  }
  const counters = Object.fromEntries(
    Object.entries(COUNTERS).map(([k, help]) => [k, new Counter({ name: `tessera_${k}_total`, help, registers: [registry] })]),
  ) as Record<CounterName, Counter>;
  const values: Record<CounterName, number> = Object.fromEntries(Object.keys(COUNTERS).map((k) => [k, 0])) as Record<CounterName, number>;

  // Read once per scrape: every family below sees the same figures.
  let stats: WorkerStats[] = [];
  const perQueue = (f: (s: WorkerStats) => Array<[Record<string, string>, number]>): (() => Sample[]) => () =>
    stats.flatMap((s) => f(s).map(([labels, value]) => ({ labels: { queue: String(s.queueNum), ...labels }, value })));

  derived(registry, 'tessera_packets_total', 'Packets read from NFQUEUE per queue.', 'counter', perQueue((s) => [[{}, s.queue.received]]));
  derived(registry, 'tessera_queue_enobufs_total', 'Times the kernel dropped queued packets because the socket buffer was full.', 'counter', perQueue((s) => [[{}, s.queue.enobufs]]));
  derived(registry, 'tessera_verdicts_total', 'Handshake packets per verdict.', 'counter', perQueue((s) =>
    s.handshake ? [[{ verdict: 'accept' }, s.handshake.accepted], [{ verdict: 'pass' }, s.handshake.passed ?? 0], [{ verdict: 'reject' }, s.handshake.rejected], [{ verdict: 'drop' }, s.handshake.dropped]] : [],
  ));
  derived(registry, 'tessera_reasons_total', 'Handshake packets per reason code.', 'counter', perQueue((s) =>
    s.handshake ? Object.entries(s.handshake.byReason).map(([reason, n]) => [{ reason }, n] as [Record<string, string>, number]) : [],
  ));
  const caches = (hits: boolean) => perQueue((s): Array<[Record<string, string>, number]> =>
    s.caches ? [[{ cache: 'token' }, hits ? s.caches.tokenHits : s.caches.tokenMisses], [{ cache: 'x25519' }, hits ? s.caches.x25519Hits : s.caches.x25519Misses]] : [],
  );
  derived(registry, 'tessera_cache_hits_total', 'Token verifications and X25519 agreements served from cache.', 'counter', caches(true));
  derived(registry, 'tessera_cache_misses_total', 'Token verifications and X25519 agreements computed.', 'counter', caches(false));
  derived(registry, 'tessera_packet_handling_seconds', 'Time to decide one queued packet in a worker.', 'histogram', () =>
    stats.flatMap((s) => {
      const queue = String(s.queueNum);
      let cumulative = 0;
      const buckets: Sample[] = HANDLING_BUCKETS_US.map((le, i) => {
        cumulative += s.handling.buckets[i] ?? 0;
        return { metricName: 'tessera_packet_handling_seconds_bucket', labels: { queue, le: le / 1e6 }, value: cumulative };
      });
      return [
        ...buckets,
        { metricName: 'tessera_packet_handling_seconds_bucket', labels: { queue, le: '+Inf' }, value: s.handling.count },
        { metricName: 'tessera_packet_handling_seconds_sum', labels: { queue }, value: s.handling.sumUs / 1e6 },
        { metricName: 'tessera_packet_handling_seconds_count', labels: { queue }, value: s.handling.count },
      ];
    }),
  );
  derived(registry, 'tessera_handshake_state', 'Per-flow handshake entries held by each worker (bounded).', 'gauge', perQueue((s) =>
    s.handshake ? [[{ map: 'server' }, s.handshake.serverState], [{ map: 'client' }, s.handshake.clientState]] : [],
  ));
  // UDP (issue 13): the exchange's outcomes and reasons, its state, and control packets sent.
  derived(registry, 'tessera_udp_verdicts_total', 'UDP datagrams judged per outcome (authorized, refused, dropped, passed: a control packet consumed).', 'counter', perQueue((s) =>
    s.udp ? [[{ verdict: 'authorized' }, s.udp.authorized], [{ verdict: 'refused' }, s.udp.refused], [{ verdict: 'dropped' }, s.udp.dropped], [{ verdict: 'passed' }, s.udp.passed]] : [],
  ));
  derived(registry, 'tessera_udp_reasons_total', 'UDP datagrams per reason code.', 'counter', perQueue((s) =>
    s.udp ? Object.entries(s.udp.byReason).map(([reason, n]) => [{ reason }, n] as [Record<string, string>, number]) : [],
  ));
  derived(registry, 'tessera_udp_state', 'Per-flow UDP exchange entries held by each worker (bounded).', 'gauge', perQueue((s) =>
    s.udp ? [[{ map: 'server' }, s.udp.serverState], [{ map: 'client' }, s.udp.clientState]] : [],
  ));
  derived(registry, 'tessera_udp_control_sent_total', 'UDP exchange control packets sent by raw socket (Reply, Confirm), and send errors.', 'counter', perQueue((s) =>
    s.udp ? [[{ result: 'sent' }, s.udp.sent], [{ result: 'error' }, s.udp.sendErrors]] : [],
  ));
  derived(registry, 'tessera_pus', 'Protected processing units.', 'gauge', () => [{ labels: {}, value: src.puCount() }]);
  derived(registry, 'tessera_ready', '1 when rules are applied, workers bound and a policy loaded (what /readyz answers).', 'gauge', () => [{ labels: {}, value: src.ready() ? 1 : 0 }]);
  const fleet = (pick: (f: NonNullable<ReturnType<NonNullable<MetricsSources['fleet']>>>) => number | null) => () => {
    const f = src.fleet?.() ?? null;
    const v = f === null ? null : pick(f);
    return v === null ? [] : [{ labels: {}, value: v }];
  };
  derived(registry, 'tessera_fleet_policy_revision', 'Signed revision of the policy bundle this host applied from the fleet (absent without --cluster).', 'gauge', fleet((f) => f.policyRevision));
  derived(registry, 'tessera_fleet_stale_seconds', 'Seconds since etcd last answered this host; the last verified bundles are enforced meanwhile.', 'gauge', fleet((f) => f.staleSeconds));
  derived(registry, 'tessera_fleet_synced', '1 while the fleet follower is synced with etcd.', 'gauge', fleet((f) => (f.synced ? 1 : 0)));
  derived(registry, 'tessera_fleet_refused_bundles_total', 'Fleet bundles refused (bad signature, unknown key, rollback...).', 'counter', fleet((f) => f.refused));

  return {
    count(name, n = 1) {
      values[name] += n;
      counters[name].inc(n);
    },
    counts: () => ({ ...values }),
    async text() {
      stats = src.workerStats();
      return registry.metrics();
    },
    contentType: registry.contentType,
  };
}
