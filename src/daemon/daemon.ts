// `tessera daemon`: the composition root. Wires config, trust, cgroups, rules, the datapath
// pool, the PU registry and the local API, and owns the lifecycle: clean start (stale rules
// removed), reconcile loops, signals, clean exit (our rules removed).

import { existsSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { TesseraError, errorMessage } from '../errors.js';
import { buildRuleset, createCommandRunner, createNetCls, createReconciler, type NetCls, type Reconciler } from '../rules/index.js';
import { createDatapath, HANDLING_BUCKETS_US, type Datapath } from '../datapath/index.js';
import type { FlowRecord } from '../datapath/index.js';
import { startApiServer, createApiClient, type ApiServer, type FlowEntry, type StatusResponse } from '../api/index.js';
import { createListenerSource, listeningPorts, type ListenerDump } from '../monitors/process/index.js';
import { loadNative } from '../datapath/native.js';
import { validateConfig, type DaemonConfig } from './config.js';
import { createLogger, createRefusalLogBudget, rateLimited } from './log.js';
import { loadHostSecret, loadTrust } from './trust.js';
import { PuRegistry } from './pus.js';
import { builtinPolicy, loadPolicyFile, watchPolicyFile, DEFAULT_POLICY_TEXT, type LoadedPolicy } from './policy-source.js';
import { AuthorizedFlows, revokeFlows } from './revoke.js';
import { createContainerPus, type ContainerPus } from './containers.js';

const FLOW_RING = 2000;
const RECONCILE_EVERY_MS = 10_000;
/** Refusal log lines per second per reason code; the rest are counted in one summary line. */
const REFUSAL_LOG_LINES_PER_SECOND = 50;
const ROTATE_CHECK_MS = 15_000;

function nativeListenerDump(): ListenerDump | null {
  try {
    const native = loadNative();
    return typeof native.listeningSockets === 'function' ? native.listeningSockets : null;
  } catch {
    return null;
  }
}

export interface RunningDaemon {
  stop(reason: string): Promise<void>;
  /** Re-read the policy file; a file that does not compile is refused and the running policy stays. */
  reloadPolicy(why: string): Promise<boolean>;
  readonly stopped: Promise<void>;
}

interface SavedPu {
  id: string;
  name: string;
  labels: string[];
  index: number;
}

export async function startDaemon(config: DaemonConfig, log: Logger = createLogger(config.logLevel)): Promise<RunningDaemon> {
  validateConfig(config);
  const started = Date.now();
  // Refuse to start with a policy file that does not compile: the error names line and column.
  let current: LoadedPolicy = config.policyFile ? loadPolicyFile(config.policyFile) : builtinPolicy();
  const authorized = new AuthorizedFlows();

  // Refuse to run twice against one socket: a second daemon would steal the PUs' rules.
  if (existsSync(config.socket)) {
    const alive = await createApiClient(config.socket)
      .status()
      .then(() => true)
      .catch(() => false);
    if (alive) throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', `another tessera daemon answers on ${config.socket}: stop it first or use --socket`);
  }

  const trust = loadTrust(config);
  const hostSecret = loadHostSecret(config.stateDir);
  const runner = createCommandRunner();
  const rulesLog = log.child({ component: 'rules' });
  const reconciler: Reconciler = createReconciler({
    runner,
    log: { debug: (o, m) => rulesLog.debug(o, m), info: (o, m) => rulesLog.info(o, m), warn: (o, m) => rulesLog.warn(o, m) },
  });
  const netcls: NetCls = createNetCls({ root: config.cgroupRoot, runner });

  // Stale state of a daemon that crashed: its chains go; its PUs are re-adopted below.
  const stale = await reconciler.removeAll();
  if (stale.removed > 0) log.warn({ removed: stale.removed }, 'removed stale TESSERA rules left by an earlier daemon');
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
    onChange: () => void sync(),
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
   * Push the current PUs to the workers and the kernel. Coalesced and one at a time; the
   * returned promise resolves only once every change made before the call is applied, so
   * a new PU's rules exist before its first process may send a packet.
   */
  let syncing: Promise<void> | null = null;
  function sync(): Promise<void> {
    changePending = true;
    if (!syncing) {
      syncing = (async () => {
        while (changePending) {
          changePending = false;
          datapath.update(registry.snapshot());
          // Containers with a namespace of their own have their rules there, not here.
          const pus = registry.all().filter((p) => !p.netns);
          // Ports judge by number only the PUs the kernel's socket lookup cannot name; every
          // PU's ports guard against packets conntrack does not track (rules/ruleset.ts).
          const serverPorts = [...new Set(pus.filter((p) => !p.cgroup2).flatMap((p) => p.ports))].sort((a, b) => a - b);
          const guardPorts = [...new Set(pus.flatMap((p) => p.ports))].sort((a, b) => a - b);
          const applying = pus.map((p) => [p, p.ports] as const);
          try {
            const r = await reconciler.apply(
              buildRuleset({
                queue: { num: config.queueBase, count: config.queues, bypass: config.failOpen },
                pus: pus.map((p) => ({ index: p.index, classid: p.classid, ...(p.cgroup2 ? { cgroup2: p.cgroup2 } : {}) })),
                serverPorts,
                guardPorts,
              }),
            );
            if (r.changed) counters.rule_transactions!++;
            for (const [p, ports] of applying) p.protectedPorts = ports;
          } catch (err) {
            log.error({ err: errorMessage(err) }, 'applying rules failed; will retry');
          }
        }
        saveState();
      })().finally(() => {
        syncing = null;
      });
    }
    return syncing;
  }

  const statePath = join(config.stateDir, 'pus.json');
  function saveState(): void {
    const saved: SavedPu[] = registry.all().filter((p) => p.kind === 'process').map((p) => ({ id: p.id, name: p.name, labels: p.labels.filter((l) => !l.startsWith('@')), index: p.index }));
    try {
      writeFileSync(statePath + '.tmp', JSON.stringify(saved), { mode: 0o600 });
      renameSync(statePath + '.tmp', statePath);
    } catch (err) {
      warn('state', { err: errorMessage(err) }, 'cannot save PU state');
    }
  }

  /** Re-adopt process PUs of an earlier run whose cgroups still hold processes. */
  async function readopt(): Promise<void> {
    let saved: SavedPu[] = [];
    try {
      if (existsSync(statePath)) saved = JSON.parse(readFileSync(statePath, 'utf8')) as SavedPu[];
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'ignoring unreadable PU state');
    }
    const known = new Set<string>();
    for (const s of saved) {
      const pids = await netcls.pids(s.id).catch(() => []);
      if (pids.length === 0) continue;
      try {
        const pu = await registry.create({ id: s.id, name: s.name, kind: 'process', labels: s.labels, index: s.index });
        registry.setObserved(pu, pids, []);
        known.add(s.id);
        log.info({ pu: s.id, pids }, 're-adopted process PU from an earlier run');
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
  }

  // The port scan's listening sockets: the addon's sock_diag dump (an addon built before it
  // existed has no such export), else /proc/net/tcp{,6}.
  const scanListeners = createListenerSource(nativeListenerDump(), (err) =>
    log.warn({ err: errorMessage(err) }, 'sock_diag refused the listening-socket dump; reading /proc/net/tcp{,6} instead (slower with many sockets)'),
  );

  /** Every portScanMs: pids and listening ports of each PU; empty process PUs end. */
  let scanning = false;
  async function scan(): Promise<void> {
    if (scanning) return;
    scanning = true;
    try {
      const sockets = scanListeners();
      for (const pu of registry.all()) {
        if (pu.kind === 'container') {
          // The monitor ends container PUs. A namespace PU's ports are not this host's.
          const pids = containers ? await containers.pidsOf(pu) : [];
          registry.setObserved(pu, pids, pu.netns ? [] : listeningPorts(pids, sockets));
          continue;
        }
        const pids = await netcls.pids(pu.id).catch(() => [] as number[]);
        if (pids.length === 0 && pu.kind === 'process' && Date.now() - pu.createdAt.getTime() > 2000) {
          await registry.remove(pu.id);
          counters.pus_removed!++;
          log.info({ pu: pu.id }, 'PU ended: its last process exited');
          continue;
        }
        registry.setObserved(pu, pids, listeningPorts(pids, sockets));
      }
    } catch (err) {
      warn('scan', { err: errorMessage(err) }, 'PU scan failed');
    } finally {
      scanning = false;
    }
  }

  await datapath.start();
  await readopt();
  await sync();

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
        apiSocket: config.socket,
      })
    : null;
  // Running containers are resynced here (pu-start each), so a restarted daemon protects
  // them again, including those started while it was down.
  if (containers) await containers.start();

  const api: ApiServer = await startApiServer(config.socket, {
    async createPu(req) {
      const pu = await registry.create({ name: req.name ?? `pid ${req.pid}`, kind: 'process', labels: req.labels });
      counters.pus_created!++;
      await sync(); // rules and worker tables in place before the process may send a packet
      try {
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
    metrics: () => metricsText(),
    policy: () => ({ name: current.name, text: current.text ?? DEFAULT_POLICY_TEXT }),
    revoke: (dryRun) => revokeFlows(authorized, current.policy, runner, dryRun),
    ...(containers ? { enrollContainer: containers.enroll } : {}),
  });
  const stopWatching = config.policyFile ? watchPolicyFile(config.policyFile, () => void reloadPolicy('file changed')) : () => {};

  function metricsText(): string {
    const lines: string[] = [];
    const stats = datapath.stats();
    lines.push('# HELP tessera_packets_total Packets read from NFQUEUE per queue.', '# TYPE tessera_packets_total counter');
    for (const s of stats) lines.push(`tessera_packets_total{queue="${s.queueNum}"} ${s.queue.received}`);
    lines.push('# HELP tessera_queue_enobufs_total Times the kernel dropped queued packets because the socket buffer was full.', '# TYPE tessera_queue_enobufs_total counter');
    for (const s of stats) lines.push(`tessera_queue_enobufs_total{queue="${s.queueNum}"} ${s.queue.enobufs}`);
    lines.push('# HELP tessera_verdicts_total Handshake packets per outcome and reason.', '# TYPE tessera_verdicts_total counter');
    for (const s of stats) {
      if (!s.handshake) continue;
      lines.push(`tessera_verdicts_total{queue="${s.queueNum}",verdict="accept"} ${s.handshake.accepted}`);
      lines.push(`tessera_verdicts_total{queue="${s.queueNum}",verdict="reject"} ${s.handshake.rejected}`);
      lines.push(`tessera_verdicts_total{queue="${s.queueNum}",verdict="drop"} ${s.handshake.dropped}`);
      for (const [reason, n] of Object.entries(s.handshake.byReason)) lines.push(`tessera_reasons_total{queue="${s.queueNum}",reason="${reason}"} ${n}`);
    }
    lines.push('# HELP tessera_cache_hits_total Token verifications and X25519 agreements served from cache.', '# TYPE tessera_cache_hits_total counter');
    lines.push('# HELP tessera_cache_misses_total Token verifications and X25519 agreements computed.', '# TYPE tessera_cache_misses_total counter');
    for (const s of stats) {
      if (!s.caches) continue;
      lines.push(`tessera_cache_hits_total{queue="${s.queueNum}",cache="token"} ${s.caches.tokenHits}`, `tessera_cache_misses_total{queue="${s.queueNum}",cache="token"} ${s.caches.tokenMisses}`);
      lines.push(`tessera_cache_hits_total{queue="${s.queueNum}",cache="x25519"} ${s.caches.x25519Hits}`, `tessera_cache_misses_total{queue="${s.queueNum}",cache="x25519"} ${s.caches.x25519Misses}`);
    }
    lines.push('# HELP tessera_packet_handling_seconds Time to decide one queued packet in a worker.', '# TYPE tessera_packet_handling_seconds histogram');
    for (const s of stats) {
      let cumulative = 0;
      HANDLING_BUCKETS_US.forEach((le, i) => {
        cumulative += s.handling.buckets[i] ?? 0;
        lines.push(`tessera_packet_handling_seconds_bucket{queue="${s.queueNum}",le="${le / 1e6}"} ${cumulative}`);
      });
      lines.push(`tessera_packet_handling_seconds_bucket{queue="${s.queueNum}",le="+Inf"} ${s.handling.count}`);
      lines.push(`tessera_packet_handling_seconds_sum{queue="${s.queueNum}"} ${s.handling.sumUs / 1e6}`, `tessera_packet_handling_seconds_count{queue="${s.queueNum}"} ${s.handling.count}`);
    }
    lines.push('# HELP tessera_handshake_state Per-flow handshake entries held by each worker (bounded).', '# TYPE tessera_handshake_state gauge');
    for (const s of stats) {
      if (!s.handshake) continue;
      lines.push(`tessera_handshake_state{queue="${s.queueNum}",map="server"} ${s.handshake.serverState}`, `tessera_handshake_state{queue="${s.queueNum}",map="client"} ${s.handshake.clientState}`);
    }
    lines.push('# HELP tessera_pus Protected processing units.', '# TYPE tessera_pus gauge', `tessera_pus ${registry.all().length}`);
    for (const [k, v] of Object.entries(counters)) lines.push(`tessera_${k} ${v}`);
    return lines.join('\n') + '\n';
  }

  const timers = [
    setInterval(() => void scan(), config.portScanMs),
    setInterval(() => {
      const suppressed = refusalBudget.drain();
      if (suppressed) {
        const total = Object.values(suppressed).reduce((a, b) => a + b, 0);
        flowLog.warn({ suppressed }, `${total} refusals not logged in the last second (over ${REFUSAL_LOG_LINES_PER_SECOND}/s per reason); tessera_reasons_total counts them all`);
      }
    }, 1000),
    setInterval(() => {
      void sync(); // heals rules someone else removed
      void containers?.reconcile();
    }, RECONCILE_EVERY_MS),
    setInterval(() => {
      registry.rotate().catch((err: unknown) => log.error({ err: errorMessage(err) }, 'token rotation failed'));
    }, ROTATE_CHECK_MS),
  ];

  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  let stopping: Promise<void> | null = null;
  async function stop(reason: string): Promise<void> {
    if (stopping) return stopping;
    stopping = (async () => {
      log.info({ reason }, 'stopping');
      for (const t of timers) clearInterval(t);
      stopWatching();
      await api.close().catch(() => {});
      // Container namespaces first: their rules go before the queues that serve them.
      await containers?.stop().catch((err: unknown) => log.error({ err: errorMessage(err) }, 'stopping container PUs failed'));
      await syncing;
      await datapath.stop().catch(() => {});
      saveState();
      const r = await reconciler.removeAll().catch((err: unknown) => {
        log.error({ err: errorMessage(err) }, 'removing rules failed: run tessera cleanup');
        return null;
      });
      log.info({ removed: r?.removed ?? 0 }, 'rules removed; stopped');
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
