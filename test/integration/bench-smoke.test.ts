// Smoke test of the benchmark harness (bench/): it builds, brings up its namespaces, measures
// the baseline and the C accept-all ceiling, prints well-formed JSON, and leaves nothing behind,
// also when interrupted. No timing assertions: this machine is shared and noisy.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { isRoot } from '../../scripts/lib/netns.js';
import { parseOptions } from '../../bench/lib/options.js';
import { markdown, median, summarize, targets, type ClientResult, type RunSample } from '../../bench/lib/report.js';
import { skipBecause } from '../helpers/skip.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

interface Done {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const started = new Set<ChildProcess>();

// The bench runs in its own process group so that, like Ctrl-C in a terminal, a signal
// reaches it and everything it started; we signal that group by its leader's PID only.
function startBench(args: string[]): { child: ChildProcess; done: Promise<Done>; stderr: () => string } {
  const child = spawn('npx', ['tsx', 'bench/run.ts', ...args], { cwd: root, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const done = new Promise<Done>((res) =>
    child.once('close', (code, signal) => {
      started.delete(child);
      res({ code, signal, stdout, stderr });
    }),
  );
  return { child, done, stderr: () => stderr };
}

function signalGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  try {
    if (child.pid) process.kill(-child.pid, sig);
  } catch {
    /* already gone */
  }
}

async function waitFor(pred: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (pred()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return pred();
}

function prefixOf(stderr: string): string | null {
  return /topology up prefix=(\S+)/.exec(stderr)?.[1] ?? null;
}

function namespacesWith(prefix: string): string[] {
  if (!existsSync('/run/netns')) return [];
  return readdirSync('/run/netns').filter((n) => n.startsWith(`${prefix}-`));
}

// Processes still inside the given network namespaces (by nsfs inode).
function processesIn(inodes: Set<number>): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const m = /net:\[(\d+)\]/.exec(readlinkSync(`/proc/${name}/ns/net`));
      if (m && inodes.has(Number(m[1]))) pids.push(Number(name));
    } catch {
      /* gone or not ours to read */
    }
  }
  return pids;
}

afterAll(async () => {
  // A failed or timed-out test must not leave a bench running: SIGINT makes it clean up.
  for (const c of started) signalGroup(c, 'SIGINT');
  await waitFor(() => started.size === 0, 15_000);
  for (const c of started) signalGroup(c, 'SIGKILL');
});

function client(connPerSec: number, p50: number, errors = 0): ClientResult {
  return {
    connections: 1000,
    errors,
    timeouts: 0,
    drained: 0,
    abandoned: 0,
    seconds: 1000 / connPerSec,
    connPerSec,
    connectP50Us: p50,
    connectP99Us: p50 * 3,
    connectMeanUs: p50,
    totalP50Us: p50 * 2,
    totalP99Us: p50 * 6,
  };
}

