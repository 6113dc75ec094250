// The benchmark run: two namespace hosts (client in "a", server in "b"), every scenario
// measured once per round, rounds interleaved, everything started here ended by PID and the
// topology removed on success, failure and signals (see cleanup()).
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { createTopology, killAndWait, uniquePrefix, type NsHost, type Topology } from '../../scripts/lib/netns.js';
import { TesseraError, errorMessage } from '../../src/errors.js';
import { buildPrograms, ensureNfqueueBinding } from './build.js';
import { startReaper } from './reaper.js';
import type { BenchOptions } from './options.js';
import { cpuMicros, clkTck } from './procstat.js';
import {
  markdown,
  summarize,
  targets,
  type BulkResult,
  type ClientResult,
  type RunSample,
  type ScenarioRow,
  type Target,
} from './report.js';
import { SCENARIOS, selectScenarios, unavailable, type HandlerContext, type Scenario } from './scenarios.js';

export interface Skipped {
  id: string;
  title: string;
  reason: string;
}

export interface BenchResult {
  startedAt: string;
  durationSeconds: number;
  machine: { cpus: number; kernel: string; node: string; clkTck: number };
  options: BenchOptions;
  topology: { prefix: string; subnet: number; client: string; server: string };
  rows: ScenarioRow[];
  skipped: Skipped[];
  targets: Target[];
  samples: RunSample[];
}

const PONG_PORT = 8080;
const SINK_PORT = 8081;
const READY_TIMEOUT_MS = 15_000;

/** A long-running process in a namespace whose output is drained (a full pipe would stall it). */
interface Managed {
  name: string;
  child: ChildProcess;
  ready: Promise<void>;
  tail(): string;
}

export class Bench {
  readonly prefix = uniquePrefix('bn');
  // Subnets 100..119 are the benchmark's share of 10.213.0.0/16.
  readonly subnet = 100 + Math.floor(Math.random() * 20);
  private topo: Topology | null = null;
  private readonly procs = new Set<ChildProcess>();
  private cleaning: Promise<void> | null = null;
  private cleaned = false;
  private out = '';
  private readonly scratch: string;

  constructor(
    private readonly root: string,
    private readonly opts: BenchOptions,
    private readonly log: (s: string) => void,
    private readonly signal: AbortSignal,
  ) {
    this.scratch = join(root, 'bench/out', `run-${this.prefix}`);
  }

  /** Build, set up, measure every scenario interleaved, summarize. */
  async run(): Promise<BenchResult> {
    const t0 = Date.now();
    const chosen = selectScenarios(this.opts.scenarios);
    this.out = await buildPrograms(this.root, this.log);
    const nfqNote = chosen.some((s) => s.id === 'nfqueue-npm') ? await ensureNfqueueBinding(this.root, this.log) : null;

    const skipped: Skipped[] = [];
    const active: Scenario[] = [];
    for (const s of chosen) {
      const why = (s.id === 'nfqueue-npm' ? nfqNote : null) ?? unavailable(s, this.root);
      if (why) {
        skipped.push({ id: s.id, title: s.title, reason: why });
        this.log(`bench: skipping "${s.title}": ${why}`);
      } else active.push(s);
    }
    if (active.length === 0) throw new TesseraError('TESSERA_ERR_PREREQ', 'no scenario can run here (see the notes above)');

    this.checkAborted();
    // Armed before the namespaces exist, so there is no window in which a SIGKILL leaks them.
    startReaper(['a', 'b', 'sw'].map((h) => `${this.prefix}-${h}`));
    this.topo = await createTopology({ prefix: this.prefix, hosts: ['a', 'b'], subnet: this.subnet });
    const a = this.topo.host('a');
    const b = this.topo.host('b');
    this.log(`bench: topology up prefix=${this.prefix} subnet=10.213.${this.subnet}.0/24 client=${a.addr} server=${b.addr}`);
    await this.tune(a, b);

    const pong = this.startManaged(b, [...this.pinned(1), join(this.out, 'server'), '--addr', b.addr, '--port', String(PONG_PORT)], 'server');
    await pong.ready;
    if (this.opts.bulkBytes > 0) {
      const sink = this.startManaged(b, [...this.pinned(1), join(this.out, 'server'), '--addr', b.addr, '--port', String(SINK_PORT), '--sink'], 'sink');
      await sink.ready;
    }

    const samples: RunSample[] = [];
    for (let r = 0; r < this.opts.runs; r++) {
      // Rotate the order every round so no scenario always follows the same neighbour.
      const order = active.map((_, i) => active[(i + r) % active.length]!);
      for (const s of order) {
        this.checkAborted();
        const sample = await this.measureOnce(s, r + 1, a, b);
        samples.push(sample);
        this.log(`bench: round ${r + 1}/${this.opts.runs} ${s.id.padEnd(15)} ${describe(sample)}`);
      }
    }

    const rows = summarize(active, samples);
    return {
      startedAt: new Date(t0).toISOString(),
      durationSeconds: (Date.now() - t0) / 1000,
      machine: { cpus: cpus().length, kernel: release(), node: process.version, clkTck: clkTck() },
      options: this.opts,
      topology: { prefix: this.prefix, subnet: this.subnet, client: a.addr, server: b.addr },
      rows,
      skipped,
      targets: targets(rows),
      samples,
    };
  }

