// Where listener discovery (discovery.ts) reads listening sockets from, per tick:
// - the addon's sock_diag dump with each socket's cgroup v2 id (no process spawned: an idle
//   daemon's tick costs microseconds, issue 17). The id is the inode number of the cgroup's
//   directory: PUs' cgroups are stat'ed once each, and an id seen for the first time that is no
//   PU's is looked for below the PUs' cgroups once (a PU's sub-cgroup), then remembered;
// - else (an addon built before that, or a kernel that gives no id) one `ss --cgroup` dump,
//   until ss proves unable, then never again;
// - for PUs without a cgroup v2, their processes' descriptors against the addon's sock_diag
//   dump of listening sockets (else /proc/net/tcp{,6}).

import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { CommandRunner } from '../rules/index.js';
import { createListenerSource, listeningPortsAsync, parseSsListeners, SS_LISTENERS, type ListenerDump } from '../monitors/process/index.js';
import { loadNative } from '../datapath/native.js';
import type { DiscoveredPu, Listener, ListenerDiscoveryDeps } from './discovery.js';

function nativeListenerDump(): ListenerDump | null {
  try {
    const native = loadNative();
    return typeof native.listeningSockets === 'function' ? native.listeningSockets : null;
  } catch {
    return null;
  }
}

function nativeCgroupDump(): (() => Uint32Array) | null {
  try {
    const native = loadNative();
    return typeof native.listeningSocketsCgroup === 'function' ? () => native.listeningSocketsCgroup!() : null;
  } catch {
    return null;
  }
}

/** A PU's cgroup v2: `cgroup` within the hierarchy ('a/b'), `path` relative to the mount root's parent (as nft resolves it). */
export interface Cgroup2Place {
  cgroup: string;
  path: string;
}

/** What the resolver reads of the cgroup file system (real: under /sys/fs/cgroup; fakes in unit tests). */
export interface CgroupFs {
  /** Inode number of the directory (its cgroup id), or null when it is gone. */
  ino(path: string): number | null;
  /** Names of the directories under it ([] when none or gone). */
  subdirs(path: string): string[];
}

const sysCgroupFs = (root = '/sys/fs/cgroup'): CgroupFs => ({
  ino(path) {
    try {
      return statSync(join(root, path)).ino;
    } catch {
      return null;
    }
  },
  subdirs(path) {
    try {
      return readdirSync(join(root, path), { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name);
    } catch {
      return [];
    }
  },
});

/** Below a PU's cgroup, at most this many directories are visited per unknown id (a bound on one miss). */
const WALK_LIMIT = 20_000;

/**
 * Turns the dump [inode, port, idLow, idHigh, ...] into listeners named by cgroup ('/a/b').
 * A socket whose cgroup is neither a PU's nor below one gets cgroup '' (the host's).
 * Null when the kernel gave no id (0): then the caller falls back to ss.
 */
export function createCgroupIdResolver(fs: CgroupFs = sysCgroupFs()) {
  /** cgroup id -> cgroup within the hierarchy, or null: below no PU. */
  const known = new Map<number, string | null>();
  /** PU cgroup path -> its id (stat'ed once). */
  const puIds = new Map<string, number>();
  return {
    listeners(dump: Uint32Array, places: readonly Cgroup2Place[]): Listener[] | null {
      const current = new Set<string>();
      for (const p of places) {
        current.add(p.path);
        if (puIds.has(p.path)) continue;
        const id = fs.ino(p.path);
        if (id === null) continue;
        puIds.set(p.path, id);
        known.set(id, p.cgroup);
      }
      // PUs that went: forget them (ids are never reused, so a stale entry would only cost memory).
      if (puIds.size > current.size) {
        for (const [path, id] of puIds) {
          if (current.has(path)) continue;
          puIds.delete(path);
          known.delete(id);
        }
      }
      const out: Listener[] = [];
      for (let i = 0; i + 3 < dump.length; i += 4) {
        const id = dump[i + 2]! + dump[i + 3]! * 2 ** 32;
        if (id === 0) return null;
        let cgroup = known.get(id);
        if (cgroup === undefined) {
          cgroup = findBelow(id, places);
          known.set(id, cgroup);
        }
        out.push({ port: dump[i + 1]!, cgroup: cgroup === null ? '' : `/${cgroup}` });
      }
      return out;
    },
  };

  /** An id first seen: a sub-cgroup of a PU's (then its cgroup), or null. */
  function findBelow(id: number, places: readonly Cgroup2Place[]): string | null {
    let budget = WALK_LIMIT;
    const stack: Array<[string, string]> = places.map((p) => [p.path, p.cgroup]);
    while (stack.length && budget-- > 0) {
      const [path, cgroup] = stack.pop()!;
      for (const name of fs.subdirs(path)) {
        const sub: [string, string] = [`${path}/${name}`, `${cgroup}/${name}`];
        if (fs.ino(sub[0]) === id) return sub[1];
        stack.push(sub);
      }
    }
    return null;
  }
}

const trimSlashes = (p: string): string => p.replace(/^\/+|\/+$/g, '');

export function createListenerSources(
  runner: CommandRunner,
  log: Pick<Logger, 'warn'>,
  places: () => Iterable<{ cgroup2?: { cgroup: string; path: string } | undefined; netns?: string | undefined }>,
  cgroupDump: (() => Uint32Array) | null = nativeCgroupDump(),
): Pick<ListenerDiscoveryDeps<DiscoveredPu>, 'listeners' | 'portsOfPids'> {
  const listenerSockets = createListenerSource(nativeListenerDump(), (err) =>
    log.warn({ err: errorMessage(err) }, 'sock_diag refused the listening-socket dump; reading /proc/net/tcp{,6} instead (slower with many sockets)'),
  );
  const resolver = createCgroupIdResolver();
  let native = cgroupDump;
  let ss = true;
  return {
    async listeners() {
      if (native) {
        try {
          const list: Cgroup2Place[] = [];
          for (const p of places()) if (p.cgroup2 && !p.netns) list.push({ cgroup: trimSlashes(p.cgroup2.cgroup), path: trimSlashes(p.cgroup2.path) });
          const found = resolver.listeners(native(), list);
          if (found) return found;
          log.warn({}, 'the kernel gives no cgroup id in its socket dump: reading listening sockets with ss --cgroup');
        } catch (err) {
          log.warn({ err: errorMessage(err) }, 'sock_diag refused the listening-socket dump with cgroup ids: reading listening sockets with ss --cgroup');
        }
        native = null;
      }
      if (!ss) return null;
      const parsed = await runner
        .run(SS_LISTENERS, { timeoutMs: 10_000 })
        .then((r) => parseSsListeners(r.stdout))
        .catch((err: unknown) => {
          log.warn({ err: errorMessage(err) }, "ss --cgroup is not available: ports are read from each PU's processes (install iproute2 5.8 or later)");
          return null;
        });
      if (parsed === null) ss = false;
      return parsed;
    },
    portsOfPids: (pids) => listeningPortsAsync(pids, listenerSockets()),
  };
}
