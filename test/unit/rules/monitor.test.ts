// The rules change signal: unknown until the monitor shows it listens (it printed the probe),
// then a counter that every printed line moves; unknown again when the monitor ends, and a
// restart after a delay. The real `nft monitor` runs in the integration tests (the daemon).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PROBE_INPUT, watchRuleset } from '../../../src/rules/monitor.js';
import { createCommandRunner, type CommandRunner } from '../../../src/rules/runner.js';

function fakeRunner() {
  const streams: Array<{ argv: string[]; on: { line(t: string): void; exit(w: string): void }; stopped: boolean }> = [];
  const runs: Array<{ argv: string[]; input?: string }> = [];
  const runner: CommandRunner = {
    run: async (argv, opts) => {
      runs.push({ argv, ...(opts?.input !== undefined ? { input: opts.input } : {}) });
      return { stdout: '', stderr: '', code: 0 };
    },
    stream(argv, on) {
      const s = { argv, on, stopped: false };
      streams.push(s);
      return { write() {}, stop: () => void (s.stopped = true) };
    },
  };
  return { runner, streams, runs };
}

afterEach(() => void vi.useRealTimers());

describe('ruleset watch', () => {
  it('is unknown until the monitor printed the probe, then moves with every line', () => {
    vi.useFakeTimers();
    const f = fakeRunner();
    const w = watchRuleset({ runner: f.runner, setpriv: true, probeEveryMs: 300 });
    expect(f.streams[0]!.argv).toEqual(['setpriv', '--pdeathsig', 'KILL', 'nft', 'monitor']);
    expect(f.runs).toEqual([{ argv: ['nft', '-f', '-'], input: PROBE_INPUT }]);
    f.streams[0]!.on.line('add table ip mangle'); // before it has shown it listens: still unknown
    expect(w.generation()).toBeUndefined();
    vi.advanceTimersByTime(300);
    expect(f.runs).toHaveLength(2); // probed again
    f.streams[0]!.on.line('add table inet tessera_probe');
    const g = w.generation();
    expect(g).toBeTypeOf('number');
    vi.advanceTimersByTime(3000);
    expect(f.runs).toHaveLength(2); // no more probes once listening
    f.streams[0]!.on.line('# new generation 5 by process 1 (nft)');
    expect(w.generation()).not.toBe(g);
    w.stop();
    expect(f.streams[0]!.stopped).toBe(true);
    expect(w.generation()).toBeUndefined();
  });

  it('a monitor that ends makes the signal unknown and is started again after a delay', () => {
    vi.useFakeTimers();
    const f = fakeRunner();
    const warns: string[] = [];
    const w = watchRuleset({ runner: f.runner, setpriv: false, restartMs: 1000, log: { warn: (_o, m) => void warns.push(m ?? ''), debug() {} } });
    f.streams[0]!.on.line('delete table inet tessera_probe');
    expect(w.generation()).toBeTypeOf('number');
    f.streams[0]!.on.exit('nft monitor exited (status 1)');
    expect(w.generation()).toBeUndefined();
    expect(warns).toHaveLength(1);
    expect(f.streams).toHaveLength(1);
    vi.advanceTimersByTime(1000);
    expect(f.streams).toHaveLength(2);
    expect(f.streams[1]!.argv).toEqual(['nft', 'monitor']);
    w.stop();
  });

  it('without stream() (a plain runner) the signal is always unknown', () => {
    const w = watchRuleset({ runner: { run: async () => ({ stdout: '', stderr: '', code: 0 }) } });
    expect(w.generation()).toBeUndefined();
    w.stop();
  });

  it('the real runner streams lines and tells the exit once', async () => {
    const lines: string[] = [];
    const why = await new Promise<string>((resolve) => createCommandRunner().stream!(['sh', '-c', 'echo one; echo two; exit 3'], { line: (t) => void lines.push(t), exit: resolve }));
    expect(lines).toEqual(['one', 'two']);
    expect(why).toMatch(/status 3/);
  });
});