  /** End every process we started (by PID), remove the topology and scratch files. Idempotent. */
  cleanup(): Promise<void> {
    this.cleaning ??= (async () => {
      await Promise.all([...this.procs].map((c) => killAndWait(c, 2000)));
      this.procs.clear();
      if (this.topo) await this.topo.destroy();
      rmSync(this.scratch, { recursive: true, force: true });
      this.cleaned = true;
    })();
    return this.cleaning;
  }

  private pinned(cpu: number): string[] {
    return this.opts.pin ? ['taskset', '-c', String(cpu)] : [];
  }

  /**
   * Last resort when the process must exit now (a second Ctrl-C, or exit during async cleanup):
   * SIGKILL our processes by PID and delete our namespaces synchronously. netns.ts's own exit
   * hook skips a topology whose async destroy() already started, so this one must not.
   */
  cleanupSync(): void {
    if (this.cleaned) return;
    for (const c of this.procs) {
      try {
        if (c.pid && c.exitCode === null && c.signalCode === null) process.kill(c.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    if (this.topo) {
      for (const ns of [...this.topo.hosts.map((h) => h.ns), `${this.prefix}-sw`]) {
        try {
          execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
        } catch {
          /* already gone */
        }
      }
    }
    rmSync(this.scratch, { recursive: true, force: true });
  }

  private checkAborted(): void {
    if (this.signal.aborted) throw new TesseraError('TESSERA_ERR_COMMAND', 'benchmark interrupted');
  }

  // Per-namespace sysctls only: nothing outside our namespaces changes.
  private async tune(a: NsHost, b: NsHost): Promise<void> {
    const set = async (h: NsHost, kv: string): Promise<void> => {
      const r = await h.exec(['sysctl', '-qw', kv]);
      if (r.code !== 0) this.log(`bench: warning: ${h.ns}: sysctl ${kv}: ${r.stderr.trim()}`);
    };
    // Wide ephemeral range for the client; deep accept/SYN backlogs for the server.
    await set(a, 'net.ipv4.ip_local_port_range=1024 65000');
    await set(b, 'net.core.somaxconn=4096');
    await set(b, 'net.ipv4.tcp_max_syn_backlog=8192');
  }

  private async measureOnce(s: Scenario, run: number, a: NsHost, b: NsHost): Promise<RunSample> {
    const sample: RunSample = { scenario: s.id, run };
    const handlers: Managed[] = [];
    const queue = 10 + SCENARIOS.findIndex((x) => x.id === s.id);
    let rulesIn = false;
    try {
      if (typeof s.handler === 'function') {
        for (const [host, role, peer] of [
          [a, 'client', b],
          [b, 'server', a],
        ] as const) {
          const dir = join(this.scratch, s.id, host.name);
          mkdirSync(dir, { recursive: true });
          const ctx: HandlerContext = { root: this.root, bin: (n) => join(this.out, n), queue, host, role, peer, dir };
          handlers.push(this.startManaged(host, s.handler(ctx), `${s.id}@${host.name}`, s.ready));
        }
        await Promise.all(handlers.map((h) => h.ready));
      }
      if (s.rules === 'bench') {
        rulesIn = true;
        await this.queueRules(a, 'client', queue);
        await this.queueRules(b, 'server', queue);
      }
      const target = ['--addr', b.addr, '--port', String(PONG_PORT)];
      // Warm-up: JIT, caches, and a check that the path works at all before timing it.
      const warm = await this.client(a, [...target, '--concurrency', String(this.opts.concurrency), '--seconds', '0.3', '--count', '3000']);
      if (warm.connections === 0) throw new TesseraError('TESSERA_ERR_COMMAND', `warm-up: no connection succeeded (${warm.errors} errors)`);

      const pids = handlers.flatMap((h) => (h.child.pid ? [h.child.pid] : []));
      const cpu0 = cpuMicros(pids);
      sample.rate = await this.client(a, [
        ...target,
        '--concurrency',
        String(this.opts.concurrency),
        '--seconds',
        String(this.opts.seconds),
        '--count',
        String(this.opts.count),
      ]);
      sample.handlerCpuUs = handlers.length ? cpuMicros(pids) - cpu0 : 0;
      sample.latency = await this.client(a, [
        ...target,
        '--concurrency',
        '1',
        '--seconds',
        String(this.opts.seconds),
        '--count',
        String(this.opts.latencyCount),
      ]);
      if (this.opts.bulkBytes > 0) {
        sample.bulk = (await this.client(a, [
          '--addr',
          b.addr,
          '--port',
          String(SINK_PORT),
          '--bulk',
          String(this.opts.bulkBytes),
          '--seconds',
          String(Math.max(this.opts.seconds, 5)),
        ])) as unknown as BulkResult;
      }
      const dead = handlers.filter((h) => h.child.exitCode !== null || h.child.signalCode !== null);
      if (dead.length) throw new TesseraError('TESSERA_ERR_COMMAND', `handler exited during the run: ${dead.map((h) => `${h.name}: ${h.tail()}`).join('; ')}`);
    } catch (err) {
      sample.failure = errorMessage(err).split('\n')[0] ?? 'failed';
    } finally {
      // Rules out first, so no packet waits on a queue whose consumer is going away.
      if (rulesIn && !this.signal.aborted) {
        await this.flushMangle(a).catch(() => {});
        await this.flushMangle(b).catch(() => {});
      }
      await Promise.all(handlers.map((h) => this.stop(h)));
    }
    return sample;
  }

  // SYN + SYN-ACK at both ends: 4 queue passes per connection. They are the first rules of
  // their chains (there is no ESTABLISHED accept here at all, which would hide the SYN-ACK).
  private async queueRules(h: NsHost, role: 'client' | 'server', queue: number): Promise<void> {
    const syn = '-p tcp --tcp-flags SYN,ACK,RST,FIN SYN';
    const synAck = '-p tcp --tcp-flags SYN,ACK,RST,FIN SYN,ACK';
    const q = `-j NFQUEUE --queue-num ${queue}`;
    const lines =
      role === 'client'
        ? [`-A POSTROUTING ${syn} ${q}`, `-A PREROUTING ${synAck} ${q}`]
        : [`-A PREROUTING ${syn} ${q}`, `-A POSTROUTING ${synAck} ${q}`];
    await this.restore(h, lines);
  }

  private flushMangle(h: NsHost): Promise<void> {
    return this.restore(h, []);
  }

  // One iptables-restore transaction replacing the mangle table of our own namespace.
  private async restore(h: NsHost, lines: string[]): Promise<void> {
    const text = ['*mangle', ...['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'].map((c) => `:${c} ACCEPT [0:0]`), ...lines, 'COMMIT', ''].join('\n');
    const r = await h.exec(['iptables-restore'], { input: text, timeoutMs: 15_000 });
    if (r.code !== 0) throw new TesseraError('TESSERA_ERR_RULES', `${h.ns}: iptables-restore failed: ${r.stderr.trim()}`);
  }

  private startManaged(host: NsHost, argv: string[], name: string, ready: RegExp = /^ready$/m): Managed {
    const child = host.spawn(argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.procs.add(child);
    child.once('exit', () => this.procs.delete(child));
    let buf = '';
    let onData: () => void = () => {};
    const take = (chunk: Buffer): void => {
      const s = chunk.toString();
      if (this.opts.verbose) process.stderr.write(s.replace(/^(?=.)/gm, `[${name}] `));
      buf = (buf + s).slice(-8192);
      onData();
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);
    const readyP = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new TesseraError('TESSERA_ERR_COMMAND', `${name} not ready after ${READY_TIMEOUT_MS} ms: ${buf.trim()}`)), READY_TIMEOUT_MS);
      onData = () => {
        if (ready.test(buf)) {
          clearTimeout(timer);
          onData = () => {};
          resolve();
        }
      };
      child.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new TesseraError('TESSERA_ERR_COMMAND', `${name} exited (${sig ?? code}) before ready: ${buf.trim()}`));
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(new TesseraError('TESSERA_ERR_COMMAND', `${name} could not start: ${err.message}`, { cause: err }));
      });
      onData();
    });
    // The exit-before-ready rejection may come after ready resolved; never leave it unhandled.
    readyP.catch(() => {});
    return { name, child, ready: readyP, tail: () => buf.trim().split('\n').slice(-3).join(' | ') };
  }

  private async stop(m: Managed): Promise<void> {
    await killAndWait(m.child, 3000);
    this.procs.delete(m.child);
  }

  /** Run the C client in host h and parse its JSON line; bounded by its own --seconds plus slack. */
  private client(h: NsHost, args: string[]): Promise<ClientResult> {
    const secIdx = args.indexOf('--seconds');
    const limitMs = (Number(args[secIdx + 1] ?? 10) + 10) * 1000;
    return new Promise((resolve, reject) => {
      const child = h.spawn([...this.pinned(0), join(this.out, 'client'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      this.procs.add(child);
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4096)));
      const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
      child.once('error', (err) => {
        clearTimeout(timer);
        this.procs.delete(child);
        reject(new TesseraError('TESSERA_ERR_COMMAND', `client could not start: ${err.message}`, { cause: err }));
      });
      child.once('close', (code, sig) => {
        clearTimeout(timer);
        this.procs.delete(child);
        const line = stdout.trim().split('\n').pop() ?? '';
        try {
          if (code !== 0) throw new Error(`exit ${sig ?? code}`);
          resolve(JSON.parse(line) as ClientResult);
        } catch (err) {
          reject(new TesseraError('TESSERA_ERR_COMMAND', `client ${args.join(' ')} failed (${errorMessage(err)}): ${stderr.trim()}`, { cause: err }));
        }
      });
    });
  }
}

