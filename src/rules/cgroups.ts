// net_cls (cgroup v1) for process PUs: every PU gets a cgroup whose net_cls.classid tags the
// sockets of its processes, so `-m cgroup --cgroup <classid>` can mark their egress SYNs.
// All filesystem access of the rules module lives in this file.
//
// Layout: <mount>/<root>/<name>, where root is this daemon's subtree ("tessera", or
// "tessera-hostA" when several daemons share one machine: cgroups are machine-wide even
// when network namespaces are not).

import { mkdir, readFile, readdir, rmdir, stat, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { TesseraError } from '../errors.js';
import { createCommandRunner, type CommandRunner } from './runner.js';
import { createCgroup2, type Cgroup2 } from './cgroup2.js';
import type { Cgroup2Ref } from './nft.js';

/** Major half of our classids: 0x7e55 ("tess"), so a classid reads as 7e55:<PU index> in tc notation. */
export const CLASSID_MAJOR = 0x7e55;

/** The net_cls classid of the PU with this index: (0x7e55 << 16) | index. */
export function classidFor(index: number, major = CLASSID_MAJOR): number {
  if (!Number.isInteger(index) || index < 1 || index > 0xffff) {
    throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `classidFor: index must be 1..65535, got ${String(index)}`);
  }
  if (!Number.isInteger(major) || major < 1 || major > 0xffff) {
    throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `classidFor: major must be 1..65535, got ${String(major)}`);
  }
  return ((major << 16) | index) >>> 0;
}

export interface NetClsOptions {
  /** Our subtree under the net_cls mount, one path component, e.g. 'tessera' or 'tessera-hostA'. */
  root: string;
  /** Where to mount net_cls when it is not mounted yet (default /sys/fs/cgroup/net_cls, or /run/tessera/net_cls where that cannot be created). */
  mountPoint?: string;
  /** Runs `mount`; default createCommandRunner(). */
  runner?: CommandRunner;
  /**
   * The cgroup v2 twin of each PU cgroup (cgroup2.ts), which lets the kernel's socket lookup
   * find a PU's listening sockets; default on. `false` only for tests of net_cls alone.
   */
  cgroup2?: false;
}

export interface NetCls {
  /** Find the net_cls hierarchy, mounting it if needed; returns its mount path. */
  ensureMounted(): Promise<string>;
  /** Create (or update) the cgroup `name` with this classid; returns its directory. */
  create(name: string, classid: number): Promise<string>;
  /** Move a process (all its threads) into the cgroup. */
  addPid(name: string, pid: number): Promise<void>;
  pids(name: string): Promise<number[]>;
  /** rmdir the cgroup; kills nothing, fails with TESSERA_ERR_CGROUP if processes are still in it. No-op if absent. */
  remove(name: string): Promise<void>;
  list(): Promise<Array<{ name: string; classid: number }>>;
  /**
   * Remove every cgroup of our subtree and the subtree itself. Processes still inside are
   * moved to the hierarchy root (untagged, not killed): a stale classid must never be
   * inherited by the next PU that gets it. Returns the number of PU cgroups removed.
   */
  removeAll(): Promise<number>;
  /**
   * Write a classid into a cgroup someone else owns (a container's, e.g. "/docker/<id>",
   * relative to the net_cls mount): every process placed there now or later (docker exec)
   * gets it. Never creates or removes the cgroup.
   */
  adopt(path: string, classid: number): Promise<void>;
  /** Write classid 0 back into an adopted cgroup; a cgroup that is gone is fine. Returns whether it existed. */
  release(path: string): Promise<boolean>;
  /** Processes of an adopted cgroup ([] when it is gone). */
  pidsAt(path: string): Promise<number[]>;
  /** The classid of an adopted cgroup, or undefined when it is gone. */
  classidAt(path: string): Promise<number | undefined>;
  /** Where the PU cgroup `name` is in the v2 hierarchy (for table inet tessera); undefined without cgroup2. */
  cgroup2Ref(name: string): Promise<Cgroup2Ref | undefined>;
  /** The v2 cgroup a process is in (a container's), or undefined. */
  cgroup2RefOfPid(pid: number): Promise<Cgroup2Ref | undefined>;
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DEFAULT_MOUNT = '/sys/fs/cgroup/net_cls';
const FALLBACK_MOUNT = '/run/tessera/net_cls';
/** Bound for the "move everyone out" loop: processes may fork while we move them. */
const EVICT_ROUNDS = 20;

function cgroupError(what: string, path: string, err: unknown): TesseraError {
  const code = (err as NodeJS.ErrnoException)?.code ?? 'unknown error';
  const msg = (err as Error)?.message ?? String(err);
  return new TesseraError('TESSERA_ERR_CGROUP', `net_cls: cannot ${what} ${path}: ${code} (${msg})`, { cause: err });
}

function checkName(kind: string, name: string): void {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `net_cls: ${kind} ${JSON.stringify(name)} must be one path component of letters, digits, '_', '.', '-'`);
  }
}

