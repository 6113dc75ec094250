// One daemon per network namespace (an abstract unix socket) and per cgroup root (a PID lock
// file): a second taker is refused with TESSERA_ERR_LOCKED naming the holder; a lock whose
// holder died is free again; a lock file whose PID is dead or not tessera is stale.
// Each test uses its own abstract name and lock directory, so nothing here meets a real daemon.
import { describe, expect, it, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { acquireLocks, cgroupRootHolder, isTesseraProcess, netnsHolder } from '../../../src/daemon/lock.js';

function lockError(p: Promise<unknown>): Promise<Error & { code?: string }> {
  return p.then(
    () => {
      throw new Error('expected the lock to be refused');
    },
    (err: Error & { code?: string }) => err,
  );
}

describe('daemon locks', () => {
  let lockDir: string;
  let netnsName: string;
  const children: ChildProcess[] = [];
  beforeEach(() => {
    lockDir = mkdtempSync(join(tmpdir(), 'tessera-lock-'));
    netnsName = `tessera-lock-test-${randomBytes(6).toString('hex')}`;
  });
  afterEach(() => {
    for (const c of children.splice(0)) c.kill('SIGKILL');
    rmSync(lockDir, { recursive: true, force: true });
  });

  /** A live process whose command line looks like a tessera daemon, to hold a lock file. */
  async function fakeDaemon(): Promise<number> {
    const c = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', '/opt/tessera/dist/src/bin/tessera.js', 'daemon'], { stdio: 'ignore' });
    children.push(c);
    await new Promise((r) => c.once('spawn', r));
    return c.pid!;
  }

  it('refuses a second taker of the namespace lock, naming the holder; free again after release', async () => {
    const first = await acquireLocks({ cgroupRoot: 'root-a', role: 'daemon', socket: '/run/x.sock', lockDir, netnsName });
    const holder = await netnsHolder(netnsName);
    expect(holder).toEqual({ pid: process.pid, role: 'daemon', cgroupRoot: 'root-a', socket: '/run/x.sock' });
    const err = await lockError(acquireLocks({ cgroupRoot: 'root-b', role: 'daemon', lockDir, netnsName }));
    expect(err.code).toBe('TESSERA_ERR_LOCKED');
    expect(err.message).toContain(`pid ${process.pid}`);
    expect(err.message).toContain('/run/x.sock');
    // The refused taker left nothing behind: root-b's file was never made.
    expect(existsSync(join(lockDir, 'cgroup-root-b.lock'))).toBe(false);
    await first.release();
    expect(await netnsHolder(netnsName)).toBeNull();
    expect(existsSync(join(lockDir, 'cgroup-root-a.lock'))).toBe(false);
    const again = await acquireLocks({ cgroupRoot: 'root-b', role: 'cleanup', lockDir, netnsName });
    await again.release();
  });

  it('the namespace lock dies with its holder, kill -9 included', async () => {
    const script = `const net=require('node:net');net.createServer(c=>c.end('{"pid":'+process.pid+',"role":"daemon"}')).listen({path:'\\0${netnsName}'},()=>console.log('up'))`;
    const c = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(c);
    await new Promise((r) => c.stdout!.once('data', r));
    const err = await lockError(acquireLocks({ cgroupRoot: 'root-a', role: 'daemon', lockDir, netnsName }));
    expect(err.message).toContain(`pid ${c.pid}`);
    c.kill('SIGKILL');
    await new Promise((r) => c.once('exit', r));
    const taken = await acquireLocks({ cgroupRoot: 'root-a', role: 'daemon', lockDir, netnsName });
    await taken.release();
  });

  it('refuses a cgroup root held by a live tessera process (another namespace), naming root and pid', async () => {
    const pid = await fakeDaemon();
    expect(isTesseraProcess(pid)).toBe(true);
    writeFileSync(join(lockDir, 'cgroup-root-a.lock'), JSON.stringify({ pid, role: 'daemon', cgroupRoot: 'root-a' }));
    expect(cgroupRootHolder('root-a', lockDir)?.pid).toBe(pid);
    const err = await lockError(acquireLocks({ cgroupRoot: 'root-a', role: 'daemon', lockDir, netnsName }));
    expect(err.code).toBe('TESSERA_ERR_LOCKED');
    expect(err.message).toContain('root-a');
    expect(err.message).toContain(`pid ${pid}`);
    // The namespace lock taken on the way was given back.
    expect(await netnsHolder(netnsName)).toBeNull();
  });

  it('replaces a stale lock file: dead PID, a PID that is not tessera, garbage', async () => {
    const dead = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
    await new Promise((r) => dead.once('exit', r));
    const notTessera = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(notTessera);
    for (const content of [JSON.stringify({ pid: dead.pid, role: 'daemon' }), JSON.stringify({ pid: notTessera.pid, role: 'daemon' }), '{not json']) {
      writeFileSync(join(lockDir, 'cgroup-root-a.lock'), content);
      expect(cgroupRootHolder('root-a', lockDir)).toBeNull();
      const held = await acquireLocks({ cgroupRoot: 'root-a', role: 'daemon', lockDir, netnsName });
      expect(JSON.parse(readFileSync(join(lockDir, 'cgroup-root-a.lock'), 'utf8')).pid).toBe(process.pid);
      await held.release();
      expect(existsSync(join(lockDir, 'cgroup-root-a.lock'))).toBe(false);
    }
  });

  it('release leaves a lock file that is no longer its own', async () => {
    const held = await acquireLocks({ cgroupRoot: 'root-a', role: 'daemon', lockDir, netnsName });
    const other = JSON.stringify({ pid: 1, role: 'cleanup' });
    writeFileSync(join(lockDir, 'cgroup-root-a.lock'), other); // e.g. replaced by a forced cleanup
    await held.release();
    expect(readFileSync(join(lockDir, 'cgroup-root-a.lock'), 'utf8')).toBe(other);
  });
});
