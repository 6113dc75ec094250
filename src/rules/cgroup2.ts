// The cgroup v2 side of a process PU: a cgroup <v2 mount>/<root>/<name> beside its net_cls one,
// so that table inet tessera (nft.ts) can find the PU's sockets with `socket cgroupv2`, the
// only socket lookup that names a listening socket's owner while a SYN is in flight. A v2
// hierarchy exists on every kernel (on cgroup v1 machines it is the "unified" hybrid mount,
// without controllers); processes belong to it whether or not it is mounted.
//
// nft resolves a cgroup path relative to /sys/fs/cgroup in its own mount namespace, so the
// hierarchy is used (or mounted) at or under /sys/fs/cgroup: /sys/fs/cgroup itself on a
// cgroup2-only host and in the fresh sysfs of `ip netns exec`, /sys/fs/cgroup/unified where
// /sys/fs/cgroup is the tmpfs of a cgroup v1 host.

import { mkdir, readFile, readdir, rmdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { TesseraError } from '../errors.js';
import type { CommandRunner } from './runner.js';
import type { Cgroup2Ref } from './nft.js';

const SYSFS_CGROUP = '/sys/fs/cgroup';
const EVICT_ROUNDS = 20;

export interface Cgroup2 {
  /** Find (or mount) the v2 hierarchy at or under /sys/fs/cgroup; returns its mount point. */
  ensureMounted(): Promise<string>;
  create(name: string): Promise<Cgroup2Ref>;
  addPid(name: string, pid: number): Promise<void>;
  /** rmdir; no-op when absent; fails with TESSERA_ERR_CGROUP while processes are inside. */
  remove(name: string): Promise<void>;
  /** Move every process of our subtree to the hierarchy root and remove the subtree. */
  removeAll(): Promise<void>;
  ref(name: string): Promise<Cgroup2Ref>;
  /** The v2 cgroup a process is in (a container's init), or undefined when it is gone. */
  refOfPid(pid: number): Promise<Cgroup2Ref | undefined>;
}

function fail(what: string, path: string, err: unknown): TesseraError {
  const code = (err as NodeJS.ErrnoException)?.code ?? 'unknown error';
  return new TesseraError('TESSERA_ERR_CGROUP', `cgroup2: cannot ${what} ${path}: ${code} (${(err as Error)?.message ?? String(err)})`, { cause: err });
}

const unescapeMount = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** From /proc/self/mounts text: cgroup2 mount points at or under /sys/fs/cgroup, and what is mounted at /sys/fs/cgroup. */
export function cgroup2Mounts(mounts: string): { v2: string[]; atSysfs: string | undefined } {
  const v2: string[] = [];
  let atSysfs: string | undefined;
  for (const line of mounts.split('\n')) {
    const [, rawDir, type] = line.split(' ');
    if (!rawDir || !type) continue;
    const dir = unescapeMount(rawDir);
    if (dir === SYSFS_CGROUP) atSysfs = type;
    if (type === 'cgroup2' && (dir === SYSFS_CGROUP || dir.startsWith(SYSFS_CGROUP + '/'))) v2.push(dir);
  }
  return { v2, atSysfs };
}

/** The v2 path of a process from /proc/PID/cgroup text ("0::/docker/abc"), or undefined. */
export function unifiedPathOf(procCgroup: string): string | undefined {
  const line = procCgroup.split('\n').find((l) => l.startsWith('0::'));
  return line ? line.slice(3) : undefined;
}

export function createCgroup2(o: { root: string; runner: CommandRunner }): Cgroup2 {
  let mounted: string | undefined;

  async function ensureMounted(): Promise<string> {
    if (mounted) return mounted;
    const { v2, atSysfs } = cgroup2Mounts(await readFile('/proc/self/mounts', 'utf8'));
    if (v2.includes(SYSFS_CGROUP)) return (mounted = SYSFS_CGROUP);
    if (v2[0]) return (mounted = v2[0]);
    // cgroup v1 host: /sys/fs/cgroup is a tmpfs of v1 mounts; the hybrid place is "unified".
    // Fresh sysfs (ip netns exec): nothing mounted at /sys/fs/cgroup, an empty directory.
    const dir = atSysfs === 'tmpfs' ? join(SYSFS_CGROUP, 'unified') : atSysfs === undefined ? SYSFS_CGROUP : undefined;
    if (!dir) throw new TesseraError('TESSERA_ERR_PREREQ', `cgroup2: no cgroup v2 hierarchy at or under ${SYSFS_CGROUP}, and ${atSysfs} is mounted there: mount -t cgroup2 none ${SYSFS_CGROUP}/unified`);
    try {
      await mkdir(dir, { recursive: true });
      await o.runner.run(['mount', '-t', 'cgroup2', 'cgroup2', dir]);
    } catch (err) {
      throw new TesseraError('TESSERA_ERR_CGROUP', `cgroup2: cannot mount the v2 hierarchy at ${dir}: ${(err as Error).message}`, { cause: err });
    }
    return (mounted = dir);
  }

  const top = async (): Promise<string> => join(await ensureMounted(), o.root);
  const refFor = (mount: string, inHierarchy: string): Cgroup2Ref => ({
    path: relative(SYSFS_CGROUP, join(mount, inHierarchy)),
    cgroup: inHierarchy.split('/').filter(Boolean).join('/'),
    level: inHierarchy.split('/').filter(Boolean).length,
  });

  async function procs(dir: string): Promise<number[]> {
    try {
      return (await readFile(join(dir, 'cgroup.procs'), 'utf8')).split('\n').filter(Boolean).map(Number);
    } catch {
      return [];
    }
  }

  async function evict(dir: string, to: string): Promise<void> {
    let children: string[] = [];
    try {
      children = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw fail('list', dir, err);
    }
    for (const c of children) await evict(join(dir, c), to);
    for (let round = 0; round < EVICT_ROUNDS; round++) {
      const pids = await procs(dir);
      if (pids.length === 0) break;
      for (const pid of pids) await writeFile(join(to, 'cgroup.procs'), `${pid}\n`).catch(() => undefined);
    }
    await rmdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw fail('remove', dir, err);
    });
  }

  return {
    ensureMounted,
    async create(name) {
      const dir = join(await top(), name);
      await mkdir(dir, { recursive: true }).catch((err: unknown) => {
        throw fail('create', dir, err);
      });
      return refFor(mounted!, join(o.root, name));
    },
    async addPid(name, pid) {
      const file = join(await top(), name, 'cgroup.procs');
      await writeFile(file, `${pid}\n`).catch((err: unknown) => {
        throw fail(`move pid ${pid} into`, file, err);
      });
    },
    async remove(name) {
      const dir = join(await top(), name);
      await rmdir(dir).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw fail('remove', dir, err);
      });
    },
    async removeAll() {
      const mount = await ensureMounted();
      await evict(join(mount, o.root), mount);
    },
    async ref(name) {
      return refFor(await ensureMounted(), join(o.root, name));
    },
    async refOfPid(pid) {
      let text: string;
      try {
        text = await readFile(`/proc/${pid}/cgroup`, 'utf8');
      } catch {
        return undefined;
      }
      const p = unifiedPathOf(text);
      if (!p || p === '/') return undefined;
      return refFor(await ensureMounted(), p);
    },
  };
}