/** Unescape the octal escapes (\040 for a space) of /proc/self/mounts. */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Mount points of cgroup v1 hierarchies that include net_cls, from /proc/self/mounts text. */
export function findNetClsMounts(mounts: string): string[] {
  const out: string[] = [];
  for (const line of mounts.split('\n')) {
    const [, dir, type, opts] = line.split(' ');
    if (type !== 'cgroup' || !dir || !opts) continue;
    if (opts.split(',').includes('net_cls')) out.push(unescapeMount(dir));
  }
  return out;
}

/** Filesystem type mounted exactly at `dir`, from /proc/self/mounts text (last mount wins). */
function fsTypeAt(mounts: string, dir: string): string | undefined {
  let type: string | undefined;
  for (const line of mounts.split('\n')) {
    const f = line.split(' ');
    if (f[1] && unescapeMount(f[1]) === dir) type = f[2];
  }
  return type;
}

/**
 * The -o options to mount the net_cls hierarchy with. A v1 controller can live in only one
 * hierarchy: if the kernel already bound net_cls together with others (e.g. net_prio),
 * a mount must name exactly the same set or it fails with EBUSY. /proc/cgroups tells which
 * controllers share net_cls's hierarchy id (0 = not bound yet).
 */
export function netClsMountOptions(procCgroups: string): string {
  const rows = procCgroups
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(/\s+/))
    .map(([name, hier]) => ({ name: name ?? '', hier: Number(hier) }));
  const own = rows.find((r) => r.name === 'net_cls');
  if (!own || own.hier === 0) return 'net_cls';
  return rows
    .filter((r) => r.hier === own.hier)
    .map((r) => r.name)
    .join(',');
}

