// The datapath pool: one worker thread per NFQUEUE number. The control plane pushes snapshots
// (PU table, ports, keys); workers report flow records and stats. A worker that dies is
// restarted after a short delay; until then its queue drops (fail-closed) or bypasses
// (--fail-open), as the kernel rule says. A restart that fails before its worker is ready
// (the queue still bound by the dying thread, say) is retried with backoff until it holds.

import { Worker } from 'node:worker_threads';
import type { EdgeTableJson } from '../learn/edges.js';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TesseraError } from '../errors.js';
import { DEFAULT_V2_OPTIONS, createRegisterBuffer, releaseHeldBy } from './handshake/v2/index.js';
import type { FlowRecord } from './handshake/handshake.js';
import { emptyDelta, flowFromTuple, type FromWorker, type NamespaceQueue, type PuSnapshot, type Snapshot, type SnapshotDelta, type ToWorker, type TrustUpdate, type WorkerConfig, type WorkerStats } from './messages.js';

export interface DatapathOptions extends Omit<WorkerConfig, 'queueNum' | 'register'> {
  /** First queue number. */
  queueBase: number;
  /** Number of queues/workers. */
  queues: number;
}

/** What the pool needs of a worker thread (node:worker_threads' Worker; a fake in tests). */
export interface DatapathWorker {
  on(event: 'message', fn: (m: FromWorker) => void): unknown;
  on(event: 'error', fn: (err: Error) => void): unknown;
  on(event: 'exit', fn: (code: number) => void): unknown;
  once(event: 'exit', fn: (code: number) => void): unknown;
  postMessage(m: ToWorker): void;
  terminate(): Promise<number>;
}

export interface DatapathDeps {
  /** Start one worker for `config` (default: the built queue.worker.js in a Worker thread). */
  createWorker?: (config: WorkerConfig) => DatapathWorker;
  /** Delay before the first restart of a dead worker, doubled per failed attempt (ms). */
  restartDelayMs?: number;
  /** Longest delay between restart attempts (ms). */
  restartDelayMaxMs?: number;
}

export interface DatapathEvents {
  flows: [FlowRecord[]];
  /** Learn mode: a worker's drained edge table (every ≥ 5 s, only when non-empty). */
  edges: [EdgeTableJson];
  /** Accept records the workers counted without sending them (setFollow(false)): how many more. */
  unsentAccepts: [number];
  /** A worker bound its queue (true: at start and after a restart) or died after binding it (false). */
  worker: [queueNum: number, bound: boolean];
  error: [Error];
}

export interface Datapath extends EventEmitter<DatapathEvents> {
  /** Resolves once every worker has bound its queue; rejects with the first worker's error. */
  start(): Promise<void>;
  /** Replace every worker's tables (at start). */
  update(snapshot: Snapshot): void;
  /**
   * Apply what changed (one PU added, say) in every worker: its cost follows the change, not
   * the number of PUs. The pool keeps the whole state, and a restarted worker gets it whole.
   */
  apply(delta: SnapshotDelta): void;
  /** Replace the policy in every worker (text already validated by the caller; null = default). */
  setPolicy(text: string | null): void;
  /**
   * Whether accept records cross to the main thread ('flows' events). Off: workers count them
   * ('unsentAccepts' events) and keep those of local PUs for acceptedFlows(); refusals always cross.
   */
  setFollow(on: boolean): void;
  /** The accept records the workers kept while they did not send them (for revoke); a worker that does not answer in 2 s is left out. */
  acceptedFlows(): Promise<FlowRecord[]>;
  stats(): WorkerStats[];
  /**
   * Open a queue in another network namespace (a container's), owned by the least loaded
   * worker. Resolves once it is bound; rejects with TESSERA_ERR_QUEUE. Re-opened by itself
   * when its worker is restarted.
   */
  openNamespace(ns: NamespaceQueue): Promise<void>;
  /** Close it (this releases the namespace). Resolves when done, or at once if unknown. */
  closeNamespace(key: string): Promise<void>;
  stop(): Promise<void>;
}

