// The fleet at scale on one machine: N simulated daemons' followers (many per process, sharing
// a few gRPC channels) against a real three-member etcd on loopback; M policy pushes; for each,
// the time from the push's write to the moment every follower applied it (p50, p99, max),
// with etcd's CPU time and RSS and the watch streams open. Durations are measured here, never
// asserted in tests. Run: npx tsx bench/fleet-watchers.ts [--watchers 1000] [--clients 20] [--pushes 10]

import { readFileSync } from 'node:fs';
import { startEtcdCluster } from '../test/integration/fleet-etcd.js';
import { EtcdClient } from '../src/fleet/etcd.js';
import { Follower } from '../src/fleet/follower.js';
import { createLayout } from '../src/fleet/layout.js';
import { createOperatorKey } from '../src/fleet/operator-key.js';
import { pushBundle } from '../src/fleet/push.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}
const WATCHERS = arg('watchers', 1000);
const CLIENTS = arg('clients', 20);
const PUSHES = arg('pushes', 10);
const TICK = 100; // USER_HZ: /proc/PID/stat counts CPU time in 1/100 s on Linux

function etcdUsage(pid: number): { cpuSeconds: number; rssMiB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const cpu = (Number(stat[11]) + Number(stat[12])) / TICK;
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
  return { cpuSeconds: cpu, rssMiB: rss };
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};

const etcd = await startEtcdCluster({ basePort: 23860, name: 'fleet-bench' });
const clients: EtcdClient[] = [];
const followers: Follower[] = [];
try {
  const layout = createLayout('/bench/v1/');
  const op = createOperatorKey();
  const admin = new EtcdClient({ endpoints: etcd.endpoints });
  clients.push(admin);
  for (let i = 0; i < CLIENTS; i++) clients.push(new EtcdClient({ endpoints: etcd.endpoints }));
  const appliedAt = new Map<number, number[]>();
  const before = etcd.members.map((m) => etcdUsage(m.proc!.pid!));
  const t0 = Date.now();
  for (let i = 0; i < WATCHERS; i++) {
    const f = new Follower({
      client: clients[1 + (i % CLIENTS)]!,
      layout,
      trusted: [op],
      onBundle: (b) => {
        const list = appliedAt.get(b.bundle.revision) ?? [];
        list.push(performance.now());
        appliedAt.set(b.bundle.revision, list);
      },
      backoff: { baseMs: 250, maxMs: 30_000 },
    });
    f.start();
    followers.push(f);
  }
  // Every follower listed and watching (bounded wait).
  const deadline = Date.now() + 120_000;
  while (followers.some((f) => f.status().counters.watches === 0 || f.status().state === 'starting') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  const synced = followers.filter((f) => f.status().state === 'synced').length;
  console.log(`${WATCHERS} followers on ${CLIENTS} channels: ${synced} synced after ${Date.now() - t0} ms`);
  const latencies: { p50: number; p99: number; max: number; applied: number }[] = [];
  for (let n = 0; n < PUSHES; n++) {
    const start = performance.now();
    const r = await pushBundle(admin, layout, op, 'policy', { text: `# push ${n}\nversion: 1\n`, source: 'bench.yaml' });
    const until = Date.now() + 60_000;
    while ((appliedAt.get(r.revision)?.length ?? 0) < WATCHERS && Date.now() < until) await new Promise((res) => setTimeout(res, 5));
    const times = (appliedAt.get(r.revision) ?? []).map((t) => t - start);
    latencies.push({ p50: pct(times, 50), p99: pct(times, 99), max: Math.max(...times), applied: times.length });
    await new Promise((res) => setTimeout(res, 500));
  }
  const after = etcd.members.map((m) => etcdUsage(m.proc!.pid!));
  console.log('push  applied  p50 ms  p99 ms  max ms');
  latencies.forEach((l, i) => console.log(`${String(i + 1).padStart(4)}  ${String(l.applied).padStart(7)}  ${l.p50.toFixed(1).padStart(6)}  ${l.p99.toFixed(1).padStart(6)}  ${l.max.toFixed(1).padStart(6)}`));
  const p50s = latencies.map((l) => l.p50);
  const p99s = latencies.map((l) => l.p99);
  console.log(`median over pushes: p50 ${pct(p50s, 50).toFixed(1)} ms, p99 ${pct(p99s, 50).toFixed(1)} ms`);
  etcd.members.forEach((m, i) => console.log(`etcd ${m.name}: CPU ${(after[i]!.cpuSeconds - before[i]!.cpuSeconds).toFixed(2)} s during the run, RSS ${after[i]!.rssMiB.toFixed(0)} MiB`));
  console.log(`watch streams: ${WATCHERS} (one per follower) over ${CLIENTS} HTTP/2 connections spread over ${etcd.members.length} members`);
} finally {
  await Promise.all(followers.map((f) => f.stop()));
  for (const c of clients) c.close();
  await etcd.destroy();
}
