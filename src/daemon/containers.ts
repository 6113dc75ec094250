// Docker containers as PUs (docs/docker.md): follows the Docker monitor and turns each running
// container into a PU of the registry.
//
// - Host network: the container shares the host's stack, so it is protected like a process
//   PU, except that the classid is written into the container's OWN net_cls cgroup (runc puts
//   every `docker exec` process there) and its ports come from that cgroup's processes.
// - Own network namespace (bridge, user networks, none): the whole namespace is the PU. A
//   ruleset for one PU is installed inside it (nsenter --net) and a datapath worker owns a
//   queue bound there (setns only around socket creation).
//
// Work for one container runs on its own promise chain, in the monitor's event order.

import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import { buildRuleset, createCommandRunner, createReconciler, type Cgroup2Ref, type NetCls, type Reconciler } from '../rules/index.js';
import type { Datapath } from '../datapath/index.js';
import { createDockerMonitor, type DockerMonitor, type DockerPu } from '../monitors/docker/index.js';
import type { Pu, PuRegistry } from './pus.js';
import type { SavedPu } from './state.js';

export interface ContainerPusOptions {
  socketPath: string;
  registry: PuRegistry;
  netcls: NetCls;
  datapath: Datapath;
  /** Apply registry changes to workers and host rules; resolves when applied. */
  sync(): Promise<void>;
  queueNum: number;
  failOpen: boolean;
  log: Logger;
  counters: Record<string, number>;
  /**
   * Container PUs of the previous run (STATE_DIR/pus.json) by PU id: a container found again
   * gets its index (so its classid does not change under it) and its listening ports (so they
   * are in the first rule transaction). Each is used once.
   */
  saved?: Map<string, SavedPu>;
}

export interface ContainerPus {
  /**
   * Start following the engine and resolve once the running containers are PUs again; an
   * unreachable engine is retried in the background (resolves at once).
   */
  start(): Promise<void>;
  /** Re-apply the ruleset in every container namespace (heals rules removed by someone else). */
  reconcile(): Promise<void>;
  /** Pids and listening ports are found by the daemon's scan through this. */
  pidsOf(pu: Pu): Promise<number[]>;
  /**
   * Stop following. With removeRules: remove the rules in container namespaces, close their
   * queues, restore classids. Without: leave all of it (the queues close with the daemon and
   * the namespaces' rules then drop the containers' handshakes: fail-closed until restarted).
   */
  stop(opts: { removeRules: boolean }): Promise<void>;
}

const RETRY_MS = 5000;
const RESYNC_WAIT_MS = 30_000;

/** PU id of a container: stable across daemon restarts, so logs and status read the same. */
export function containerPuId(containerId: string): string {
  return `ctr-${containerId.slice(0, 12)}`;
}