export function createNetCls(options: NetClsOptions): NetCls {
  checkName('root', options.root);
  const root = options.root;
  if (options.mountPoint !== undefined && !options.mountPoint.startsWith('/')) {
    throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `net_cls: mountPoint must be an absolute path, got ${options.mountPoint}`);
  }
  const runner = options.runner ?? createCommandRunner();
  const v2: Cgroup2 | null = options.cgroup2 === false ? null : createCgroup2({ root, runner });
  let mounted: string | undefined;

  async function readText(path: string): Promise<string> {
    try {
      // Synchronous on purpose: cgroupfs is in memory, and the discovery's liveness batch reads
      // up to 64 cgroup.procs per tick. Measured on the 2-vCPU box: 214 µs of CPU per
      // asynchronous read (four thread-pool round trips), 10 µs synchronous (issue 17, idle).
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw cgroupError('read', path, err);
    }
  }

  async function mountAt(dir: string): Promise<void> {
    const procCgroups = await readText('/proc/cgroups');
    const row = procCgroups.split('\n').find((l) => l.split(/\s+/)[0] === 'net_cls');
    if (!row || row.trim().split(/\s+/)[3] !== '1') {
      throw new TesseraError('TESSERA_ERR_PREREQ', 'net_cls: the kernel has no enabled net_cls cgroup controller (CONFIG_CGROUP_NET_CLASSID)');
    }
    const opts = netClsMountOptions(procCgroups);
    try {
      await mkdir(dir, { recursive: true });
    } catch (err) {
      throw cgroupError('create mount point', dir, err);
    }
    try {
      await runner.run(['mount', '-t', 'cgroup', '-o', opts, 'net_cls', dir]);
    } catch (err) {
      throw new TesseraError('TESSERA_ERR_CGROUP', `net_cls: cannot mount -t cgroup -o ${opts} at ${dir}: ${(err as Error).message}`, { cause: err });
    }
  }

  async function ensureMounted(): Promise<string> {
    if (mounted) return mounted;
    await v2?.ensureMounted();
    const mounts = await readText('/proc/self/mounts');
    const existing = findNetClsMounts(mounts);
    if (options.mountPoint) {
      if (!existing.includes(options.mountPoint)) await mountAt(options.mountPoint);
      return (mounted = options.mountPoint);
    }
    if (existing[0]) return (mounted = existing[0]);
    // /sys/fs/cgroup is a tmpfs on cgroup v1 systems; on a cgroup2-only system, or under
    // `ip netns exec` (which remounts /sys), no directory can be made there.
    const parentType = fsTypeAt(mounts, dirname(DEFAULT_MOUNT));
    const dir = parentType === 'tmpfs' ? DEFAULT_MOUNT : FALLBACK_MOUNT;
    await mountAt(dir);
    return (mounted = dir);
  }

  const subtree = async (): Promise<string> => join(await ensureMounted(), root);

  async function dirOf(name: string): Promise<string> {
    checkName('cgroup name', name);
    return join(await subtree(), name);
  }

  /** A cgroup path relative to the mount, checked so it cannot leave the hierarchy. */
  async function foreignDir(path: string): Promise<string> {
    const parts = typeof path === 'string' && path.startsWith('/') ? path.split('/').filter(Boolean) : null;
    if (!parts || parts.length === 0 || parts.some((p) => p === '.' || p === '..' || !/^[A-Za-z0-9_.:@-]+$/.test(p))) {
      throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `net_cls: cgroup path ${JSON.stringify(path)} must be absolute within the hierarchy, without . or .. components`);
    }
    return join(await ensureMounted(), ...parts);
  }

  async function readPids(dir: string): Promise<number[]> {
    const text = await readText(join(dir, 'cgroup.procs'));
    return text
      .split('\n')
      .filter(Boolean)
      .map(Number)
      .filter((n) => Number.isInteger(n) && n > 0);
  }

  async function writeProc(dir: string, pid: number): Promise<void> {
    const path = join(dir, 'cgroup.procs');
    try {
      await writeFile(path, `${pid}\n`);
    } catch (err) {
      // ESRCH: the process is gone, which is fine when evicting.
      throw cgroupError(`move pid ${pid} into`, path, err);
    }
  }

  async function rmdirCgroup(dir: string): Promise<boolean> {
    try {
      await rmdir(dir);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return false;
      if (code === 'EBUSY' || code === 'ENOTEMPTY') {
        const left = await readPids(dir).catch(() => [] as number[]);
        throw new TesseraError(
          'TESSERA_ERR_CGROUP',
          `net_cls: cannot remove ${dir}: ${code}: ${left.length} process(es) still inside (${left.slice(0, 10).join(', ')}) or a child cgroup exists`,
          { cause: err },
        );
      }
      throw cgroupError('remove', dir, err);
    }
  }

  async function subdirs(dir: string): Promise<string[]> {
    try {
      const entries = await readdir(dir, { withFileTypes: true });
      return entries.filter((e) => e.isDirectory()).map((e) => e.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw cgroupError('list', dir, err);
    }
  }

  /** Move every process of dir and its descendants to the hierarchy root, then rmdir bottom-up. */
  async function evictAndRemove(dir: string, top: string): Promise<void> {
    for (const child of await subdirs(dir)) await evictAndRemove(join(dir, child), top);
    for (let round = 0; round < EVICT_ROUNDS; round++) {
      const pids = await readPids(dir).catch(() => [] as number[]);
      if (pids.length === 0) break;
      for (const pid of pids) {
        await writeProc(top, pid).catch((err: TesseraError) => {
          if ((err.cause as NodeJS.ErrnoException)?.code !== 'ESRCH') throw err;
        });
      }
    }
    await rmdirCgroup(dir);
  }

  return {
    ensureMounted,

    async create(name, classid) {
      if (!Number.isInteger(classid) || classid < 1 || classid > 0xffff_ffff) {
        throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `net_cls: classid must be 1..0xffffffff, got ${String(classid)}`);
      }
      const dir = await dirOf(name);
      try {
        await mkdir(dir, { recursive: true });
      } catch (err) {
        throw cgroupError('create', dir, err);
      }
      const file = join(dir, 'net_cls.classid');
      try {
        await writeFile(file, `${classid >>> 0}\n`);
      } catch (err) {
        throw cgroupError(`write classid ${classid} to`, file, err);
      }
      await v2?.create(name);
      return dir;
    },

    async addPid(name, pid) {
      if (!Number.isInteger(pid) || pid <= 0) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `net_cls: pid must be a positive integer, got ${String(pid)}`);
      const dir = await dirOf(name);
      try {
        await stat(dir);
      } catch (err) {
        throw cgroupError(`add pid ${pid} to missing cgroup`, dir, err);
      }
      await writeProc(dir, pid);
      // Sockets keep the v2 cgroup they were created in: move before the process makes any.
      await v2?.addPid(name, pid);
    },

    async pids(name) {
      return readPids(await dirOf(name));
    },

    async remove(name) {
      await rmdirCgroup(await dirOf(name));
      await v2?.remove(name);
    },

    async list() {
      const top = await subtree();
      const out: Array<{ name: string; classid: number }> = [];
      for (const name of (await subdirs(top)).sort()) {
        const text = await readText(join(top, name, 'net_cls.classid'));
        out.push({ name, classid: Number(text.trim()) >>> 0 });
      }
      return out;
    },

    async adopt(path, classid) {
      if (!Number.isInteger(classid) || classid < 1 || classid > 0xffff_ffff) {
        throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `net_cls: classid must be 1..0xffffffff, got ${String(classid)}`);
      }
      const file = join(await foreignDir(path), 'net_cls.classid');
      try {
        await writeFile(file, `${classid >>> 0}\n`);
      } catch (err) {
        throw cgroupError(`write classid ${classid} to`, file, err);
      }
    },

    async release(path) {
      const file = join(await foreignDir(path), 'net_cls.classid');
      try {
        await writeFile(file, '0\n');
        return true;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // A container that ended took its cgroup with it: nothing to restore.
        if (code === 'ENOENT' || code === 'ENODEV') return false;
        throw cgroupError('write classid 0 to', file, err);
      }
    },

    async pidsAt(path) {
      const dir = await foreignDir(path);
      return readPids(dir).catch(() => [] as number[]);
    },

    async classidAt(path) {
      const file = join(await foreignDir(path), 'net_cls.classid');
      try {
        return Number((await readFile(file, 'utf8')).trim()) >>> 0;
      } catch {
        return undefined;
      }
    },

    async removeAll() {
      const hierarchy = await ensureMounted();
      const top = join(hierarchy, root);
      const names = await subdirs(top);
      for (const name of names) await evictAndRemove(join(top, name), hierarchy);
      // The subtree itself: normally empty of processes, but evict anyway.
      try {
        await stat(top);
        await evictAndRemove(top, hierarchy);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      await v2?.removeAll();
      return names.length;
    },

    async cgroup2Ref(name) {
      checkName('cgroup name', name);
      return v2?.ref(name);
    },

    async cgroup2RefOfPid(pid) {
      return v2?.refOfPid(pid);
    },
  };
}