describe('bench report and options (no root)', () => {
  it('takes medians and ratios against the baseline and the C ceiling', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNull();
    const info = [
      { id: 'baseline', title: 'base', passes: 0 },
      { id: 'c-accept', title: 'c', passes: 4 },
      { id: 'tessera-accept', title: 't', passes: 4 },
    ];
    const samples: RunSample[] = [];
    for (const [run, k] of [1, 1.1, 0.9].entries()) {
      samples.push({ scenario: 'baseline', run, rate: client(20000 * k, 40), latency: client(5000, 40), handlerCpuUs: 0 });
      samples.push({ scenario: 'c-accept', run, rate: client(16000 * k, 100), latency: client(5000, 100), handlerCpuUs: 40_000 });
      samples.push({ scenario: 'tessera-accept', run, rate: client(15680 * k, 120), latency: client(5000, 120, 1), handlerCpuUs: 50_000 });
    }
    const rows = summarize(info, samples);
    const [b, c, t] = rows;
    expect(b!.connPerSec).toBe(20000);
    expect(c!.ratioToBaseline).toBeCloseTo(0.8);
    expect(c!.addedP50Us).toBe(60);
    expect(t!.addedP50Us).toBe(80);
    expect(c!.handlerCpuUsPerConn).toBe(40);
    expect(t!.errors).toBe(3);
    const [rate, added] = targets(rows);
    expect(rate!.value).toBeCloseTo(0.98);
    expect(rate!.pass).toBe(true);
    expect(added!.value).toBeCloseTo(80 / 60);
    expect(added!.pass).toBe(false);
    const md = markdown(rows, targets(rows), { bulk: false, skipped: [{ id: 'x', title: 'X mode', reason: 'no command' }] });
    expect(md).toContain('| scenario | conn/s (32) | ratio to baseline |');
    expect(md).toMatch(/tessera accept-all conn\/s \/ C accept-all conn\/s = 0\.98 \(target >= 0\.95\) PASS/);
    expect(md).toMatch(/tessera added p50 \/ C added p50 = 1\.33 \(target <= 1\.3\) FAIL/);
    expect(md).toContain('skipped: no command');
  });

  it('computes the full mutual auth targets against the baseline and the npm handler', () => {
    const info = [
      { id: 'baseline', title: 'base', passes: 0 },
      { id: 'nfqueue-npm', title: 'npm', passes: 4 },
      { id: 'tessera-ca', title: 'ca', passes: 4 },
      { id: 'tessera-daemon-accept', title: 'four-pass floor', passes: 4 },
    ];
    const bulk = (mbPerSec: number) => ({ bytes: 1e8, seconds: 1e8 / 1e6 / mbPerSec, mbPerSec, complete: true, errors: 0 });
    const samples: RunSample[] = [
      { scenario: 'baseline', run: 1, rate: client(10000, 40), latency: client(5000, 40), handlerCpuUs: 0, bulk: bulk(1000) },
      // 60 µs/conn of handler CPU over 1000 connections
      { scenario: 'nfqueue-npm', run: 1, rate: client(8000, 140), latency: client(5000, 140), handlerCpuUs: 60_000 },
      { scenario: 'tessera-ca', run: 1, rate: client(7500, 230), latency: client(5000, 230), handlerCpuUs: 90_000, bulk: bulk(990) },
      { scenario: 'tessera-daemon-accept', run: 1, rate: client(10000, 100), latency: client(5000, 100), handlerCpuUs: 0 },
    ];
    const rows = summarize(info, samples);
    const t = targets(rows, { bulk: true });
    const by = (prefix: string) => t.find((x) => x.name.startsWith(prefix))!;
    // Protocol v2's target: against the four-pass floor (7,500 / 10,000), not the baseline.
    expect(by('full mutual auth (CA) conn/s').value).toBeCloseTo(0.75);
    expect(by('full mutual auth (CA) conn/s').pass).toBe(false);
    expect(by('full mutual auth (CA) added connect p50').value).toBe(190);
    expect(by('full mutual auth (CA) added connect p50').pass).toBe(false);
    expect(by('full mutual auth (CA) handler CPU').value).toBeCloseTo(1.5);
    expect(by('full mutual auth (CA) handler CPU').pass).toBe(false);
    expect(by('full mutual auth (CA) bulk').value).toBeCloseTo(0.99);
    expect(by('full mutual auth (CA) bulk').pass).toBe(true);
    // Without --bulk there is no bulk target at all, rather than an n/a one.
    expect(targets(rows).some((x) => x.name.includes('bulk'))).toBe(false);
    // The per-pass column divides by the row's passes (4 here): (230 - 40) / 4 and 90 / 4.
    expect(markdown(rows, t, { bulk: true, skipped: [] })).toContain('| 48 / 22.5 |');
  });

  it('reports targets as not computable when tessera was not measured', () => {
    const rows = summarize([{ id: 'baseline', title: 'b', passes: 0 }], [{ scenario: 'baseline', run: 1, rate: client(1000, 40), latency: client(100, 40) }]);
    for (const t of targets(rows)) {
      expect(t.value).toBeNull();
      expect(t.pass).toBeNull();
    }
  });

  it('parses options: --quick defaults yield to explicit values, bad values are rejected', () => {
    expect(parseOptions(['--quick'])).toMatchObject({ runs: 3, seconds: 1 });
    expect(parseOptions(['--runs', '1', '--quick', '--seconds', '2'])).toMatchObject({ runs: 1, seconds: 2 });
    expect(parseOptions(['--bulk'])!.bulkBytes).toBe(100e6);
    expect(parseOptions(['--bulk', '10', '--json'])).toMatchObject({ bulkBytes: 10e6, json: true });
    expect(parseOptions(['--scenarios', 'baseline,c-accept'])!.scenarios).toEqual(['baseline', 'c-accept']);
    expect(() => parseOptions(['--runs', '0'])).toThrow(/--runs must be an integer >= 1/);
    expect(() => parseOptions(['--frobnicate'])).toThrow(expect.objectContaining({ code: 'TESSERA_ERR_INVALID_ARGUMENT' }));
    expect(parseOptions(['--help'])).toBeNull();
  });
});

