// The scale scenario (issue 17): `npm run bench -- --pus N`. Two namespace hosts, each with a
// real `tessera daemon` (PSK trust, built-in policy), measured first with one PU per host, then
// after N-1 idle PUs per host were added through the daemon's API (each a `sleep`, as the
// issue's "PUs created by API"), the same rows side by side:
//   - conn/s between two processes outside any PU (the host's own traffic);
//   - conn/s PU to PU (full mutual authentication);
//   - idle CPU of each daemon (no connection, no PU coming or going), % of one core, with the
//     CPU of the commands it ran (ss, nft, iptables-save);
//   - daemon memory (RSS), and per added PU;
//   - `tessera run` until its command's first connection is done (p50 of several).
// Medians of `runs` rounds. Everything started here is ended by PID; the cluster's destroy()
// removes rules, cgroups and namespaces.

import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { createCluster, sleep, type Cluster, type TesseraHost } from '../scripts/lib/cluster.js';
import { killAndWait, uniquePrefix } from '../scripts/lib/netns.js';
import { createApiClient } from '../src/api/index.js';
import { clkTck } from './lib/procstat.js';
import { realPid } from './lib/harness.js';

export interface ScaleOptions {
  pus: number;
  runs: number;
  seconds: number;
  concurrency: number;
  /** `tessera run` samples per phase. */
  runSamples: number;
  /** Seconds of the idle CPU window. */
  idleSeconds: number;
}

interface Phase {
  pus: number;
  hostConnPerSec: number[];
  puConnPerSec: number[];
  idleCpuPct: number[][];
  /** Of idleCpuPct, the part of the commands the daemon ran and reaped (ss, nft, iptables-save). */
  idleChildPct: number[][];
  rssKb: number[];
  runMs: number[];
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/**
 * CPU of a daemon (all its threads) plus that of the children it ran and reaped (ss, nft,
 * iptables-save: cutime + cstime), in microseconds: what the daemon costs the host.
 */
function ownAndReaped(pid: number): { total: number; reaped: number } {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const reaped = Number(f[13]) + Number(f[14]);
  const ticks = Number(f[11]) + Number(f[12]) + reaped;
  return { total: (ticks * 1e6) / clkTck(), reaped: (reaped * 1e6) / clkTck() };
}

const rssKb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);

