// `tessera status | head -1`: the reader goes away and stdout answers EPIPE. The command
// ends quietly (status 0, nothing on stderr), never with a stack trace; a follower stops.
// The real executable (src/bin through tsx) in a shell pipeline into `head`.

import { afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { flow, startFakeDaemon, STATUS, type FakeDaemon } from './fake-daemon.js';

const root = join(import.meta.dirname, '..', '..', '..');
const bin = join(root, 'src', 'bin', 'tessera.ts');

/** `tessera ARGS | head -c 100` in bash, as a person types it: a real pipe. */
function runClosed(args: string[], whileRunning?: () => void): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const script = '"$0" --import tsx "$1" "${@:2}" | head -c 100 >/dev/null; exit ${PIPESTATUS[0]}';
    const child = spawn('bash', ['-c', script, process.execPath, bin, ...args], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = whileRunning ? setInterval(whileRunning, 20) : undefined;
    child.on('exit', (code) => {
      clearInterval(timer);
      resolve({ code: code ?? -1, stderr });
    });
  });
}

describe('a closed stdout (EPIPE)', () => {
  let d: FakeDaemon;
  afterEach(async () => d?.close());

  it('ends tessera flows and tessera status quietly when the reader goes after the first bytes', async () => {
    d = await startFakeDaemon({ status: STATUS, flows: Array.from({ length: 10_000 }, (_, i) => flow({ remotePort: 1024 + (i % 60_000) })) });
    const r = await runClosed(['flows', '--limit', '10000', '--socket', d.socket]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const s = await runClosed(['status', '--socket', d.socket]);
    expect(s).toEqual({ code: 0, stderr: '' });
  });

  it('stops tessera flows --follow when its reader goes', async () => {
    d = await startFakeDaemon({ status: STATUS, flows: [flow()] });
    let pushed = 0;
    // Once it follows: at most 2000 decisions pushed (every 20 ms, 100 each) while it runs.
    // (A follower learns that its reader left at its next write, as `tail -f | head` does.)
    const r = await runClosed(['flows', '-f', '--socket', d.socket], () => {
      if (d.flowQueries.length === 0) return;
      for (let i = 0; i < 100 && pushed < 2000; i++, pushed++) d.push(flow({ remotePort: 2000 + pushed }));
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(pushed).toBeLessThanOrEqual(2000);
  });
});

describe('a slow reader', () => {
  let d: FakeDaemon;
  afterEach(async () => d?.close());

  it('gets all of a large output: the process does not exit before stdout is flushed', async () => {
    // 4,000 flows as JSON lines are ~2 MB, far more than a pipe's buffer; the reader starts
    // late (sleep 1), so the output is still queued when the command returns its status.
    d = await startFakeDaemon({ status: STATUS, flows: Array.from({ length: 4000 }, (_, i) => flow({ remotePort: 1024 + i })) });
    const lines = await new Promise<string>((resolve) => {
      const script = '"$0" --import tsx "$1" "${@:2}" | (sleep 1; wc -l)';
      const child = spawn('bash', ['-c', script, process.execPath, bin, 'flows', '--json', '--limit', '4000', '--socket', d.socket], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
      child.on('exit', () => resolve(out.trim()));
    });
    expect(lines).toBe('4000');
  });
});
