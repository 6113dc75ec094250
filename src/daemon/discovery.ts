// Listener discovery and PU liveness at a cost that does not grow with the PUs' processes and
// descriptors: no /proc walk of every PU four times a second (issue 17).
//
// - Ports. The kernel's socket lookup (table inet tessera) names a PU's listening socket from
//   its first SYN, so ports are only the fallback (a 4-tuple reused in TIME_WAIT, PUs without a
//   cgroup v2). One dump per tick of this namespace's listening sockets with their cgroup v2
//   (sock_diag through `ss --cgroup`, asynchronous) gives every PU's ports in O(sockets): each
//   socket's cgroup is looked up, ancestor by ancestor, in a map of the PUs' cgroups. Only a PU
//   without a cgroup v2 has its processes' descriptors read (asynchronously), in the bounded
//   liveness batch below.
// - Liveness. Each tick reads the process list of at most `batch` PUs, round robin: a process
//   PU whose last process exited ends. A larger host takes longer to notice an ended PU, never
//   more work per tick.
// - Rules. setObserved() changes the registry only when a PU's ports changed; the registry's
//   change callback starts one coalesced rule transaction (sync() in daemon.ts), an nft element
//   update.
//
// All dependencies are injected: the unit tests drive tick() with fakes.

import { errorMessage } from '../errors.js';

export interface DiscoveredPu {
  id: string;
  kind: string;
  createdAt: Date;
  /** A container with a network namespace of its own: its ports are not this host's. */
  netns?: string;
  cgroup2?: { cgroup: string };
  pids: readonly number[];
  ports: readonly number[];
}

/** A listening TCP socket of this namespace: its port and the cgroup v2 of its creator ('/a/b'). */
export interface Listener {
  port: number;
  cgroup: string;
}

export interface ListenerDiscoveryDeps<P extends DiscoveredPu> {
  pus(): readonly P[];
  /** The PU's processes ([] when its cgroup is gone). */
  pidsOf(pu: P): Promise<number[]>;
  /** Listening sockets with their cgroup v2; null when the dump is unavailable (then every PU is read as one without a cgroup v2). */
  listeners(): Promise<Listener[] | null>;
  /** Ports these processes listen on, from their descriptors (asynchronous reads). */
  portsOfPids(pids: readonly number[]): Promise<number[]>;
  setObserved(pu: P, pids: number[], ports: number[]): void;
  /** A process PU whose last process exited. */
  end(pu: P): Promise<void>;
  now?: () => number;
  warn?: (obj: object, msg: string) => void;
}

export interface ListenerDiscoveryOptions {
  /** Time between ticks (default 2 000 ms). */
  intervalMs?: number;
  /** PUs whose processes are read per tick (default 64). */
  batch?: number;
  /** A process PU younger than this is not ended for having no process yet (default 2 000 ms). */
  graceMs?: number;
}

export interface ListenerDiscovery {
  start(): void;
  stop(): void;
  /** One round; concurrent calls share it. */
  tick(): Promise<void>;
}

const sortedUnique = (list: Iterable<number>): number[] => [...new Set(list)].sort((a, b) => a - b);
const trimSlashes = (p: string): string => p.replace(/^\/+|\/+$/g, '');

/** Ports per PU from the dump: each socket's cgroup and its ancestors are looked up in the PUs' cgroups. */
export function portsByCgroup<P extends DiscoveredPu>(pus: readonly P[], listeners: readonly Listener[]): Map<P, number[]> {
  const byCgroup = new Map<string, P>();
  for (const pu of pus) if (pu.cgroup2 && !pu.netns) byCgroup.set(trimSlashes(pu.cgroup2.cgroup), pu);
  const found = new Map<P, Set<number>>();
  for (const l of listeners) {
    let c = trimSlashes(l.cgroup);
    while (c) {
      const pu = byCgroup.get(c);
      if (pu) {
        let s = found.get(pu);
        if (!s) found.set(pu, (s = new Set()));
        s.add(l.port);
        break;
      }
      const cut = c.lastIndexOf('/');
      c = cut < 0 ? '' : c.slice(0, cut);
    }
  }
  return new Map([...found].map(([pu, s]) => [pu, sortedUnique(s)]));
}

export function createListenerDiscovery<P extends DiscoveredPu>(deps: ListenerDiscoveryDeps<P>, options: ListenerDiscoveryOptions = {}): ListenerDiscovery {
  const intervalMs = options.intervalMs ?? 2000;
  const batch = Math.max(1, options.batch ?? 64);
  const graceMs = options.graceMs ?? 2000;
  const now = deps.now ?? Date.now;
  const warn = deps.warn ?? (() => {});
  let cursor = 0;
  let running: Promise<void> | null = null;
  let timer: NodeJS.Timeout | null = null;

  async function round(): Promise<void> {
    const all = deps.pus();
    let dump: Listener[] | null = null;
    try {
      dump = await deps.listeners();
    } catch (err) {
      warn({ err: errorMessage(err) }, 'listening-socket dump failed; ports of PUs are read from their processes this round');
    }
    const fromDump = dump ? portsByCgroup(all, dump) : new Map<P, number[]>();
    const byDump = (pu: P): boolean => dump !== null && !!pu.cgroup2 && !pu.netns;

    // Liveness (and descriptor-read ports) for a bounded slice, round robin.
    const n = Math.min(batch, all.length);
    if (cursor >= all.length) cursor = 0;
    const slice = Array.from({ length: n }, (_, k) => all[(cursor + k) % all.length]!);
    cursor = all.length ? (cursor + n) % all.length : 0;
    const checked = new Set<P>();
    for (const pu of slice) {
      checked.add(pu);
      let pids: number[];
      try {
        pids = await deps.pidsOf(pu);
      } catch {
        pids = [];
      }
      if (pids.length === 0 && pu.kind === 'process' && now() - pu.createdAt.getTime() > graceMs) {
        await deps.end(pu).catch((err: unknown) => warn({ pu: pu.id, err: errorMessage(err) }, 'ending a PU failed'));
        continue;
      }
      const ports = pu.netns ? [] : byDump(pu) ? (fromDump.get(pu) ?? []) : await deps.portsOfPids(pids).catch(() => [...pu.ports]);
      deps.setObserved(pu, pids, ports);
    }
    // Every other PU the dump covers: its ports, its process list as last read.
    for (const pu of all) {
      if (checked.has(pu) || !byDump(pu)) continue;
      const ports = fromDump.get(pu) ?? [];
      if (ports.length !== pu.ports.length || ports.some((p, i) => p !== pu.ports[i])) deps.setObserved(pu, [...pu.pids], ports);
    }
  }

  function tick(): Promise<void> {
    if (!running) {
      running = round()
        .catch((err: unknown) => warn({ err: errorMessage(err) }, 'PU discovery failed'))
        .finally(() => {
          running = null;
        });
    }
    return running;
  }

  return {
    start() {
      if (!timer) timer = setInterval(() => void tick(), intervalMs);
      timer.unref?.();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
    },
    tick,
  };
}