/** `onCleanup` receives the (idempotent) cleanup, for a signal handler: a killed run still ends what it started. */
export async function runScale(root: string, bin: string, o: ScaleOptions, log: (s: string) => void, onCleanup?: (cleanup: () => Promise<void>) => void): Promise<string> {
  const HOST_PORT = 9100;
  const PU_PORT = 9101;
  const started: ChildProcess[] = [];
  const sleepers: number[] = [];
  let cluster: Cluster | undefined;
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      for (const pid of sleepers) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      await Promise.all(started.map((c) => killAndWait(c).catch(() => undefined)));
      await cluster?.destroy();
    })());
  onCleanup?.(cleanup);
  try {
    cluster = await createCluster({ prefix: uniquePrefix('bs'), hosts: ['a', 'b'], subnet: 118, trust: 'psk', daemonArgs: ['--log-level', 'warn'] });
    const a = cluster.host('a');
    const b = cluster.host('b');
    const client = join(bin, 'client');
    const server = join(bin, 'server');
    started.push(b.spawn([server, '--addr', b.addr, '--port', String(HOST_PORT)]));
    started.push(b.spawnPu(['app=bench'], [server, '--addr', b.addr, '--port', String(PU_PORT)]));
    await b.waitForListener(PU_PORT, 30_000);
    const daemonPids = (): number[] => [a, b].map((h) => realPid(h.daemon!.pid!));

    async function rate(h: TesseraHost, port: number, asPu: boolean): Promise<number> {
      const argv = [client, '--addr', b.addr, '--port', String(port), '--concurrency', String(o.concurrency), '--seconds', String(o.seconds), '--count', '1000000'];
      const r = asPu ? await h.runPu(['app=bench'], argv, (o.seconds + 30) * 1000) : await h.exec(argv, { timeoutMs: (o.seconds + 30) * 1000 });
      const line = r.stdout.trim().split('\n').pop() ?? '';
      const j = JSON.parse(line) as { connections: number; seconds?: number; elapsed?: number };
      return j.connections / (j.seconds ?? j.elapsed ?? o.seconds);
    }

    async function phase(pus: number): Promise<Phase> {
      const p: Phase = { pus, hostConnPerSec: [], puConnPerSec: [], idleCpuPct: [], idleChildPct: [], rssKb: [], runMs: [] };
      for (let r = 0; r < o.runs; r++) {
        p.hostConnPerSec.push(await rate(a, HOST_PORT, false));
        p.puConnPerSec.push(await rate(a, PU_PORT, true));
        log(`scale: ${pus} PUs, round ${r + 1}: outside ${p.hostConnPerSec.at(-1)!.toFixed(0)} conn/s, PU to PU ${p.puConnPerSec.at(-1)!.toFixed(0)} conn/s`);
      }
      // Idle: no connection and no PU churn. The client PUs of the rounds above end when
      // discovery's liveness batch reaches them (at most N/64 ticks): wait for that first.
      // Through the API, not `tessera status --json`: the CLI's output of 1,000 PUs (~220 kB)
      // reached a pipe truncated (the CLI exits before stdout drains).
      const count = async (h: TesseraHost): Promise<number> => (await createApiClient(h.socket).status()).pus.length;
      const settled = async (): Promise<boolean> => (await count(a)) === (pus === 1 ? 0 : pus - 1) && (await count(b)) === pus;
      for (let t = 0; t < 120 && !(await settled()); t++) await sleep(1000);
      if (!(await settled())) log('scale: the client PUs have not all ended after 120 s; measuring idle anyway');
      await sleep(1000);
      const pids = daemonPids();
      for (let r = 0; r < Math.max(1, Math.min(o.runs, 3)); r++) {
        const c0 = pids.map(ownAndReaped);
        const t0 = process.hrtime.bigint();
        await sleep(o.idleSeconds * 1000);
        const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
        const c1 = pids.map(ownAndReaped);
        p.idleCpuPct.push(c1.map((c, i) => ((c.total - c0[i]!.total) / wallUs) * 100));
        p.idleChildPct.push(c1.map((c, i) => ((c.reaped - c0[i]!.reaped) / wallUs) * 100));
      }
      p.rssKb = pids.map(rssKb);
      for (let r = 0; r < o.runSamples; r++) {
        const t0 = performance.now();
        const res = await a.runPu([`run=${r}`], [client, '--addr', b.addr, '--port', String(HOST_PORT), '--concurrency', '1', '--count', '1', '--seconds', '5'], 30_000);
        p.runMs.push(performance.now() - t0);
        if (res.code !== 0) log(`scale: tessera run sample failed: ${res.stderr.trim().split('\n').pop()}`);
      }
      log(`scale: ${pus} PUs: idle CPU ${p.idleCpuPct.map((x) => x.map((v) => v.toFixed(2)).join('/')).join(' ')} % (of which commands ${p.idleChildPct.map((x) => x.map((v) => v.toFixed(2)).join('/')).join(' ')}), RSS ${p.rssKb.join('/')} kB, tessera run ${p.runMs.map((x) => x.toFixed(0)).join(' ')} ms`);
      return p;
    }

    /** N-1 idle PUs in host h: `sleep` processes, each made a PU through the API (8 in flight). */
    async function addIdle(h: TesseraHost, n: number): Promise<number[]> {
      const sh = h.spawn(['sh', '-c', `i=0; while [ $i -lt ${n} ]; do sleep 3600 & echo $!; i=$((i+1)); done; wait`]);
      started.push(sh);
      let out = '';
      sh.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      for (let t = 0; t < 600 && out.split('\n').filter(Boolean).length < n; t++) await sleep(100);
      const pids = out.split('\n').filter(Boolean).map(Number);
      sleepers.push(...pids);
      const api = createApiClient(h.socket);
      const times: number[] = [];
      for (let i = 0; i < pids.length; i += 8) {
        await Promise.all(
          pids.slice(i, i + 8).map(async (pid, k) => {
            const t0 = performance.now();
            await api.createPu({ pid, labels: [`idle=${i + k}`], name: `idle ${i + k}` });
            times[i + k] = performance.now() - t0;
          }),
        );
      }
      return times;
    }

    const one = await phase(1);
    log(`scale: adding ${o.pus - 1} idle PUs per host through the API`);
    const [ta, tb] = await Promise.all([addIdle(a, o.pus - 1), addIdle(b, o.pus - 1)]);
    const create = [...(ta ?? []), ...(tb ?? [])];
    const first = median([...ta!.slice(0, 50), ...tb!.slice(0, 50)]);
    const last = median([...ta!.slice(-50), ...tb!.slice(-50)]);
    log(`scale: API create p50: first 50 ${first.toFixed(1)} ms, last 50 ${last.toFixed(1)} ms (${create.length} PUs)`);
    const many = await phase(o.pus);
    return render(o, one, many, { first, last });
  } finally {
    await cleanup();
  }
}

