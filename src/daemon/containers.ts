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
import { TesseraError, errorMessage } from '../errors.js';
import { buildRuleset, createCommandRunner, createReconciler, type Cgroup2Ref, type NetCls, type Reconciler } from '../rules/index.js';
import type { Datapath } from '../datapath/index.js';
import { createDockerMonitor, type DockerMonitor, type DockerPu } from '../monitors/docker/index.js';
import type { Pu, PuRegistry } from './pus.js';
import type { SavedPu } from './state.js';
import type { EnrollContainerRequest, EnrollContainerResponse } from '../api/index.js';
import { pendingPu, readEngineState, readEnrollFacts, runtimeFilePath, writeRuntimeFile } from './enroll.js';

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
  /** The metrics service's typed counters. */
  count(name: 'pus_created' | 'pus_removed' | 'containers_enrolled'): void;
  /**
   * Container PUs of the previous run (STATE_DIR/pus.json) by PU id: a container found again
   * gets its index (so its classid does not change under it) and its listening ports (so they
   * are in the first rule transaction). Each is used once.
   */
  saved?: Map<string, SavedPu>;
  /** The daemon's API socket, named in the runtime file for the shim. */
  apiSocket: string;
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
  /** The runtime shim's call: make a created container a PU before it starts (docs/docker.md). */
  enroll(req: EnrollContainerRequest): Promise<EnrollContainerResponse>;
}

