// `tessera daemon`: the composition root. It builds the services (metrics, health, flow log,
// PU store, sync loop, policy, API routes, containers), connects them, and owns the lifecycle
// (docs/architecture.md, "Lifecycle"): one daemon per network namespace and cgroup root
// (lock.ts); a start that reconciles the kernel in place (never removes first) once running
// PUs are re-adopted with their ports; reconcile loops; a stop that leaves enforcement in
// place unless removal is asked for.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { TesseraError, errorMessage } from '../errors.js';
import { createCommandRunner, createNetCls, createNftSession, createReconciler, rulesGeneration } from '../rules/index.js';
import { createDatapath, nftGenerationReader, type FlowRecord } from '../datapath/index.js';
import { startApiServer, createApiClient } from '../api/index.js';
import { createListenerDiscovery } from './discovery.js';
import { createListenerSources } from './listener-sources.js';
import { validateConfig, type DaemonConfig } from './config.js';
import { createLogger, rateLimited } from './log.js';
import { loadHostSecret, loadTrust } from './trust.js';
import { loadHandshakeKey } from './handshake-key.js';
import { PuRegistry } from './pus.js';
import { AuthorizedFlows, revokeFlows } from './revoke.js';
import { createContainerPus, type ContainerPus } from './containers.js';
import { acquireLocks, type HeldLocks } from './lock.js';
import { createMetrics } from './metrics.js';
import { createHealth, followWorkers } from './health.js';
import { createFlowLog } from './flow-log.js';
import { createPuStore } from './pu-store.js';
import { createSyncLoop, hostRulesApplier } from './sync-loop.js';
import { createPolicyService } from './policy-service.js';
import { createApiRoutes } from './api-routes.js';
import { createShutdown } from './shutdown.js';
import { markStopped, registerEpoch } from './register-epoch.js';
import { serveProbes } from './probes.js';
import { explain } from '../policy/index.js';
import { readUiToken, startFlowMap } from '../ui/index.js';
import { startFleetService } from './fleet-service.js';
import { createLearnService } from './learn-service.js';
import { connectCluster } from '../fleet/link.js';
import { puModes } from '../learn/modes-of.js';

const FLOW_RING = 2000;
const RECONCILE_EVERY_MS = 10_000;
const ROTATE_CHECK_MS = 15_000;
/** Listener discovery ticks no faster than this, whatever --port-scan-ms says (issue 17: idle cost). */
const DISCOVERY_MIN_MS = 2000;

export interface RunningDaemon {
  /** Stop; rules are removed only with config.removeRulesOnStop (or `removeRules: true` here). */
  stop(reason: string, opts?: { removeRules?: boolean }): Promise<void>;
  /** Re-read the policy file; a file that does not compile is refused and the running policy stays. */
  reloadPolicy(why: string): Promise<boolean>;
  readonly stopped: Promise<void>;
}

export async function startDaemon(config: DaemonConfig, log: Logger = createLogger(config.logLevel)): Promise<RunningDaemon> {
  validateConfig(config);
  // Refuse to run twice against one socket: a second daemon would steal the PUs' rules.
  if (existsSync(config.socket)) {
    const alive = await createApiClient(config.socket)
      .status()
      .then(() => true)
      .catch(() => false);
    if (alive) throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', `another tessera daemon answers on ${config.socket}: stop it first or use --socket`);
  }
  // Before anything touches the kernel: one daemon per network namespace and cgroup root.
  const locks = await acquireLocks({ cgroupRoot: config.cgroupRoot, role: 'daemon', socket: config.socket });
  try {
    return await startLocked(config, log, locks);
  } catch (err) {
    await locks.release();
    throw err;
  }
}

