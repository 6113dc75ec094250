// One daemon per network namespace and per net_cls subtree (cgroup root).
//
// - Network namespace: an abstract unix socket. Its name lives in the namespace that binds
//   it, and the kernel frees it when the process ends however it ends (kill -9 included), so
//   no stale lock can outlive its holder. A second binder gets EADDRINUSE; connecting to it
//   reads who holds it (one JSON line).
// - Cgroup root (machine-wide, shared by every namespace): a file LOCK_DIR/cgroup-ROOT.lock
//   made with O_EXCL holding the holder's PID. A file whose PID is not alive, or is not a
//   tessera daemon (PIDs are reused), is stale and replaced.
//
// `tessera cleanup` takes the same locks for as long as it runs, so it refuses while a daemon
// runs and a daemon does not start in the middle of a cleanup.

import { createServer, connect, type Server } from 'node:net';
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TesseraError, errorMessage } from '../errors.js';

export const LOCK_DIR = '/run/tessera';
/** Abstract socket name (no leading NUL here); one per network namespace. */
export const NETNS_LOCK_NAME = 'tessera-daemon-lock';

export interface LockHolder {
  pid: number;
  /** What holds it: "daemon" or "cleanup". */
  role: string;
  socket?: string;
  cgroupRoot?: string;
}

export interface HeldLocks {
  release(): Promise<void>;
}

export interface LockOptions {
  cgroupRoot: string;
  role: 'daemon' | 'cleanup';
  socket?: string;
  /** Directory of the cgroup-root lock files (default /run/tessera). */
  lockDir?: string;
  /** Abstract socket name (default NETNS_LOCK_NAME; tests use their own). */
  netnsName?: string;
}

function describe(h: LockHolder | null): string {
  if (!h) return 'another process (it did not say which)';
  const where = [h.socket ? `socket ${h.socket}` : '', h.cgroupRoot ? `cgroup root ${h.cgroupRoot}` : ''].filter(Boolean).join(', ');
  return `tessera ${h.role} pid ${h.pid}${where ? ` (${where})` : ''}`;
}

function locked(message: string): TesseraError {
  return new TesseraError('TESSERA_ERR_LOCKED', message);
}

/** Who holds this namespace's lock, or null when nobody does. */
export function netnsHolder(name = NETNS_LOCK_NAME, timeoutMs = 2000): Promise<LockHolder | null | 'unknown'> {
  return new Promise((resolve) => {
    const s = connect({ path: '\0' + name });
    let text = '';
    const timer = setTimeout(() => done('unknown'), timeoutMs);
    const done = (v: LockHolder | null | 'unknown'): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    s.on('data', (d: Buffer) => (text += d.toString('utf8')));
    s.on('end', () => {
      try {
        done(JSON.parse(text) as LockHolder);
      } catch {
        done('unknown');
      }
    });
    s.on('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' || err.code === 'ENOENT' ? null : 'unknown'));
  });
}

async function lockNetns(name: string, me: LockHolder): Promise<Server> {
  const server = createServer((c) => c.end(JSON.stringify(me) + '\n'));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ path: '\0' + name }, () => resolve());
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw new TesseraError('TESSERA_ERR_LOCKED', `cannot take this network namespace's lock: ${errorMessage(err)}`, { cause: err });
    const h = await netnsHolder(name);
    throw locked(`${describe(h === 'unknown' ? null : h)} already runs in this network namespace: stop it first (one daemon per network namespace)`);
  }
  server.unref();
  return server;
}

/** True when `pid` is a live process whose command line is a tessera daemon or cleanup. */
export function isTesseraProcess(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.some((a) => /tessera/.test(a)) && argv.some((a) => a === 'daemon' || a === 'cleanup');
  } catch {
    return false;
  }
}

/** The live holder of a cgroup root's lock file, or null (absent, unreadable or stale). */
export function cgroupRootHolder(cgroupRoot: string, lockDir = LOCK_DIR): LockHolder | null {
  let h: LockHolder;
  try {
    h = JSON.parse(readFileSync(lockFile(lockDir, cgroupRoot), 'utf8')) as LockHolder;
  } catch {
    return null;
  }
  return h && isTesseraProcess(h.pid) && h.pid !== process.pid ? h : null;
}

function lockFile(lockDir: string, cgroupRoot: string): string {
  return join(lockDir, `cgroup-${cgroupRoot}.lock`);
}

function lockCgroupRoot(lockDir: string, me: LockHolder, cgroupRoot: string): () => void {
  mkdirSync(lockDir, { recursive: true, mode: 0o700 });
  const file = lockFile(lockDir, cgroupRoot);
  const text = JSON.stringify(me) + '\n';
  // Bounded: each round either creates the file or removes a stale one.
  for (let round = 0; round < 3; round++) {
    try {
      writeFileSync(file, text, { flag: 'wx', mode: 0o600 });
      return () => {
        // Only our own file: a forced cleanup may have replaced it meanwhile.
        try {
          if (readFileSync(file, 'utf8') === text) unlinkSync(file);
        } catch {
          /* gone */
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new TesseraError('TESSERA_ERR_LOCKED', `cannot create ${file}: ${errorMessage(err)}`, { cause: err });
    }
    const holder = cgroupRootHolder(cgroupRoot, lockDir);
    if (holder) throw locked(`${describe(holder)} holds the cgroup root ${cgroupRoot} (${file}): one daemon per cgroup root; stop it or use another --cgroup-root`);
    try {
      unlinkSync(file); // stale: its process is gone or is not tessera
    } catch {
      /* raced with another remover */
    }
  }
  throw locked(`cannot take ${file}: it keeps coming back; is another tessera starting?`);
}

/**
 * Take this network namespace's lock and the cgroup root's, or throw TESSERA_ERR_LOCKED
 * naming the holder. Both are released by release(), and by the kernel when the process
 * dies (the lock file is then stale: its PID is gone).
 */
export async function acquireLocks(o: LockOptions): Promise<HeldLocks> {
  const me: LockHolder = { pid: process.pid, role: o.role, cgroupRoot: o.cgroupRoot, ...(o.socket ? { socket: o.socket } : {}) };
  const server = await lockNetns(o.netnsName ?? NETNS_LOCK_NAME, me);
  let unlockRoot: () => void;
  try {
    unlockRoot = lockCgroupRoot(o.lockDir ?? LOCK_DIR, me, o.cgroupRoot);
  } catch (err) {
    await new Promise<void>((r) => server.close(() => r()));
    throw err;
  }
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      unlockRoot();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