function workerUrl(): URL {
  // Built code runs queue.worker.js; tests that import the sources run the built worker too.
  const here = new URL('./queue.worker.js', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  const built = new URL(import.meta.url.replace('/src/datapath/', '/dist/src/datapath/').replace(/pool\.ts$/, 'queue.worker.js'));
  if (existsSync(fileURLToPath(built))) return built;
  throw new TesseraError('TESSERA_ERR_PREREQ', 'datapath worker not built: run npm run build');
}

export function createDatapath(options: DatapathOptions, deps: DatapathDeps = {}): Datapath {
  const createWorker = deps.createWorker ?? ((config: WorkerConfig): DatapathWorker => new Worker(workerUrl(), { workerData: config }));
  const restartDelay = deps.restartDelayMs ?? 200;
  const restartDelayMax = deps.restartDelayMaxMs ?? 10_000;
  const emitter = new EventEmitter<DatapathEvents>() as Datapath;
  const workers = new Map<number, DatapathWorker>();
  const stats = new Map<number, WorkerStats>();
  // The workers' state, kept whole for a restarted worker: PUs by index, and the port map.
  let pus = new Map<number, PuSnapshot>();
  let ports: Array<[number, number]> = [];
  // The fleet's trust bundle (revocations, label bindings, CAs): kept apart from the PU tables.
  const trustState: TrustUpdate = {};
  const keepTrust = (u: TrustUpdate): void => {
    if (u.revoked !== undefined) trustState.revoked = u.revoked;
    if (u.labelBindings !== undefined) trustState.labelBindings = u.labelBindings;
    if (u.cas !== undefined) trustState.cas = u.cas;
    if (u.hostKeys !== undefined) trustState.hostKeys = u.hostKeys;
    if (u.refuseNew !== undefined) trustState.refuseNew = u.refuseNew;
  };
  const snapshot = (): Snapshot => ({ pus: [...pus.values()], ports, ...trustState });
  const startedAt = options.startedAt ?? Date.now();
  let policyText = options.policyText;
  // Protocol v2's strike register, one for the host's workers: a proof replayed from another
  // address may land in another worker (--queue-balance hashes addresses), and only the
  // register refuses it (the proofs do not cover the tuple, for NAT). Outlives worker restarts.
  // registerEntries is each worker's share, as when every worker kept its own (docs/protocol.md, "Bound").
  const register = options.mode === 'handshake' ? createRegisterBuffer(Math.min(1 << 24, (options.v2?.registerEntries ?? DEFAULT_V2_OPTIONS.registerEntries) * Math.max(1, options.queues))) : undefined;
  let follow = true;
  /** Per worker: its last cumulative unsentAccepts (a restarted worker counts from 0). */
  const unsentSeen = new Map<number, number>();
  let requestId = 0;
  const acceptedWaits = new Map<number, { left: Set<number>; records: FlowRecord[]; done(): void }>();
  let stopping = false;
  /** Namespace queues: key -> its spec and the worker (host queue number) owning it. */
  const namespaces = new Map<string, { ns: NamespaceQueue; owner: number }>();
  const pending = new Map<string, { resolve(): void; reject(e: Error): void }>();

  function settle(key: string, err?: Error): void {
    const p = pending.get(key);
    if (!p) return;
    pending.delete(key);
    if (err) p.reject(err);
    else p.resolve();
  }

  function spawn(queueNum: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const config: WorkerConfig = { ...options, startedAt, policyText, queueNum, ...(register ? { register } : {}) };
      const w = createWorker(config);
      workers.set(queueNum, w);
      let ready = false;
      w.on('message', (m: FromWorker) => {
        switch (m.type) {
          case 'ready':
            ready = true;
            unsentSeen.set(queueNum, 0);
            w.postMessage({ type: 'snapshot', snapshot: snapshot() });
            if (!follow) w.postMessage({ type: 'follow', on: false });
            // A restarted worker takes back the namespace queues it owned.
            for (const e of namespaces.values()) if (e.owner === queueNum) w.postMessage({ type: 'ns-open', ns: e.ns });
            emitter.emit('worker', queueNum, true);
            resolve();
            break;
          case 'flows':
            emitter.emit('flows', m.records.map(flowFromTuple));
            break;
          case 'edges':
            emitter.emit('edges', m.table);
            break;
          case 'stats': {
            stats.set(queueNum, m.stats);
            const n = m.stats.unsentAccepts ?? 0;
            const more = n - (unsentSeen.get(queueNum) ?? 0);
            unsentSeen.set(queueNum, n);
            if (more > 0) emitter.emit('unsentAccepts', more);
            break;
          }
          case 'accepted': {
            const wait = acceptedWaits.get(m.id);
            if (!wait) break;
            for (const t of m.records) wait.records.push(flowFromTuple(t));
            wait.left.delete(queueNum);
            if (wait.left.size === 0) wait.done();
            break;
          }
          case 'ns-opened':
          case 'ns-closed':
            settle(m.key);
            break;
          case 'ns-error': {
            const err = new TesseraError('TESSERA_ERR_QUEUE', `queue in namespace of ${m.key}: ${m.message}`);
            if (pending.has(m.key)) settle(m.key, err);
            else emitter.emit('error', err);
            break;
          }
          case 'policy-error':
            emitter.emit('error', new TesseraError('TESSERA_ERR_POLICY', `queue ${queueNum} refused the policy: ${m.message}`));
            break;
          case 'fatal': {
            const err = new TesseraError('TESSERA_ERR_QUEUE', `queue ${queueNum}: ${m.message}`);
            if (!ready) reject(err);
            else emitter.emit('error', err);
            break;
          }
        }
      });
      w.on('error', (err) => {
        if (!ready) reject(new TesseraError('TESSERA_ERR_QUEUE', `queue ${queueNum} worker failed: ${err.message}`, { cause: err }));
        else emitter.emit('error', err);
      });
      w.on('exit', (code) => {
        if (workers.get(queueNum) === w) workers.delete(queueNum);
        // A worker ended inside a register critical section would leave its stripe locked.
        if (register) releaseHeldBy(register, queueNum + 1);
        // Died before ready without saying why: the start (or restart) fails; a settled promise ignores it.
        if (!ready) reject(new TesseraError('TESSERA_ERR_QUEUE', `queue ${queueNum} worker exited (${code}) before it was ready`));
        if (stopping || !ready) return;
        emitter.emit('worker', queueNum, false);
        emitter.emit('error', new TesseraError('TESSERA_ERR_QUEUE', `queue ${queueNum} worker exited (${code}); restarting`));
        restart(queueNum, 0);
      });
    });
  }

  /**
   * Respawn a dead worker after a delay; a respawn that fails before ready (its error is
   * reported) is tried again with the delay doubled, up to restartDelayMax, until stop().
   */
  function restart(queueNum: number, attempt: number): void {
    const delay = Math.min(restartDelayMax, restartDelay * 2 ** Math.min(attempt, 20));
    setTimeout(() => {
      if (stopping) return;
      spawn(queueNum).catch((e: Error) => {
        emitter.emit('error', e);
        if (!stopping) restart(queueNum, attempt + 1);
      });
    }, delay).unref();
  }

  emitter.start = async () => {
    const all = [];
    for (let i = 0; i < options.queues; i++) all.push(spawn(options.queueBase + i));
    try {
      await Promise.all(all);
    } catch (err) {
      await emitter.stop();
      throw err;
    }
  };
  emitter.update = (s) => {
    pus = new Map(s.pus.map((p) => [p.index, p]));
    ports = s.ports;
    keepTrust(s);
    const whole = snapshot();
    for (const w of workers.values()) w.postMessage({ type: 'snapshot', snapshot: whole });
  };
  emitter.apply = (d) => {
    if (emptyDelta(d)) return;
    for (const i of d.removed) pus.delete(i);
    for (const p of d.set) pus.set(p.index, p);
    if (d.ports) ports = d.ports;
    keepTrust(d);
    for (const w of workers.values()) w.postMessage({ type: 'delta', delta: d });
  };
  emitter.setPolicy = (text) => {
    policyText = text;
    for (const w of workers.values()) w.postMessage({ type: 'policy', text });
  };
  emitter.setFollow = (on) => {
    if (on === follow) return;
    follow = on;
    for (const w of workers.values()) w.postMessage({ type: 'follow', on });
  };
  emitter.acceptedFlows = () =>
    new Promise<FlowRecord[]>((resolve) => {
      const id = ++requestId;
      const records: FlowRecord[] = [];
      const done = (): void => {
        clearTimeout(t);
        acceptedWaits.delete(id);
        resolve(records);
      };
      const t = setTimeout(done, 2000);
      acceptedWaits.set(id, { left: new Set(workers.keys()), records, done });
      if (workers.size === 0) return done();
      for (const w of workers.values()) w.postMessage({ type: 'accepted', id });
    });
  emitter.stats = () => [...stats.values()];
  emitter.openNamespace = (ns) => {
    const load = new Map<number, number>([...workers.keys()].map((q) => [q, 0]));
    for (const e of namespaces.values()) load.set(e.owner, (load.get(e.owner) ?? 0) + 1);
    const owner = namespaces.get(ns.key)?.owner ?? [...load.entries()].sort((a, b) => a[1] - b[1] || a[0] - b[0])[0]?.[0];
    const w = owner === undefined ? undefined : workers.get(owner);
    if (owner === undefined || !w) return Promise.reject(new TesseraError('TESSERA_ERR_QUEUE', `no datapath worker to own the queue of ${ns.key}`));
    namespaces.set(ns.key, { ns, owner });
    settle(ns.key, new TesseraError('TESSERA_ERR_QUEUE', `queue of ${ns.key} replaced before it was bound`));
    return new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => settle(ns.key, new TesseraError('TESSERA_ERR_QUEUE', `queue of ${ns.key}: worker did not answer in 5 s`)), 5000);
      pending.set(ns.key, {
        resolve: () => (clearTimeout(t), resolve()),
        reject: (e) => {
          clearTimeout(t);
          if (namespaces.get(ns.key)?.ns === ns) namespaces.delete(ns.key);
          reject(e);
        },
      });
      w.postMessage({ type: 'ns-open', ns });
    });
  };
  emitter.closeNamespace = (key) => {
    const e = namespaces.get(key);
    if (!e) return Promise.resolve();
    namespaces.delete(key);
    const w = workers.get(e.owner);
    if (!w) return Promise.resolve();
    settle(key, new TesseraError('TESSERA_ERR_QUEUE', `queue of ${key} closed before it was bound`));
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => settle(key), 5000);
      pending.set(key, { resolve: () => (clearTimeout(t), resolve()), reject: () => (clearTimeout(t), resolve()) });
      w.postMessage({ type: 'ns-close', key });
    });
  };
  emitter.stop = async () => {
    stopping = true;
    await Promise.all(
      [...workers.values()].map(
        (w) =>
          new Promise<void>((resolve) => {
            const t = setTimeout(() => void w.terminate().then(() => resolve()), 2000);
            w.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
            w.postMessage({ type: 'stop' });
          }),
      ),
    );
  };
  return emitter;
}
