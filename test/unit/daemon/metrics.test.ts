// The metrics service: typed daemon counters, the workers' figures per queue, a histogram in
// Prometheus' layout, and text that promtool accepts (scraped over --metrics-listen's server).
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { createMetrics, COUNTERS } from '../../../src/daemon/metrics.js';
import { startMetricsServer } from '../../../src/api/index.js';
import { HANDLING_BUCKETS_US, type WorkerStats } from '../../../src/datapath/index.js';

const worker = (queueNum: number, k: number): WorkerStats => ({
  queueNum,
  handshake: { packets: 10 * k, accepted: 6 * k, passed: 0, rejected: 3 * k, dropped: k, serverState: 2, clientState: 1, byReason: { ok: 6 * k, 'bad-signature': 3 * k, 'a"quoted\\reason': k } },
  caches: { tokenHits: 5, tokenMisses: 1, x25519Hits: 4, x25519Misses: 2 },
  handling: { buckets: HANDLING_BUCKETS_US.map((_, i): number => (i === 0 ? 3 : i === 2 ? 2 : 0)).concat([1]), sumUs: 1234, count: 6 },
  queue: { received: 10 * k, verdicts: 10 * k, enobufs: 0, sendErrors: 0, recvErrors: 0, batches: 3 },
  errors: 0,
});

const value = (text: string, line: RegExp): number => Number(line.exec(text)?.[1] ?? NaN);

function setup(opts: { processMetrics?: boolean } = {}) {
  let ready = false;
  const m = createMetrics({ workerStats: () => [worker(0, 1), worker(1, 2)], puCount: () => 3, ready: () => ready }, opts);
  return { m, setReady: (r: boolean) => (ready = r) };
}

describe('metrics service', () => {
  it('owns the daemon counters: typed names, shown in status and as _total counters', async () => {
    const { m } = setup();
    m.count('pus_created');
    m.count('pus_created');
    m.count('flows_rejected', 5);
    expect(m.counts()).toEqual({ ...Object.fromEntries(Object.keys(COUNTERS).map((k) => [k, 0])), pus_created: 2, flows_rejected: 5 });
    const text = await m.text();
    expect(text).toContain('# HELP tessera_pus_created_total PUs created (processes and containers).\n# TYPE tessera_pus_created_total counter\ntessera_pus_created_total 2\n');
    expect(value(text, /^tessera_flows_rejected_total (\d+)$/m)).toBe(5);
    expect(value(text, /^tessera_policy_reload_errors_total (\d+)$/m)).toBe(0); // present before the first event
  });

  it('exposes the workers\' figures per queue, the PU count and readiness', async () => {
    const { m, setReady } = setup();
    const text = await m.text();
    expect(value(text, /^tessera_packets_total\{queue="1"\} (\d+)$/m)).toBe(20);
    expect(value(text, /^tessera_verdicts_total\{queue="0",verdict="drop"\} (\d+)$/m)).toBe(1);
    expect(value(text, /^tessera_reasons_total\{queue="1",reason="bad-signature"\} (\d+)$/m)).toBe(6);
    expect(text).toContain('tessera_reasons_total{queue="0",reason="a\\"quoted\\\\reason"} 1'); // escaped
    expect(value(text, /^tessera_cache_misses_total\{queue="0",cache="x25519"\} (\d+)$/m)).toBe(2);
    expect(value(text, /^tessera_handshake_state\{queue="1",map="server"\} (\d+)$/m)).toBe(2);
    expect(text).toMatch(/^tessera_pus 3$/m);
    expect(text).toMatch(/^tessera_ready 0$/m);
    setReady(true);
    expect(await m.text()).toMatch(/^tessera_ready 1$/m);
  });

  it('renders the handling time as a cumulative histogram ending in +Inf = count', async () => {
    const { m } = setup();
    const text = await m.text();
    const buckets = [...text.matchAll(/^tessera_packet_handling_seconds_bucket\{queue="0",le="([^"]+)"\} (\d+)$/gm)].map((r) => [r[1], Number(r[2])]);
    expect(buckets).toHaveLength(HANDLING_BUCKETS_US.length + 1);
    expect(buckets[0]).toEqual([String(HANDLING_BUCKETS_US[0]! / 1e6), 3]);
    expect(buckets[2]![1]).toBe(5);
    expect(buckets.at(-1)).toEqual(['+Inf', 6]);
    expect(value(text, /^tessera_packet_handling_seconds_sum\{queue="0"\} ([\d.]+)$/m)).toBe(0.001234);
    expect(value(text, /^tessera_packet_handling_seconds_count\{queue="0"\} (\d+)$/m)).toBe(6);
  });

  // Mandatory: scripts/setup.sh installs Debian's prometheus package (it carries promtool).
  it('a scrape over TCP passes promtool check metrics', async () => {
    const which = spawnSync('sh', ['-c', 'command -v promtool']);
    expect(which.status, 'promtool not found: apt-get install prometheus (scripts/setup.sh does as root)').toBe(0);
    const { m } = setup({ processMetrics: true });
    m.count('rule_transactions');
    const server = await startMetricsServer({ host: '127.0.0.1', port: 0 }, { metrics: () => m.text(), readiness: () => ({ ready: true, reasons: [] }) });
    try {
      const res = await fetch(`http://127.0.0.1:${server.address.port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
      const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect({ status: r.status, problems: (r.stdout + r.stderr).trim() }).toEqual({ status: 0, problems: '' });
      // And promtool does fail on a bad exposition (the check above can fail).
      expect(() => execFileSync('promtool', ['check', 'metrics'], { input: 'tessera_things 1\n', stdio: 'pipe' })).toThrow();
    } finally {
      await server.close();
    }
  });
});
