// The benchmark run: two namespace hosts (client in "a", server in "b"), every scenario
// measured once per round, rounds interleaved, everything started here ended by PID and the
// topology removed on success, failure and signals (see cleanup()).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { createTopology, killAndWait, run, uniquePrefix, type NsHost, type Topology } from '../../scripts/lib/netns.js';
import { TesseraError, errorMessage } from '../../src/errors.js';
import { buildPrograms, ensureNfqueueBinding } from './build.js';
import { startReaper } from './reaper.js';
import type { BenchOptions } from './options.js';
import { cpuMicros, clkTck, mainThreadMicros } from './procstat.js';
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
import { SCENARIOS, selectScenarios, unavailable, type HandlerContext, type PuSupport, type Scenario } from './scenarios.js';

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
// PU scenarios run their own server and sink as PUs, on ports of their own.
const PU_PONG_PORT = 8090;
const PU_SINK_PORT = 8091;
const READY_TIMEOUT_MS = 15_000;
/** The daemon rediscovers listening ports every 250 ms; a PU ends ~2 s after its last process. */
const PU_SETTLE_TIMEOUT_MS = 6_000;

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
  /** Cleanup commands of PU scenarios whose handlers ran (rules, cgroups), run by cleanup(). */
  private readonly leftovers = new Map<string, { host: NsHost; argv: string[] }>();

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
    startReaper(
      ['a', 'b', 'sw'].map((h) => `${this.prefix}-${h}`),
      active.flatMap((s) => (s.pu ? ['a', 'b'].map((h) => s.pu!.cgroupPrefix(`${this.prefix}-${h}`)) : [])),
    );
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

    for (const s of active) {
      if (!s.prepare) continue;
      const shared = join(this.scratch, s.id);
      mkdirSync(shared, { recursive: true });
      await s.prepare(this.root, shared, async (argv) => {
        const r = await run(argv, { timeoutMs: 60_000 });
        if (r.code !== 0) throw new TesseraError('TESSERA_ERR_COMMAND', `${s.id}: ${argv.join(' ')} failed: ${(r.stderr || r.stdout).trim()}`);
      });
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
      targets: targets(rows, { bulk: this.opts.bulkBytes > 0 }),
      samples,
    };
  }

  /** End every process we started (by PID), remove the topology and scratch files. Idempotent. */
  cleanup(): Promise<void> {
    this.cleaning ??= (async () => {
      await Promise.all([...this.procs].map((c) => killAndWait(c, 2000)));
      this.procs.clear();
      await this.runLeftovers();
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
    const puProcs: Managed[] = [];
    const queue = 10 + SCENARIOS.findIndex((x) => x.id === s.id);
    const shared = join(this.scratch, s.id);
    const ctxOf = (host: NsHost, role: 'client' | 'server', peer: NsHost): HandlerContext => ({
      root: this.root,
      bin: (n) => join(this.out, n),
      queue,
      host,
      role,
      peer,
      dir: join(shared, host.name),
      shared,
    });
    const ctxA = ctxOf(a, 'client', b);
    const ctxB = ctxOf(b, 'server', a);
    const pu = s.pu;
    let rulesIn = false;
    try {
      if (typeof s.handler === 'function') {
        for (const ctx of [ctxA, ctxB]) {
          // A fresh state directory every round: no PU state or socket carried over.
          rmSync(ctx.dir, { recursive: true, force: true });
          mkdirSync(ctx.dir, { recursive: true });
          if (pu) this.leftovers.set(`${s.id}@${ctx.host.name}`, { host: ctx.host, argv: pu.cleanup(ctx) });
          handlers.push(this.startManaged(ctx.host, s.handler(ctx), `${s.id}@${ctx.host.name}`, s.probe ? null : s.ready));
        }
        if (s.probe) await Promise.all([ctxA, ctxB].map((ctx, i) => this.probe(ctx, s.probe!(ctx), handlers[i]!)));
        else await Promise.all(handlers.map((h) => h.ready));
      }
      if (s.rules === 'bench') {
        rulesIn = true;
        await this.queueRules(a, 'client', queue);
        await this.queueRules(b, 'server', queue);
      }
      let pongPort = PONG_PORT;
      let sinkPort = SINK_PORT;
      let wrap: string[] = [];
      if (pu) {
        // The server side of a PU is found by its listening port: the daemon must have seen it.
        pongPort = PU_PONG_PORT;
        sinkPort = PU_SINK_PORT;
        const ports = [pongPort, ...(this.opts.bulkBytes > 0 ? [sinkPort] : [])];
        // One after the other: `tessera daemon` gives two PUs created at the same moment the
        // same PU index, and then cannot install any rule (reported; see docs/performance.md).
        for (const port of ports) {
          const argv = [...pu.wrap(ctxB), ...this.pinned(1), join(this.out, 'server'), '--addr', b.addr, '--port', String(port), ...(port === sinkPort ? ['--sink'] : [])];
          const m = this.startManaged(b, argv, `${s.id}-server:${port}`);
          puProcs.push(m);
          await m.ready;
        }
        await this.waitPus(ctxB, pu, `server PU listening on ${ports.join(', ')}`, (pus) => ports.every((port) => pus.some((p) => p.ports.includes(port))));
        // The daemon retries a failed rule transaction on its 10 s reconcile tick: allow one.
        for (const port of ports) await this.until(ctxB.host, pu.serving(ctxB, port), `${s.id}: rules for port ${port} (daemon: ${handlers[1]?.tail() ?? ''})`, 15_000);
        wrap = pu.wrap(ctxA);
      }
      // Every client phase of a PU scenario is its own `tessera run`, i.e. its own PU; wait until
      // the previous one is gone so its removal (a rule transaction) does not land in a timed phase.
      const settle = async (): Promise<void> => {
        if (pu) await this.waitPus(ctxA, pu, 'the previous client PU to end', (pus) => pus.length === 0);
      };
      const target = ['--addr', b.addr, '--port', String(pongPort)];
      // A daemon's first seconds (protocol v2): its strike register refuses proofs made before it
      // started (+ skew), and a client's first contact with a host takes one retry exchange
      // (a SYN retransmission, 1 s). One connection with time to retransmit gets past both.
      if (pu) {
        let first = 0;
        for (let i = 0; i < 5 && first === 0; i++) first = (await this.client(a, [...target, '--concurrency', '1', '--seconds', '4', '--count', '1', '--timeout-ms', '4000', '--drain-ms', '4000'], wrap)).connections;
        if (first === 0) throw new TesseraError('TESSERA_ERR_COMMAND', 'first contact: no connection succeeded in 5 tries');
        await settle();
      }
      // Warm-up: JIT, caches, and a check that the path works at all before timing it. Every
      // round starts fresh daemons, and a daemon's handler is still being optimized for about
      // 1.5 s of full load (perf of the CA row: TurboFan threads busy through the first 1.5 s
      // of a rate phase after a 0.3 s warm-up, 7 % of its CPU): without this the rows would
      // time the JIT, once per daemon start, rather than the steady state.
      const warm = await this.client(a, [...target, '--concurrency', String(this.opts.concurrency), '--seconds', String(this.opts.warmup), '--count', String(Math.max(3000, Math.round(this.opts.warmup * 40_000)))], wrap);
      if (warm.connections === 0) throw new TesseraError('TESSERA_ERR_COMMAND', `warm-up: no connection succeeded (${warm.errors} errors)`);
      await settle();

      // TIME_WAIT sockets on the server host (the server closes first): a handler that walks
      // the socket table pays for them, and they pile up over the run (see docs/performance.md).
      sample.serverTimeWait = await this.timeWait(b);
      const pids = handlers.flatMap((h) => (h.child.pid ? [realPid(h.child.pid)] : []));
      const cpu0 = cpuMicros(pids);
      const main0 = mainThreadMicros(pids);
      const perfRate = this.perf(pids, `${s.id}-r${run}-rate`);
      sample.rate = await this.client(
        a,
        [...target, '--concurrency', String(this.opts.concurrency), '--seconds', String(this.opts.seconds), '--count', String(this.opts.count)],
        wrap,
      );
      sample.handlerCpuUs = handlers.length ? cpuMicros(pids) - cpu0 : 0;
      if (handlers.length) sample.handlerMainThreadCpuUs = mainThreadMicros(pids) - main0;
      await perfRate?.();
      await settle();
      const perfLatency = this.perf(pids, `${s.id}-r${run}-latency`);
      sample.latency = await this.client(a, [...target, '--concurrency', '1', '--seconds', String(this.opts.seconds), '--count', String(this.opts.latencyCount)], wrap);
      await perfLatency?.();
      if (this.opts.bulkBytes > 0) {
        await settle();
        sample.bulk = (await this.client(
          a,
          ['--addr', b.addr, '--port', String(sinkPort), '--bulk', String(this.opts.bulkBytes), '--seconds', String(Math.max(this.opts.seconds, 5))],
          wrap,
        )) as unknown as BulkResult;
      }
      const dead = [...handlers, ...puProcs].filter((h) => h.child.exitCode !== null || h.child.signalCode !== null);
      if (dead.length) throw new TesseraError('TESSERA_ERR_COMMAND', `exited during the run: ${dead.map((h) => `${h.name}: ${h.tail()}`).join('; ')}`);
    } catch (err) {
      sample.failure = errorMessage(err).split('\n')[0] ?? 'failed';
    } finally {
      // PU servers first (while their daemon still runs), then rules, then handlers.
      await Promise.all(puProcs.map((h) => this.stop(h)));
      if (rulesIn && !this.signal.aborted) {
        await this.flushMangle(a).catch(() => {});
        await this.flushMangle(b).catch(() => {});
      }
      await Promise.all(handlers.map((h) => this.stop(h)));
      // A stopped (or killed) daemon leaves its rules and PU cgroups in place (fail-closed):
      // `tessera cleanup`, run once the handlers are gone, removes them and its net_cls
      // subtree (machine-wide) whatever happened.
      if (pu) await this.runLeftovers();
    }
    return sample;
  }

  /**
   * BENCH_PERF=DIR: `perf record -g` of the handler processes (every thread, kernel stacks
   * included: a verdict's sendto carries the packet on through the stack) for one timed phase,
   * into DIR/<scenario>-r<round>-<phase>.data. Returns the function that stops it, or null.
   * BENCH_PERF_ARGS adds perf options (e.g. "-e sched:sched_switch"). Run the handlers with
   * BENCH_NODE_FLAGS="--perf-basic-prof --interpreted-frames-native-stack" so JS frames resolve.
   */
  private perf(pids: number[], name: string): (() => Promise<void>) | null {
    const dir = process.env.BENCH_PERF;
    if (!dir || pids.length === 0) return null;
    mkdirSync(dir, { recursive: true });
    const extra = process.env.BENCH_PERF_ARGS?.split(' ').filter(Boolean) ?? [];
    const child = spawn('perf', ['record', '-q', '-g', '-F', '4999', ...extra, '-p', pids.join(','), '-o', join(dir, `${name}.data`)], { stdio: 'ignore' });
    this.procs.add(child);
    return async () => {
      // SIGINT: perf writes its file and exits; SIGKILL only if it has not after 20 s.
      const exited = new Promise<void>((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())));
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
      this.procs.delete(child);
    };
  }

  /** TIME_WAIT sockets in host h, from /proc/net/sockstat (cheap: a counter, not a table walk). */
  private async timeWait(h: NsHost): Promise<number | undefined> {
    const r = await h.exec(['cat', '/proc/net/sockstat']);
    const m = /^TCP:.*\btw (\d+)/m.exec(r.stdout);
    return m ? Number(m[1]) : undefined;
  }

  /** Run `argv` in the handler's host until it exits 0 (the handler is ready), bounded. */
  private async probe(ctx: HandlerContext, argv: string[], h: Managed): Promise<void> {
    const end = Date.now() + READY_TIMEOUT_MS;
    let last = '';
    while (Date.now() < end) {
      if (h.child.exitCode !== null || h.child.signalCode !== null) throw new TesseraError('TESSERA_ERR_COMMAND', `${h.name} exited before ready: ${h.tail()}`);
      this.checkAborted();
      const r = await ctx.host.exec(argv, { timeoutMs: 5000 });
      if (r.code === 0) return;
      last = (r.stderr || r.stdout).trim().split('\n').pop() ?? '';
      await sleep(100);
    }
    throw new TesseraError('TESSERA_ERR_COMMAND', `${h.name} not ready after ${READY_TIMEOUT_MS} ms: ${last} | ${h.tail()}`);
  }

  /** Run `argv` in host h until it exits 0, bounded. */
  private async until(h: NsHost, argv: string[], what: string, timeoutMs = PU_SETTLE_TIMEOUT_MS): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      this.checkAborted();
      if ((await h.exec(argv, { timeoutMs: 5000 })).code === 0) return;
      await sleep(50);
    }
    throw new TesseraError('TESSERA_ERR_COMMAND', `${h.name}: timed out waiting for ${what}`);
  }

  /** Poll the handler's status until `ok` holds for its PU list, bounded. */
  private async waitPus(ctx: HandlerContext, pu: PuSupport, what: string, ok: (pus: { ports: number[] }[]) => boolean): Promise<void> {
    const end = Date.now() + PU_SETTLE_TIMEOUT_MS;
    let last = '';
    while (Date.now() < end) {
      this.checkAborted();
      const r = await ctx.host.exec(pu.status(ctx), { timeoutMs: 5000 });
      if (r.code === 0) {
        try {
          const pus = (JSON.parse(r.stdout) as { pus: { ports: number[] }[] }).pus;
          if (ok(pus)) return;
          last = JSON.stringify(pus.map((p) => p.ports));
        } catch (err) {
          last = errorMessage(err);
        }
      } else last = r.stderr.trim();
      await sleep(100);
    }
    throw new TesseraError('TESSERA_ERR_COMMAND', `${ctx.host.name}: timed out waiting for ${what} (PU ports: ${last})`);
  }

  /** Cleanup commands of PU handlers (rules, cgroups), each run once. */
  private async runLeftovers(): Promise<void> {
    for (const [key, { host, argv }] of this.leftovers) {
      this.leftovers.delete(key);
      const r = await host.exec(argv, { timeoutMs: 30_000 });
      if (r.code !== 0) this.log(`bench: warning: ${key}: ${argv.slice(-3).join(' ')} failed: ${r.stderr.trim()}`);
    }
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

  private startManaged(host: NsHost, argv: string[], name: string, ready: RegExp | null = /^ready$/m): Managed {
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
      if (ready === null) return resolve(); // readiness is probed by the caller
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
    // A wrapper (tessera run) forwards SIGTERM to its command; if it is SIGKILLed instead, its
    // command would stay behind: those are ours too, end them by PID.
    const kids = m.child.pid ? descendants(m.child.pid) : [];
    await killAndWait(m.child, 3000);
    this.procs.delete(m.child);
    for (const pid of kids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }

  /** Run the C client in host h and parse its JSON line; bounded by its own --seconds plus slack. */
  private client(h: NsHost, args: string[], wrap: string[] = []): Promise<ClientResult> {
    const secIdx = args.indexOf('--seconds');
    const limitMs = (Number(args[secIdx + 1] ?? 10) + 10) * 1000;
    return new Promise((resolve, reject) => {
      const child = h.spawn([...wrap, ...this.pinned(0), join(this.out, 'client'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function ppidOf(pid: number): number | null {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

/** Every live descendant of pid (by ppid), deepest last. */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pp = ppidOf(Number(name));
    if (pp !== null) parent.set(Number(name), pp);
  }
  const out: number[] = [];
  const want = new Set([pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [p, pp] of parent) {
      if (!want.has(p) && want.has(pp)) {
        want.add(p);
        out.push(p);
        grew = true;
      }
    }
  }
  return out;
}

/**
 * The process doing the work behind a `host.spawn` PID. `ip netns exec` execs its command in
 * place (same PID) on this iproute2, but a version that forks would leave the PID on `ip`,
 * whose own CPU is ~0: then take its only child.
 */
export function realPid(pid: number): number {
  try {
    const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    if (comm !== 'ip') return pid;
    const kids = descendants(pid).filter((k) => ppidOf(k) === pid);
    return kids.length === 1 ? kids[0]! : pid;
  } catch {
    return pid;
  }
}

function describe(s: RunSample): string {
  if (s.failure && !s.rate) return `FAILED: ${s.failure}`;
  const parts = [
    s.rate ? `${Math.round(s.rate.connPerSec)} conn/s` : '',
    s.latency ? `p50 ${s.latency.connectP50Us.toFixed(0)} µs p99 ${s.latency.connectP99Us.toFixed(0)} µs (${s.latency.connections} one at a time)` : '',
    s.rate && s.handlerCpuUs !== undefined && s.rate.connections
      ? `cpu ${(s.handlerCpuUs / s.rate.connections).toFixed(1)} µs/conn` +
        (s.handlerMainThreadCpuUs !== undefined ? ` (main threads ${(s.handlerMainThreadCpuUs / s.rate.connections).toFixed(1)})` : '')
      : '',
    s.bulk ? `bulk ${Math.round(s.bulk.mbPerSec)} MB/s` : '',
    s.serverTimeWait !== undefined ? `server TIME_WAIT ${s.serverTimeWait}` : '',
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