function render(o: ScaleOptions, one: Phase, many: Phase, create: { first: number; last: number }): string {
  const idle = (p: Phase, i: number): number => median(p.idleCpuPct.map((x) => x[i]!));
  const child = (p: Phase, i: number): number => median(p.idleChildPct.map((x) => x[i]!));
  const rows: Array<[string, number, number, number]> = [
    ['conn/s outside PUs (host traffic), median', median(one.hostConnPerSec), median(many.hostConnPerSec), 0],
    ['conn/s PU to PU, median', median(one.puConnPerSec), median(many.puConnPerSec), 0],
    ['idle daemon CPU, client host (% of a core)', idle(one, 0), idle(many, 0), 2],
    ['idle daemon CPU, server host (% of a core)', idle(one, 1), idle(many, 1), 2],
    ['of which its commands (ss, nft, iptables-save), client host', child(one, 0), child(many, 0), 2],
    ['of which its commands (ss, nft, iptables-save), server host', child(one, 1), child(many, 1), 2],
    ['daemon RSS, client host (MB)', one.rssKb[0]! / 1024, many.rssKb[0]! / 1024, 1],
    ['daemon RSS, server host (MB)', one.rssKb[1]! / 1024, many.rssKb[1]! / 1024, 1],
    ['`tessera run` to first connection done, p50 (ms)', median(one.runMs), median(many.runMs), 0],
    ['API PU create, p50 of first/last 50 (ms)', create.first, create.last, 1],
  ];
  const perPu = (i: number): string => (((many.rssKb[i]! - one.rssKb[i]!) / (o.pus - 1)) * 1024).toFixed(0);
  const lines = [
    `scale: ${o.runs} rounds of ${o.seconds} s, ${o.concurrency} in flight; idle window ${o.idleSeconds} s; ${o.runSamples} tessera run samples`,
    '',
    `| | 1 PU per host | ${o.pus} PUs per host | ratio |`,
    '|---|---:|---:|---:|',
    ...rows.map(([name, x, y, d]) => `| ${name} | ${x.toFixed(d)} | ${y.toFixed(d)} | ${(y / x).toFixed(2)} |`),
    '',
    `memory per added PU: ${perPu(0)} B (client host), ${perPu(1)} B (server host)`,
    '',
  ];
  return lines.join('\n');
}

/** CPU (µs) of each thread of `pid`, by thread id, with its name (main thread: the pid). */
function threadCpu(pid: number): Map<number, { name: string; us: number }> {
  const out = new Map<number, { name: string; us: number }>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tids) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const name = text.slice(text.indexOf('(') + 1, text.lastIndexOf(')'));
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      out.set(Number(t), { name, us: ((Number(f[11]) + Number(f[12])) * 1e6) / clkTck() });
    } catch {
      /* thread gone */
    }
  }
  return out;
}

/** CPU (µs) of the daemon's live children (its long-lived `nft -i`): not in cutime until reaped. */
function liveChildrenCpu(pid: number): number {
  let us = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const text = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      if (Number(f[1]) === pid) us += ((Number(f[11]) + Number(f[12])) * 1e6) / clkTck();
    } catch {
      /* gone */
    }
  }
  return us;
}

export interface IdleProbeOptions {
  pus: number;
  windows: number;
  seconds: number;
  subnet: number;
}

/**
 * The idle probe alone (no connection rounds): two namespace hosts with a daemon each, N-1
 * idle PUs added through the API per host (N=1: none), then `windows` windows of `seconds`
 * with no traffic and no PU churn, per daemon: total CPU, the commands it ran and reaped, and
 * each thread's share (main, the datapath workers, libuv's pool, V8's).
 */
