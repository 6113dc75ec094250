// `tessera daemon`: the composition root. Wires config, trust, cgroups, rules, the datapath
// pool, the PU registry and the local API, and owns the lifecycle (docs/architecture.md,
// "Lifecycle"): one daemon per network namespace and cgroup root (lock.ts); a start that
// reconciles the kernel in place (never removes first) once running PUs are re-adopted with
// their ports; reconcile loops; a stop that leaves enforcement in place unless removal is
// asked for.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { TesseraError, errorMessage } from '../errors.js';
import { buildRuleset, createCommandRunner, createNetCls, createReconciler, type NetCls, type Reconciler } from '../rules/index.js';
import { createDatapath, type Datapath } from '../datapath/index.js';
import type { FlowRecord } from '../datapath/index.js';
import { startApiServer, createApiClient, type ApiServer, type FlowEntry, type StatusResponse } from '../api/index.js';
import { createListenerSource, listeningPortsAsync, parseSsListeners, SS_LISTENERS, type ListenerDump } from '../monitors/process/index.js';
import { createListenerDiscovery } from './discovery.js';
import { loadNative } from '../datapath/native.js';
import { validateConfig, type DaemonConfig } from './config.js';
import { createLogger, createRefusalLogBudget, rateLimited } from './log.js';
import { loadHostSecret, loadTrust } from './trust.js';
import { PuRegistry } from './pus.js';
import { builtinPolicy, loadPolicyFile, watchPolicyFile, DEFAULT_POLICY_TEXT, type LoadedPolicy } from './policy-source.js';
import { AuthorizedFlows, revokeFlows } from './revoke.js';
import { createContainerPus, type ContainerPus } from './containers.js';
import { acquireLocks, type HeldLocks } from './lock.js';
import { metricsText } from './metrics.js';
import { hostRulesetSpec } from './host-rules.js';
import { loadPuState, savePuState, type SavedPu } from './state.js';

const FLOW_RING = 2000;
const RECONCILE_EVERY_MS = 10_000;
/** Refusal log lines per second per reason code; the rest are counted in one summary line. */
const REFUSAL_LOG_LINES_PER_SECOND = 50;
const ROTATE_CHECK_MS = 15_000;
/** Listener discovery ticks no faster than this, whatever --port-scan-ms says (issue 17: idle cost). */
const DISCOVERY_MIN_MS = 2000;