function describe(s: RunSample): string {
  if (s.failure && !s.rate) return `FAILED: ${s.failure}`;
  const parts = [
    s.rate ? `${Math.round(s.rate.connPerSec)} conn/s` : '',
    s.latency ? `p50 ${s.latency.connectP50Us.toFixed(0)} µs p99 ${s.latency.connectP99Us.toFixed(0)} µs` : '',
    s.rate && s.handlerCpuUs !== undefined && s.rate.connections ? `cpu ${(s.handlerCpuUs / s.rate.connections).toFixed(1)} µs/conn` : '',
    s.bulk ? `bulk ${Math.round(s.bulk.mbPerSec)} MB/s` : '',
    s.rate || s.latency
      ? `errors ${(s.rate?.errors ?? 0) + (s.latency?.errors ?? 0)} (timeouts ${(s.rate?.timeouts ?? 0) + (s.latency?.timeouts ?? 0)})`
      : '',
    s.failure ? `FAILED: ${s.failure}` : '',
  ];
  return parts.filter(Boolean).join(', ');
}

/** The markdown report of a finished run. */
export function renderTable(r: BenchResult): string {
  const head = `Tessera connection benchmark — ${r.startedAt}, ${r.machine.cpus} vCPU, kernel ${r.machine.kernel}, node ${r.machine.node}; ` +
    `medians of ${r.options.runs} interleaved runs, ${r.options.seconds} s per phase (whole-box figures: client, server and handlers share the CPUs)`;
  return `${head}\n\n${markdown(r.rows, r.targets, { bulk: r.options.bulkBytes > 0, skipped: r.skipped })}\n`;
}