async function startLocked(config: DaemonConfig, log: Logger, locks: HeldLocks): Promise<RunningDaemon> {
  const started = Date.now();
  const health = createHealth();
  const authorized = new AuthorizedFlows();
  const warn = rateLimited(log.child({ component: 'datapath' }));
  const metrics = createMetrics(
    {
      workerStats: () => datapath.stats(),
      puCount: () => registry.all().length,
      ready: () => health.readiness().ready,
      fleet: () => {
        if (!fleet) return null;
        const f = fleet.link.status();
        return { policyRevision: f.applied.policy?.revision ?? null, staleSeconds: f.staleSeconds, synced: f.state === 'synced', refused: f.counters.refused };
      },
    },
    { processMetrics: true },
  );
  const count = metrics.count;
  // Refuse to start with a policy file that does not compile: the error names line and column.
  let policyApplied = (): void => {};
  const policy = createPolicyService({
    ...(config.policyFile ? { file: config.policyFile } : {}),
    apply: (text) => {
      datapath.setPolicy(text);
      policyApplied();
    },
    log: log.child({ component: 'policy' }),
    health,
    count,
  });

  const trust = loadTrust(config);
  const hostSecret = loadHostSecret(config.stateDir);
  const handshakeKey = loadHandshakeKey(config.stateDir);
  // Every token carries the host's handshake key (claim hk): a client that verified one of
  // our tokens knows the key its next proofs to this host are made under.
  const issuer: typeof trust.issuer = { ...trust.issuer, issue: (pu, now, ttl) => trust.issuer.issue({ ...pu, hostKeyRaw: handshakeKey.publicRaw }, now, ttl) };
  const uiToken = config.ui?.tokenFile ? readUiToken(config.ui.tokenFile) : undefined;
  const runner = createCommandRunner();
  const rulesLog = log.child({ component: 'rules' });
  // The reconcile loop re-reads the kernel's rules only when the nf_tables generation id moved
  // (issue 17), else on its 10 min backstop.
  const generation = await rulesGeneration(runner, rulesLog, nftGenerationReader());
  // A PU's element delta goes to one long-lived `nft -i`, not a process per transaction.
  const nftSession = createNftSession({ runner });
  const reconciler = createReconciler({ runner, nftSession, ...(generation ? { generation } : {}), log: { debug: (o, m) => rulesLog.debug(o, m), info: (o, m) => rulesLog.info(o, m), warn: (o, m) => rulesLog.warn(o, m) } });
  const netcls = createNetCls({ root: config.cgroupRoot, runner });
  // Rules of an earlier run (stopped, killed or crashed) stay in force, fail-closed, until the
  // first apply below replaces them in place, table by table, once the PUs still running are
  // known again with their ports.
  await netcls.ensureMounted();

  const registry: PuRegistry = new PuRegistry({ netcls, issuer, tokenTtlSeconds: config.tokenTtlSeconds, onChange: () => syncLoop.syncInBackground() });
  const store = createPuStore({ path: join(config.stateDir, 'pus.json'), registry, netcls, log, warn });
  const datapath = createDatapath({
    queueBase: config.queueBase,
    queues: config.queues,
    maxLen: 4096,
    failOpen: config.failOpen,
    mode: config.datapathMode,
    trust: trust.datapath,
    hostSecret,
    handshakeKey,
    hostId: trust.hostId,
    startedAt: registerEpoch(config.stateDir, Date.now()),
    clockSkewSeconds: config.clockSkewSeconds,
    handshake: { rejectMode: config.rejectMode, maxPacketLength: config.mtu },
    udp: { reject: config.udpRefusal ?? 'drop' },
    // Each worker's share of the host's strike register: twice protocol v2's 131,072, because
    // the UDP exchange's Hellos strike it too (docs/protocol.md, "UDP", "Bounded state").
    // Test only (like TESSERA_TEST_CRASH_AFTER_MS): a register small enough to fill.
    v2: { registerEntries: process.env.TESSERA_TEST_REGISTER_ENTRIES ? Number(process.env.TESSERA_TEST_REGISTER_ENTRIES) : 262_144 },
    policyText: policy.current().text,
  });
  // --cluster: the last verified bundles on disk are adopted now (fail-static), before any
  // worker starts; etcd is followed in the background (docs/cluster.md).
  // The brief's contract with fleet-service: the host's handshake public key (raw 32 bytes),
  // which it publishes as HostEntry.handshakeKey. Added to the options without naming the
  // field here, so this compiles before and after fleet-service declares it.
  const withHandshakeKey = <T extends object>(o: T): T => ({ ...o, handshakePublicKey: handshakeKey.publicRaw });
  const fleet = config.cluster ? startFleetService(withHandshakeKey({
        cluster: config.cluster,
        stateDir: config.stateDir,
        hostId: trust.hostId,
        ...(config.trust.mode === 'ca' ? { certificate: readFileSync(config.trust.certFile, 'utf8').trim() } : {}),
        policy,
        applyTrust: (u) => datapath.apply({ removed: [], set: [], ...u }),
        ...(trust.datapath.mode === 'ca' ? { caPublicJwk: trust.datapath.caPublicJwk } : {}),
        health,
        log,
      })) : null;
  const syncLoop = createSyncLoop({
    pushWorkers: () => datapath.apply(registry.changes()),
    applyRules: hostRulesApplier(() => registry.all(), reconciler, { num: config.queueBase, count: config.queues, bypass: config.failOpen, ...(config.datapathMode === 'passes6' ? { ackPass: true } : {}) }),
    save: () => store.saveSoon(),
    health,
    log,
    count,
    retryEverySeconds: RECONCILE_EVERY_MS / 1000,
  });
  // Accept records cross from the workers only while someone follows them or they are logged
  // (issue 12 item 6); otherwise workers count them and keep them for revoke.
  const flows = createFlowLog({
    size: FLOW_RING,
    refusalLinesPerSecond: 50,
    log: log.child({ component: 'flow' }),
    count,
    onRecord: (r: FlowRecord) => authorized.note(r),
    onFollowers: (n) => datapath.setFollow(n > 0 || flows.logsFlows()),
  });
  datapath.setFollow(flows.logsFlows());
  datapath.on('flows', (records: FlowRecord[]) => flows.add(records));
  // Learn mode: the workers' observed edges, kept in the state dir and (--cluster) the store.
  const c = config.cluster;
  const learn = createLearnService({
    stateDir: config.stateDir,
    host: trust.hostId,
    log: log.child({ component: 'learn' }),
    refusals: () => datapath.stats().reduce((s, w) => s + (w.handshake?.rejected ?? 0), 0),
    ...(c ? { etcd: { client: connectCluster(c.url, { ...(c.caFile ? { caFile: c.caFile } : {}), ...(c.certFile ? { certFile: c.certFile } : {}), ...(c.keyFile ? { keyFile: c.keyFile } : {}) }), ...(c.prefix ? { prefix: c.prefix } : {}) } } : {}),
  });
  datapath.on('edges', (t) => learn.add(t));
  // The promotion guard: PUs that a policy change moved to enforce arm a watch on refusals.
  let modesBefore = puModes(policy.current().policy, registry.all());
  policyApplied = () => {
    const now = puModes(policy.current().policy, registry.all());
    const moved = Object.keys(now).filter((id) => now[id] === 'enforce' && modesBefore[id] !== undefined && modesBefore[id] !== 'enforce');
    if (moved.length > 0) learn.arm(`${moved.length} PU(s) moved to enforce (${moved.slice(0, 3).join(', ')}${moved.length > 3 ? ', …' : ''})`);
    modesBefore = now;
  };
  datapath.on('unsentAccepts', (n: number) => count('flows_accepted', n));
  followWorkers(health, datapath); // a worker that died and came back: readiness and health follow
  datapath.on('error', (err: Error) => {
    count('datapath_errors');
    warn('datapath', { err: err.message }, 'datapath worker error');
  });

  // Listener discovery and PU liveness (discovery.ts, issue 17): per tick one socket dump and
  // the process lists of a bounded batch of PUs; no /proc walk of every PU.
  const discovery = createListenerDiscovery(
    {
      pus: () => registry.all(),
      pidsOf: (pu) => (pu.kind === 'container' ? (containers ? containers.pidsOf(pu) : Promise.resolve([])) : netcls.pids(pu.id)),
      ...createListenerSources(runner, log, () => registry.all()),
      setObserved: (pu, pids, ports) => registry.setObserved(pu, pids, ports),
      async end(pu) {
        if (!(await registry.remove(pu.id))) return;
        count('pus_removed');
        log.info({ pu: pu.id }, 'PU ended: its last process exited');
      },
      warn: (o, m) => warn('scan', o, m),
    },
    { intervalMs: Math.max(config.portScanMs, DISCOVERY_MIN_MS) },
  );

  // PUs first, workers second: a worker judges packets from the moment it binds its queue
  // and delivers a SYN to a port of no known PU (reason no-pu). The snapshot of the
  // re-adopted PUs and their ports is posted while the workers load, so it waits in their
  // message queue for their first event-loop turn (the pool posts it again at 'ready').
  const savedContainers = await store.readopt();
  const starting = datapath.start();
  datapath.update(registry.snapshot());
  await starting;
  health.setReady('workers', true);

  const containers: ContainerPus | null = config.docker
    ? createContainerPus({ socketPath: config.docker.socket, registry, netcls, datapath, sync: syncLoop.sync, queueNum: config.queueBase, failOpen: config.failOpen, log: log.child({ component: 'docker' }), count, saved: savedContainers, apiSocket: config.socket })
    : null;
  // Running containers are resynced here (pu-start each, with their saved index and ports),
  // so a restarted daemon protects them again, including those started while it was down.
  // Resolves once that first resync is applied, or at once when the engine does not answer.
  if (containers) await containers.start();
  // The first host-rule transaction of this run, in place: the previous run's rules were in
  // force until this commits. A failure is shown in status (health degraded) and retried.
  syncLoop.hold(false);
  await syncLoop.sync().catch(() => {});

  const routes = createApiRoutes({
    identity: { host: trust.hostId, trust: trust.mode, queues: Array.from({ length: config.queues }, (_, i) => config.queueBase + i), failOpen: config.failOpen, startedAt: started },
    registry,
    netcls,
    sync: syncLoop.sync,
    rules: syncLoop.rules,
    workerStats: () => datapath.stats(),
    metrics,
    flows,
    policy,
    health,
    revoke: async (dryRun) => {
      for (const r of await datapath.acceptedFlows()) authorized.note(r);
      return revokeFlows(authorized, policy.current().policy, runner, dryRun);
    },
    ...(containers ? { enrollContainer: containers.enroll } : {}),
    learn: { status: () => ({ ...learn.status(), modes: puModes(policy.current().policy, registry.all()) }), edges: () => learn.edges() },
    log,
  });
  const api = await startApiServer(config.socket, routes);
  const probes = config.metricsListen
    ? await serveProbes(config.metricsListen, metrics, health, log).catch(async (err: unknown) => {
        await api.close();
        throw err;
      })
    : null;
  const ui = config.ui
    ? await startFlowMap({
        listen: config.ui.listen,
        ...(uiToken ? { token: uiToken } : {}),
        recentFlows: () => flows.recent({ deniedOnly: false, limit: FLOW_RING }),
        subscribeFlows: (fn) => flows.subscribe(fn),
        explain: (q) => explain(policy.current().policy, q),
        local: () => ({ host: trust.hostId, pus: registry.all().map((p) => ({ id: p.id, labels: p.labels })) }),
      }).catch(async (err: unknown) => {
        await Promise.all([api.close(), probes?.close()]);
        throw err;
      })
    : null;
  if (ui) log.info({ url: ui.url, token: !!uiToken }, 'flow map listening (docs/ui.md)');
  const stopWatching = policy.watch();

  discovery.start();
  learn.start();
  const timers = [
    setInterval(() => {
      syncLoop.syncInBackground(); // heals rules someone else removed; retries a failed transaction
      void containers?.reconcile();
    }, RECONCILE_EVERY_MS),
    setInterval(() => {
      registry.rotate().catch((err: unknown) => log.error({ err: errorMessage(err) }, 'token rotation failed'));
    }, ROTATE_CHECK_MS),
  ];

  const shutdown = createShutdown({
    log,
    removeRulesOnStop: config.removeRulesOnStop ?? false,
    async quiesce() {
      for (const t of timers) clearInterval(t);
      discovery.stop();
      flows.stop();
      stopWatching();
      await Promise.all([api.close(), probes?.close(), ui?.close(), fleet?.stop()]);
    },
    saveState: () => store.save(),
    holdRules: () => syncLoop.hold(true),
    ...(containers ? { stopContainers: (o: { removeRules: boolean }) => containers.stop(o) } : {}),
    syncIdle: () => syncLoop.idle(),
    stopDatapath: async () => {
      await datapath.stop();
      markStopped(config.stateDir, Date.now());
      // After the workers: each hands over the edges it still holds when it stops.
      await learn.stop();
    },
    removeRules: () => reconciler.removeAll(),
    releaseLocks: () => {
      nftSession?.stop();
      return locks.release();
    },
  });

  log.info(
    { host: trust.hostId, trust: trust.mode, policy: policy.current().name, queues: config.queues, failOpen: config.failOpen, socket: config.socket, cgroupRoot: config.cgroupRoot, mode: config.datapathMode, docker: config.docker?.socket ?? false, cluster: config.cluster?.url ?? false },
    'tessera daemon running',
  );
  if (config.datapathMode !== 'handshake') log.warn('--accept-all: benchmark mode, every handshake is accepted unchecked; PUs are NOT protected');
  return { stop: shutdown.stop, stopped: shutdown.stopped, reloadPolicy: async (why) => policy.reload(why) };
}