function nativeListenerDump(): ListenerDump | null {
  try {
    const native = loadNative();
    return typeof native.listeningSockets === 'function' ? native.listeningSockets : null;
  } catch {
    return null;
  }
}

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
  // Refuse to start with a policy file that does not compile: the error names line and column.
  let current: LoadedPolicy = config.policyFile ? loadPolicyFile(config.policyFile) : builtinPolicy();
  const authorized = new AuthorizedFlows();

  const trust = loadTrust(config);
  const hostSecret = loadHostSecret(config.stateDir);
  const runner = createCommandRunner();
  const rulesLog = log.child({ component: 'rules' });
  const reconciler: Reconciler = createReconciler({
    runner,
    log: { debug: (o, m) => rulesLog.debug(o, m), info: (o, m) => rulesLog.info(o, m), warn: (o, m) => rulesLog.warn(o, m) },
  });
  const netcls: NetCls = createNetCls({ root: config.cgroupRoot, runner });

  // Rules of an earlier run (stopped, killed or crashed) stay in force, fail-closed, until the
  // first apply below replaces them in place, table by table, once the PUs still running are
  // known again with their ports.
  await netcls.ensureMounted();

  const flowLog = log.child({ component: 'flow' });
  const refusalBudget = createRefusalLogBudget(REFUSAL_LOG_LINES_PER_SECOND);
  const warn = rateLimited(log.child({ component: 'datapath' }));
  // Kept as the workers sent them (time in ms); the API's ISO time is made only when a
  // record is served, followed or logged, not for every connection.
  const flows: FlowRecord[] = [];
  const entryOf = (r: FlowRecord): FlowEntry => ({ ...r, time: new Date(r.time).toISOString() });
  const subscribers = new Set<(f: FlowEntry) => void>();
  const counters: Record<string, number> = {
    flows_accepted: 0,
    flows_rejected: 0,
    pus_created: 0,
    pus_removed: 0,
    rule_transactions: 0,
    datapath_errors: 0,
    policy_reloads: 0,
    policy_reload_errors: 0,
  };

  async function reloadPolicy(why: string): Promise<boolean> {
    if (!config.policyFile) {
      log.info({ why }, 'no --policy file: nothing to reload');
      return false;
    }
    try {
      const next = loadPolicyFile(config.policyFile);
      if (next.text === current.text) return true;
      current = next;
      datapath.setPolicy(next.text);
      counters.policy_reloads!++;
      log.info({ why, policy: next.name }, 'policy reloaded: applies to new connections');
      return true;
    } catch (err) {
      counters.policy_reload_errors!++;
      log.error({ why, err: errorMessage(err) }, 'policy reload refused; the running policy stays');
      return false;
    }
  }

  let changePending = false;
  const registry = new PuRegistry({
    netcls,
    issuer: trust.issuer,
    tokenTtlSeconds: config.tokenTtlSeconds,
    onChange: () => syncInBackground(),
  });

  const datapath: Datapath = createDatapath({
    queueBase: config.queueBase,
    queues: config.queues,
    maxLen: 4096,
    failOpen: config.failOpen,
    mode: config.datapathMode,
    trust: trust.datapath,
    hostSecret,
    clockSkewSeconds: config.clockSkewSeconds,
    handshake: { rejectMode: config.rejectMode, maxPacketLength: config.mtu },
    policyText: current.text,
  });

  datapath.on('flows', (records: FlowRecord[]) => {
    // Once per batch: below info (e.g. --log-level warn) the message is not even built.
    const logFlows = flowLog.isLevelEnabled('info');
    for (const r of records) {
      if (r.verdict === 'accept') counters.flows_accepted!++;
      else counters.flows_rejected!++;
      if (logFlows && (r.verdict === 'accept' || refusalBudget.allow(r.reason))) flowLog.info({ flow: entryOf(r) }, `${r.verdict} ${r.direction} ${r.reason}`);
      flows.push(r);
      authorized.note(r);
      // Trimmed in chunks: splicing one record off the front of 2 000 on every push is a
      // memmove per connection.
      if (flows.length > FLOW_RING + FLOW_RING / 4) flows.splice(0, flows.length - FLOW_RING);
      if (subscribers.size > 0) {
        const f = entryOf(r);
        for (const s of subscribers) s(f);
      }
    }
  });
  datapath.on('error', (err: Error) => {
    counters.datapath_errors!++;
    warn('datapath', { err: err.message }, 'datapath worker error');
  });

  /**
   * The host rules' health, for `tessera status`: a failed transaction is not only a log
   * line. `since` is when the current state (ok or failing) began; `lastFailure` stays after
   * a recovery (e.g. the PU whose rules failed was refused and removed, so the kernel again
   * matches what is wanted).
   */
  let rules: StatusResponse['rules'] = { ok: true, since: new Date().toISOString() };
  function rulesResult(err: unknown): void {
    const now = new Date().toISOString();
    if (err === null) {
      if (rules.ok) return;
      log.info({ failingSince: rules.since }, 'rules applied again');
      rules = { ok: true, since: now, ...(rules.lastFailure ? { lastFailure: rules.lastFailure } : {}) };
      return;
    }
    const error = errorMessage(err).split('\n')[0]!;
    log.error({ err: errorMessage(err) }, 'applying rules failed; retried on the next change and every 10 s');
    rules = { ok: false, error, since: rules.ok ? now : rules.since, lastFailure: { error, at: now } };
  }

  /**
   * While true, sync() updates the workers but leaves the kernel's host rules as they are: at
   * start (the previous run's rules stay in force until every running PU is known again) and
   * at a stop that keeps enforcement (no partial ruleset while PUs are dropped from memory).
   */
  let holdRules = true;
  /**
   * Push the current PUs to the workers and the kernel. Coalesced and one at a time; the
   * returned promise resolves only once every change made before the call is applied, so
   * a new PU's rules exist before its first process may send a packet, and rejects when the
   * last transaction failed (the caller must not treat the PU as protected).
   */
  let syncing: Promise<void> | null = null;
  function sync(): Promise<void> {
    changePending = true;
    if (!syncing) {
      syncing = (async () => {
        // Never run synchronously inside the caller: a held sync has no await, and would
        // finish before `syncing` is even set, so the caller's next change (a re-adopted
        // PU's ports, set right after its creation) would find a stale `syncing` and be lost.
        await null;
        let failure: unknown = null;
        try {
          while (changePending) {
            changePending = false;
            datapath.update(registry.snapshot());
            if (holdRules) continue;
            // Containers with a namespace of their own have their rules there, not here.
            const pus = registry.all().filter((p) => !p.netns);
            const applying = pus.map((p) => [p, p.ports] as const);
            try {
              const r = await reconciler.apply(buildRuleset(hostRulesetSpec(pus, { num: config.queueBase, count: config.queues, bypass: config.failOpen })));
              if (r.changed) counters.rule_transactions!++;
              for (const [p, ports] of applying) p.protectedPorts = ports;
              failure = null;
            } catch (err) {
              failure = err;
            }
            rulesResult(failure);
          }
        } finally {
          // In the same tick as the last check of changePending: a change after it starts a new run.
          syncing = null;
        }
        // Not while held: at start the file still describes every PU of the last run (a
        // crash now must not lose those not re-adopted yet); at a stop it was just written.
        if (!holdRules) saveState();
        if (failure) throw failure;
      })();
    }
    return syncing;
  }
  /** For callers that do not wait: a failure is already logged and shown in status. */
  function syncInBackground(): void {
    sync().catch(() => {});
  }

  const statePath = join(config.stateDir, 'pus.json');
  function saveState(): void {
    const saved: SavedPu[] = registry
      .all()
      .map((p) => ({ id: p.id, kind: p.kind, name: p.name, labels: p.kind === 'process' ? p.labels.filter((l) => !l.startsWith('@')) : [], index: p.index, ports: p.ports }));
    try {
      savePuState(statePath, saved);
    } catch (err) {
      warn('state', { err: errorMessage(err) }, 'cannot save PU state');
    }
  }

  /**
   * Re-adopt process PUs of an earlier run whose cgroups still hold processes, with their
   * last known ports; return the container entries for the Docker resync.
   */
  async function readopt(): Promise<Map<string, SavedPu>> {
    const state = loadPuState(statePath);
    for (const problem of state.problems) log.warn({ problem }, 'PU state: ignoring what cannot be read');
    const known = new Set<string>();
    for (const s of state.pus) {
      if (s.kind !== 'process') continue;
      const pids = await netcls.pids(s.id).catch(() => []);
      if (pids.length === 0) continue;
      try {
        const pu = await registry.create({ id: s.id, name: s.name, kind: 'process', labels: s.labels, index: s.index });
        registry.setObserved(pu, pids, s.ports);
        known.add(s.id);
        log.info({ pu: s.id, pids, ports: s.ports }, 're-adopted process PU from an earlier run');
      } catch (err) {
        log.warn({ pu: s.id, err: errorMessage(err) }, 'cannot re-adopt PU');
      }
    }
    // Anything else in our subtree is orphaned: remove it so no stale classid is inherited.
    for (const c of await netcls.list()) {
      if (known.has(c.name)) continue;
      try {
        await netcls.remove(c.name);
      } catch {
        log.warn({ cgroup: c.name }, 'orphaned cgroup still has processes; they are unprotected until it is cleaned (tessera cleanup)');
      }
    }
    return new Map(state.pus.filter((s) => s.kind === 'container').map((s) => [s.id, s]));
  }

  // Listener discovery and PU liveness (discovery.ts, issue 17): per tick one dump of the
  // listening sockets with their cgroup v2 (ss, sock_diag) and the process lists of a bounded
  // batch of PUs; descriptors are read (asynchronously) only for PUs without a cgroup v2, against
  // the addon's sock_diag dump of listening sockets (else /proc/net/tcp{,6}).
  const listenerSockets = createListenerSource(nativeListenerDump(), (err) =>
    log.warn({ err: errorMessage(err) }, 'sock_diag refused the listening-socket dump; reading /proc/net/tcp{,6} instead (slower with many sockets)'),
  );
  let cgroupDump = true;
  const discovery = createListenerDiscovery(
    {
      pus: () => registry.all(),
      pidsOf: (pu) => (pu.kind === 'container' ? (containers ? containers.pidsOf(pu) : Promise.resolve([])) : netcls.pids(pu.id)),
      async listeners() {
        if (!cgroupDump) return null;
        const parsed = await runner
          .run(SS_LISTENERS, { timeoutMs: 10_000 })
          .then((r) => parseSsListeners(r.stdout))
          .catch((err: unknown) => {
            log.warn({ err: errorMessage(err) }, 'ss --cgroup is not available: ports are read from each PU\'s processes (install iproute2 5.8 or later)');
            return null;
          });
        if (parsed === null) cgroupDump = false;
        return parsed;
      },
      portsOfPids: (pids) => listeningPortsAsync(pids, listenerSockets()),
      setObserved: (pu, pids, ports) => registry.setObserved(pu, pids, ports),
      async end(pu) {
        if (!(await registry.remove(pu.id))) return;
        counters.pus_removed!++;
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
  // Closing the rest by construction is the datapath's: bind with the first snapshot in hand.
  const savedContainers = await readopt();
  const starting = datapath.start();
  // Also posted now, while the workers are still loading: it waits in their message queue,
  // so it is there when their event loop first runs, rather than a round trip after 'ready'.
  datapath.update(registry.snapshot());
  await starting;

  const containers: ContainerPus | null = config.docker
    ? createContainerPus({
        socketPath: config.docker.socket,
        registry,
        netcls,
        datapath,
        sync,
        queueNum: config.queueBase,
        failOpen: config.failOpen,
        log: log.child({ component: 'docker' }),
        counters,
        saved: savedContainers,
        apiSocket: config.socket,
      })
    : null;
  // Running containers are resynced here (pu-start each, with their saved index and ports),
  // so a restarted daemon protects them again, including those started while it was down.
  // Resolves once that first resync is applied, or at once when the engine does not answer.
  if (containers) await containers.start();
  // The first host-rule transaction of this run, in place: the previous run's rules were in
  // force until this commits. A failure is shown in status and retried.
  holdRules = false;
  await sync().catch(() => {});

  const api: ApiServer = await startApiServer(config.socket, {
    async createPu(req) {
      const pu = await registry.create({ name: req.name ?? `pid ${req.pid}`, kind: 'process', labels: req.labels });
      counters.pus_created!++;
      try {
        // Rules and worker tables in place before the process may send a packet; when they
        // could not be installed the caller (tessera run) must not start its command.
        await sync().catch((err: unknown) => {
          throw new TesseraError('TESSERA_ERR_RULES', `the PU's rules could not be installed, so it would run unprotected: ${errorMessage(err).split('\n')[0]}`, { cause: err });
        });
        await netcls.addPid(pu.id, req.pid);
      } catch (err) {
        await registry.remove(pu.id);
        throw err;
      }
      registry.setObserved(pu, [req.pid], []);
      log.info({ pu: pu.id, labels: pu.labels, pid: req.pid }, 'process PU created');
      return registry.info(pu);
    },
    async deletePu(id) {
      const ok = await registry.remove(id);
      if (ok) counters.pus_removed!++;
      return ok;
    },
    listPus: () => registry.all().map((p) => registry.info(p)),
    status: (): StatusResponse => {
      const stats = datapath.stats();
      const sum = (f: (s: (typeof stats)[number]) => number): number => stats.reduce((a, s) => a + f(s), 0);
      return {
        host: trust.hostId,
        trust: trust.mode,
        policy: current.name,
        queues: Array.from({ length: config.queues }, (_, i) => config.queueBase + i),
        failOpen: config.failOpen,
        rules: { ...rules },
        pus: registry.all().map((p) => registry.info(p)),
        counters: {
          ...counters,
          uptime_seconds: Math.round((Date.now() - started) / 1000),
          packets: sum((s) => s.queue.received),
          queue_enobufs: sum((s) => s.queue.enobufs),
          handler_errors: sum((s) => s.errors),
        },
      };
    },
    recentFlows: ({ deniedOnly, limit }) => flows.filter((f) => !deniedOnly || f.verdict !== 'accept').slice(-limit).map(entryOf),
    subscribeFlows(fn) {
      subscribers.add(fn);
      return () => subscribers.delete(fn);
    },
    metrics: () => metricsText(datapath.stats(), registry.all().length, counters),
    policy: () => ({ name: current.name, text: current.text ?? DEFAULT_POLICY_TEXT }),
    revoke: (dryRun) => revokeFlows(authorized, current.policy, runner, dryRun),
    ...(containers ? { enrollContainer: containers.enroll } : {}),
  });
  const stopWatching = config.policyFile ? watchPolicyFile(config.policyFile, () => void reloadPolicy('file changed')) : () => {};


  const timers = [
    setInterval(() => void discovery.tick(), Math.max(config.portScanMs, DISCOVERY_MIN_MS)),
    setInterval(() => {
      const suppressed = refusalBudget.drain();
      if (suppressed) {
        const total = Object.values(suppressed).reduce((a, b) => a + b, 0);
        flowLog.warn({ suppressed }, `${total} refusals not logged in the last second (over ${REFUSAL_LOG_LINES_PER_SECOND}/s per reason); tessera_reasons_total counts them all`);
      }
    }, 1000),
    setInterval(() => {
      syncInBackground(); // heals rules someone else removed; retries a failed transaction
      void containers?.reconcile();
    }, RECONCILE_EVERY_MS),
    setInterval(() => {
      registry.rotate().catch((err: unknown) => log.error({ err: errorMessage(err) }, 'token rotation failed'));
    }, ROTATE_CHECK_MS),
  ];

  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  let stopping: Promise<void> | null = null;
  async function stop(reason: string, opts: { removeRules?: boolean } = {}): Promise<void> {
    if (stopping) return stopping;
    const removeRules = opts.removeRules ?? config.removeRulesOnStop ?? false;
    stopping = (async () => {
      log.info({ reason, removeRules }, 'stopping');
      for (const t of timers) clearInterval(t);
      stopWatching();
      await api.close().catch(() => {});
      // Written while every PU is still known: the next start re-adopts them with their ports.
      saveState();
      // Keeping enforcement: no rule transaction from here on, whatever changes in memory.
      if (!removeRules) holdRules = true;
      // Container namespaces first: their rules go (when asked) before the queues that serve them.
      await containers?.stop({ removeRules }).catch((err: unknown) => log.error({ err: errorMessage(err) }, 'stopping container PUs failed'));
      await syncing?.catch(() => {});
      await datapath.stop().catch(() => {});
      if (removeRules) {
        const r = await reconciler.removeAll().catch((err: unknown) => {
          log.error({ err: errorMessage(err) }, 'removing rules failed: run tessera cleanup');
          return null;
        });
        log.info({ removed: r?.removed ?? 0 }, 'rules removed (--remove-rules-on-stop); PU cgroups kept for re-adoption; stopped');
      } else {
        log.info('stopped; rules left in place: PUs stay fail-closed (their handshakes are dropped) until the next start; tessera cleanup removes them');
      }
      await locks.release();
      resolveStopped();
    })();
    return stopping;
  }

  log.info(
    { host: trust.hostId, trust: trust.mode, policy: current.name, queues: config.queues, failOpen: config.failOpen, socket: config.socket, cgroupRoot: config.cgroupRoot, mode: config.datapathMode, docker: config.docker?.socket ?? false },
    'tessera daemon running',
  );
  if (config.datapathMode === 'passes') log.warn('--accept-all: benchmark mode, every handshake is accepted unchecked; PUs are NOT protected');
  return { stop, stopped, reloadPolicy };
}