export async function runIdleProbe(o: IdleProbeOptions, log: (s: string) => void, onCleanup?: (cleanup: () => Promise<void>) => void): Promise<string> {
  const sleepers: number[] = [];
  const started: ChildProcess[] = [];
  let cluster: Cluster | undefined;
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      for (const pid of sleepers) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      await Promise.all(started.map((c) => killAndWait(c).catch(() => undefined)));
      await cluster?.destroy();
    })());
  onCleanup?.(cleanup);
  try {
    cluster = await createCluster({ prefix: uniquePrefix('idl'), hosts: ['a', 'b'], subnet: o.subnet, trust: 'psk', daemonArgs: ['--log-level', 'warn'] });
    const hosts = [cluster.host('a'), cluster.host('b')];
    const n = o.pus - 1;
    await Promise.all(
      hosts.map(async (h) => {
        if (n <= 0) return;
        const sh = h.spawn(['sh', '-c', `i=0; while [ $i -lt ${n} ]; do sleep 3600 & echo $!; i=$((i+1)); done; wait`]);
        started.push(sh);
        let out = '';
        sh.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        for (let t = 0; t < 600 && out.split('\n').filter(Boolean).length < n; t++) await sleep(100);
        const pids = out.split('\n').filter(Boolean).map(Number);
        sleepers.push(...pids);
        const api = createApiClient(h.socket);
        for (let i = 0; i < pids.length; i += 8) await Promise.all(pids.slice(i, i + 8).map((pid, k) => api.createPu({ pid, labels: [`idle=${i + k}`], name: `idle ${i + k}` })));
      }),
    );
    const count = async (h: TesseraHost): Promise<number> => (await createApiClient(h.socket).status()).pus.length;
    for (const h of hosts) log(`idle probe: ${h.name}: ${await count(h)} PUs`);
    // Let the creation's aftermath (a reconcile pass, coalesced saves) pass first.
    await sleep(12_000);
    const pids = hosts.map((h) => realPid(h.daemon!.pid!));
    const rows: string[] = [];
    for (let w = 0; w < o.windows; w++) {
      const c0 = pids.map(ownAndReaped);
      const l0 = pids.map(liveChildrenCpu);
      const t0s = pids.map(threadCpu);
      const t0 = process.hrtime.bigint();
      await sleep(o.seconds * 1000);
      const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
      const c1 = pids.map(ownAndReaped);
      const l1 = pids.map(liveChildrenCpu);
      const t1s = pids.map(threadCpu);
      pids.forEach((pid, i) => {
        const pct = (us: number): string => ((us / wallUs) * 100).toFixed(2);
        const threads = [...t1s[i]!].map(([tid, t]) => ({ tid, name: tid === pid ? 'main' : t.name, us: t.us - (t0s[i]!.get(tid)?.us ?? 0) })).filter((t) => t.us > 0);
        const byName = new Map<string, number>();
        for (const t of threads) byName.set(t.name, (byName.get(t.name) ?? 0) + t.us);
        const line = `| ${hosts[i]!.name} | ${w + 1} | ${pct(c1[i]!.total - c0[i]!.total)} | ${pct(c1[i]!.reaped - c0[i]!.reaped)} | ${pct(l1[i]! - l0[i]!)} | ${[...byName].sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${pct(v)}`).join(', ') || '—'} |`;
        rows.push(line);
        log(`idle probe: ${line}`);
      });
    }
    return [`idle probe: ${o.pus} PUs per host, ${o.windows} windows of ${o.seconds} s`, '', '| host | window | daemon CPU % (threads + commands reaped) | of which commands reaped % | live children (nft -i) % | threads % |', '|---|---:|---:|---:|---:|---|', ...rows, ''].join('\n');
  } finally {
    await cleanup();
  }
}

// `npx tsx bench/scale.ts --idle-probe [--pus N] [--windows W] [--seconds S]` (as root, under
// the shared lock): the idle probe alone.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1] && process.argv.includes('--idle-probe')) {
  const arg = (name: string, dflt: number): number => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : dflt;
  };
  const o = { pus: arg('--pus', 1000), windows: arg('--windows', 3), seconds: arg('--seconds', 20), subnet: arg('--subnet', 140) };
  const log = (s: string): void => void process.stderr.write(s + '\n');
  runIdleProbe(o, log, (cleanup) => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void cleanup().finally(() => process.exit(130)));
  }).then(
    (t) => process.stdout.write(t),
    (err: unknown) => {
      log(`idle probe failed: ${String(err)}`);
      process.exitCode = 1;
    },
  );
}