export function createContainerPus(o: ContainerPusOptions): ContainerPus {
  const log = o.log;
  const monitor: DockerMonitor = createDockerMonitor({ socketPath: o.socketPath, log });
  /** Container id -> PU id, for the containers that are PUs now. */
  const byContainer = new Map<string, string>();
  /** PU id -> reconciler acting inside that container's namespace. */
  const nsRules = new Map<string, { reconciler: Reconciler; netns: string; index: number }>();
  const chains = new Map<string, Promise<void>>();
  let stopped = false;
  let retry: NodeJS.Timeout | null = null;

  function serial(containerId: string, f: () => Promise<void>): Promise<void> {
    const prev = chains.get(containerId) ?? Promise.resolve();
    const next = prev.then(f).catch((err: unknown) => log.error({ container: containerId.slice(0, 12), err: errorMessage(err) }, 'container PU work failed'));
    chains.set(containerId, next);
    void next.finally(() => {
      if (chains.get(containerId) === next) chains.delete(containerId);
    });
    return next;
  }

  function nsReconciler(netns: string): Reconciler {
    const rulesLog = log.child({ netns });
    return createReconciler({
      runner: createCommandRunner({ prefix: ['nsenter', `--net=${netns}`] }),
      log: { debug: (x, m) => rulesLog.debug(x, m), info: (x, m) => rulesLog.debug(x, m), warn: (x, m) => rulesLog.warn(x, m) },
    });
  }

  function nsRuleset(index: number): ReturnType<typeof buildRuleset> {
    return buildRuleset({ queue: { num: o.queueNum, count: 1, bypass: o.failOpen }, pus: [], serverPorts: [], namespacePu: index });
  }

  async function add(c: DockerPu): Promise<void> {
    if (stopped || !c.running || c.pid <= 0) return;
    await remove(c.id, 'replaced');
    const host = c.networkMode === 'host';
    if (!host && !c.netnsPath) {
      // --network container:<id> shares another container's namespace: that one's PU covers it.
      log.warn({ container: c.name, networkMode: c.networkMode }, 'container has no network namespace of its own: not a PU (it shares another container\'s)');
      return;
    }
    const id = containerPuId(c.id);
    // The namespace through PID 1, not SandboxKey: a daemon started with `ip netns exec`
    // lives in a mount namespace made before the container, to which docker's nsfs bind
    // mount under /var/run/docker/netns did not propagate (setns then gets a plain file:
    // EINVAL). /proc/PID/ns/net is the same namespace in every mount namespace.
    const netns = host ? undefined : `/proc/${c.pid}/ns/net`;
    const saved = o.saved?.get(id);
    o.saved?.delete(id);
    const pu = await o.registry.create({
      id,
      ...(saved ? { index: saved.index } : {}),
      name: c.name,
      kind: 'container',
      labels: c.labels,
      systemLabels: c.systemLabels,
      posture: c.posture,
      container: host ? { adopt: true, ...(c.netClsCgroup ? { cgroupPath: c.netClsCgroup } : {}), ...(await cgroup2Of(c.pid)) } : { adopt: false, netns: netns!, ...(c.netClsCgroup ? { cgroupPath: c.netClsCgroup } : {}) },
    });
    byContainer.set(c.id, id);
    o.counters.pus_created!++;
    // A host-network container's ports as last scanned, until the scan sees them again.
    if (host && saved) o.registry.setObserved(pu, [], saved.ports);
    try {
      await o.sync(); // workers know the PU (index, tokens) before any of its packets is queued
      if (!host) {
        // Queue first, then rules: a rule without a reader would drop the container's handshakes.
        await o.datapath.openNamespace({ key: id, netns: netns!, queueNum: o.queueNum, puIndex: pu.index });
        const reconciler = nsReconciler(netns!);
        nsRules.set(id, { reconciler, netns: netns!, index: pu.index });
        await reconciler.apply(nsRuleset(pu.index));
      }
    } catch (err) {
      await remove(c.id, 'setup failed');
      throw err;
    }
    o.registry.setObserved(pu, await pidsOf(pu), pu.ports);
    log.info({ pu: id, container: c.name, labels: pu.labels, network: c.networkMode, posture: c.posture.map((p) => p.flag) }, 'container PU created');
  }

  async function remove(containerId: string, why: string): Promise<void> {
    const id = byContainer.get(containerId);
    if (!id) return;
    byContainer.delete(containerId);
    const ns = nsRules.get(id);
    nsRules.delete(id);
    if (ns && existsSync(ns.netns)) {
      // The container still exists (engine resync, daemon stop): leave nothing in its namespace.
      await ns.reconciler.removeAll().catch((err: unknown) => log.warn({ pu: id, err: errorMessage(err) }, 'cannot remove rules in container namespace'));
    }
    // Closing the queue socket releases the namespace; otherwise it would outlive the container.
    await o.datapath.closeNamespace(id);
    if (await o.registry.remove(id)) o.counters.pus_removed!++;
    log.info({ pu: id, why }, 'container PU removed');
  }

  /** A host-network container's v2 cgroup (its init's), so its listening sockets are found from the first SYN. */
  async function cgroup2Of(pid: number): Promise<{ cgroup2?: Cgroup2Ref }> {
    const ref = await o.netcls.cgroup2RefOfPid(pid).catch(() => undefined);
    return ref ? { cgroup2: ref } : {};
  }

  async function pidsOf(pu: Pu): Promise<number[]> {
    return pu.cgroupPath ? o.netcls.pidsAt(pu.cgroupPath) : [];
  }

  monitor.on('pu-start', (c) => void serial(c.id, () => add(c)));
  monitor.on('pu-stop', (s) => void serial(s.id, () => remove(s.id, s.reason)));
  monitor.on('pu-update', (c, prev) => {
    void serial(c.id, async () => {
      const same =
        c.labels.join('\n') === prev.labels.join('\n') &&
        c.systemLabels.join('\n') === prev.systemLabels.join('\n') &&
        c.networkMode === prev.networkMode &&
        c.netnsPath === prev.netnsPath &&
        c.netClsCgroup === prev.netClsCgroup;
      const pu = o.registry.get(byContainer.get(c.id) ?? '');
      if (same && pu) {
        pu.posture = c.posture; // status shows it; identity unchanged
        return;
      }
      // A new identity is a new PU: tokens carry labels, so the old ones must go.
      await add(c);
    });
  });
  monitor.on('disconnected', (err) => log.warn({ err: err.message }, 'docker engine gone; container PUs stay until it is back and resynced'));
  monitor.on('connected', () => log.info({ socket: o.socketPath }, 'following the docker engine'));

  async function startMonitor(): Promise<void> {
    if (stopped) return;
    try {
      await monitor.start();
      // The resync emitted a pu-start per running container: wait for their PUs (bounded:
      // the daemon's first rule transaction and its API wait on this).
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<void>((r) => (timer = setTimeout(r, RESYNC_WAIT_MS)));
      const all = Promise.all([...chains.values()]).then(() => 'done' as const);
      if ((await Promise.race([all, bound])) !== 'done') log.warn({ waitedMs: RESYNC_WAIT_MS }, 'containers still being set up; going on without waiting for them');
      clearTimeout(timer);
    } catch (err) {
      log.warn({ socket: o.socketPath, err: errorMessage(err), retryMs: RETRY_MS }, 'docker engine not reachable; retrying');
      retry = setTimeout(() => void startMonitor(), RETRY_MS);
      retry.unref();
    }
  }

  return {
    start: startMonitor,
    async reconcile() {
      for (const [id, ns] of nsRules) {
        if (!existsSync(ns.netns)) continue; // the monitor's pu-stop follows
        await ns.reconciler.apply(nsRuleset(ns.index)).catch((err: unknown) => log.warn({ pu: id, err: errorMessage(err) }, 'cannot reconcile rules in container namespace'));
      }
    },
    pidsOf,
    async stop({ removeRules }) {
      stopped = true;
      if (retry) clearTimeout(retry);
      await monitor.stop().catch(() => {});
      await Promise.all([...chains.values()]);
      if (removeRules) await Promise.all([...byContainer.keys()].map((cid) => remove(cid, 'daemon stopping')));
    },
  };
}