const RETRY_MS = 5000;
const RESYNC_WAIT_MS = 30_000;
/** How long enrollment waits for the engine's `create` event (it usually came ~90 ms earlier). */
const CREATED_WAIT_MS = 2500;

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
  /** Container id -> PID of the init its PU was made for: a `pu-start` with the same init reconciles in place. */
  const initOf = new Map<string, number>();
  const runtimeFile = runtimeFilePath();
  let stopped = false;
  let retry: NodeJS.Timeout | null = null;

  /** Runs `f` after the container's earlier work; the chain goes on if it fails, and the returned promise says how it went. */
  function serial<T>(containerId: string, f: () => Promise<T>): Promise<T> {
    const prev = chains.get(containerId) ?? Promise.resolve();
    const run = prev.then(f);
    const next = run.then(
      () => {},
      (err: unknown) => log.error({ container: containerId.slice(0, 12), err: errorMessage(err) }, 'container PU work failed'),
    );
    chains.set(containerId, next);
    void next.finally(() => {
      if (chains.get(containerId) === next) chains.delete(containerId);
    });
    return run;
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

  async function add(c: DockerPu): Promise<Pu | undefined> {
    if (stopped || !c.running || c.pid <= 0) return undefined;
    const existing = o.registry.get(byContainer.get(c.id) ?? '');
    // Same init, same kind of network: same namespace and cgroups (an init cannot change them;
    // a dying one shows "/" as its cgroup, which must not look like a change).
    if (existing && initOf.get(c.id) === c.pid && (c.networkMode === 'host') === !existing.netns) {
      // Enrolled by the runtime shim before it ran (same init, same namespace): the start's
      // inspect completes its identity in place. Tearing the PU down would open a window.
      await o.registry.relabel(existing, { name: c.name, labels: c.labels, systemLabels: c.systemLabels });
      existing.posture = c.posture;
      log.info({ pu: existing.id, labels: existing.labels, posture: c.posture.map((p) => p.flag) }, 'enrolled container started: identity reconciled');
      return existing;
    }
    await remove(c.id, 'replaced');
    const host = c.networkMode === 'host';
    if (!host && !c.netnsPath) {
      // --network container:<id> shares another container's namespace: that one's PU covers it.
      log.warn({ container: c.name, networkMode: c.networkMode }, 'container has no network namespace of its own: not a PU (it shares another container\'s)');
      return undefined;
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
    initOf.set(c.id, c.pid);
    o.count('pus_created');
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
    return pu;
  }

  /** The shim's call, between `runc create` and `start`: the PU exists, with its rules, before the answer. */
  async function enroll(r: EnrollContainerRequest): Promise<EnrollContainerResponse> {
    if (stopped) throw new TesseraError('TESSERA_ERR_ENROLL', 'daemon stopping');
    // Never the Docker API here: the engine holds this container until the runtime returns.
    // Identity: the `create` event; else (created before this daemon ran, then started again)
    // the engine's files; else wait for the event a little.
    const facts = await readEnrollFacts(r);
    const disk = facts.containerDir ? await readEngineState(facts.containerDir, r.id) : undefined;
    const event = await monitor.created(r.id, disk ? 0 : CREATED_WAIT_MS);
    // The event's attributes lose user labels named "image" or "name"; the engine's file has them.
    const created = event ? { ...event, labels: disk?.created.labels ?? event.labels } : disk?.created;
    if (!created) {
      throw new TesseraError('TESSERA_ERR_ENROLL', `no create event for container ${r.id.slice(0, 12)} within ${CREATED_WAIT_MS} ms and no engine files (is the daemon following this engine? monitor connected: ${monitor.connected})`);
    }
    if (facts.network.kind === 'shared') {
      log.info({ container: created.name, netns: facts.network.path }, 'created container shares another namespace: not a PU of its own');
      return { enrolled: false, reason: 'shares another container\'s network namespace' };
    }
    const c = pendingPu(created, r.pid, facts, disk?.networkMode);
    const pu = await serial(r.id, () => add(c));
    if (!pu) throw new TesseraError('TESSERA_ERR_ENROLL', `container ${created.name} could not be made a PU`);
    o.count('containers_enrolled');
    log.info({ pu: pu.id, container: created.name, network: facts.network.kind }, 'container enrolled before its start');
    return { enrolled: true, pu: o.registry.info(pu) };
  }

  async function remove(containerId: string, why: string): Promise<void> {
    const id = byContainer.get(containerId);
    if (!id) return;
    byContainer.delete(containerId);
    initOf.delete(containerId);
    const ns = nsRules.get(id);
    nsRules.delete(id);
    if (ns && existsSync(ns.netns)) {
      // The container still exists (engine resync, daemon stop): leave nothing in its namespace.
      await ns.reconciler.removeAll().catch((err: unknown) => log.warn({ pu: id, err: errorMessage(err) }, 'cannot remove rules in container namespace'));
    }
    // Closing the queue socket releases the namespace; otherwise it would outlive the container.
    await o.datapath.closeNamespace(id);
    if (await o.registry.remove(id)) o.count('pus_removed');
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

  monitor.on('pu-start', (c) => void serial(c.id, () => add(c)).catch(() => {}));
  monitor.on('pu-stop', (s) => void serial(s.id, () => remove(s.id, s.reason)).catch(() => {}));
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
    }).catch(() => {});
  });
  monitor.on('disconnected', (err) => log.warn({ err: err.message }, 'docker engine gone; container PUs stay until it is back and resynced'));
  monitor.on('connected', () => log.info({ socket: o.socketPath }, 'following the docker engine'));

  let runtimeFileWritten = false;
  async function startMonitor(): Promise<void> {
    if (stopped) return;
    if (!runtimeFileWritten) await announce();
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

  /** Once, before the first follow: the shim asks this socket from now on (kept at stop: fail-closed). */
  async function announce(): Promise<void> {
    runtimeFileWritten = true;
    try {
      const other = await writeRuntimeFile(runtimeFile, o.apiSocket);
      if (other) log.warn({ runtimeFile, previous: other }, 'runtime file named another daemon\'s socket: this daemon enrolls the engine\'s containers now (one --docker daemon per engine)');
    } catch (err) {
      log.error({ runtimeFile, err: errorMessage(err) }, 'cannot write the runtime file: the runtime shim will not find this daemon');
    }
  }

  return {
    start: startMonitor,
    enroll,
    async reconcile() {
      // A PU enrolled for a container that never started and whose init is gone (the engine's
      // event was lost): nothing else would end it.
      for (const [cid, pid] of initOf) if (!existsSync(`/proc/${pid}`)) void serial(cid, () => remove(cid, 'init gone')).catch(() => {});
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