skipBecause(!isRoot, 'bench smoke needs root', 'integration tests need root (network namespaces, iptables, NFQUEUE): run as root');

describe.runIf(isRoot)('bench smoke (root)', () => {
  it('measures baseline and C accept-all, prints JSON, removes its namespaces', async () => {
    const b = startBench(['--quick', '--scenarios', 'baseline,c-accept', '--runs', '1', '--seconds', '1', '--json']);
    const timer = setTimeout(() => signalGroup(b.child, 'SIGINT'), 150_000);
    const r = await b.done;
    clearTimeout(timer);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { rows: { id: string; connections: number; errors: number; connPerSec: number }[]; topology: { prefix: string } };
    expect(out.rows.map((x) => x.id)).toEqual(['baseline', 'c-accept']);
    for (const row of out.rows) {
      expect(row.connections, row.id).toBeGreaterThan(0);
      expect(row.errors, `${row.id}: ${JSON.stringify(row)}`).toBe(0);
      expect(row.connPerSec, row.id).toBeGreaterThan(0);
    }
    expect(namespacesWith(out.topology.prefix)).toEqual([]);
  }, 180_000);

  it('cleans up on Ctrl-C: namespaces gone, no process left inside them', async () => {
    const b = startBench(['--scenarios', 'baseline,c-accept', '--runs', '5', '--seconds', '2']);
    const up = await waitFor(() => prefixOf(b.stderr()) !== null, 120_000);
    expect(up, b.stderr()).toBe(true);
    const prefix = prefixOf(b.stderr())!;
    const inodes = new Set(['a', 'b'].map((h) => statSync(`/run/netns/${prefix}-${h}`).ino));
    // Interrupt while handlers and clients are running (the first rounds take several seconds).
    await waitFor(() => /round 1\/5 baseline/.test(b.stderr()), 30_000);
    await new Promise((r) => setTimeout(r, 1500));
    expect(processesIn(inodes).length).toBeGreaterThan(0);
    signalGroup(b.child, 'SIGINT');
    const r = await b.done;
    expect(r.code === 0, `an interrupted bench must not report success: ${r.code} ${r.signal}`).toBe(false);
    expect(r.stderr).toContain('SIGINT: cleaning up');
    // Normally gone when the bench exits; if tsx SIGKILLed it mid-cleanup (it does that to a
    // child slow to acknowledge Ctrl-C), its watchdog finishes the job within a second or so.
    await waitFor(() => namespacesWith(prefix).length === 0 && processesIn(inodes).length === 0, 10_000);
    expect(namespacesWith(prefix), r.stderr).toEqual([]);
    expect(processesIn(inodes), r.stderr).toEqual([]);
  }, 180_000);
});
