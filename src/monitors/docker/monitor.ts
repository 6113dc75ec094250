// Follows the Docker engine and reports containers as PU lifecycle events. It never decides or
// enforces anything: the daemon listens to 'pu-start' / 'pu-update' / 'pu-stop'.
//
// Correctness rests on two choices:
// - Every event about a container leads to a fresh inspect, and the PU is derived from that
//   answer, never from the event itself. Events can be duplicated (the engine sends some
//   network disconnects twice) or overtaken by a restart; re-reading the state makes each
//   step idempotent, so resync and events can overlap freely. The exceptions are 'die' and
//   'destroy': they say by themselves that PID 1 is gone, and a dying engine may no longer
//   answer an inspect.
// - Work for one container runs on its own promise chain, so its events are handled in the
//   order the engine sent them, while different containers proceed concurrently.
//
// The event stream is opened before the resync lists containers: anything that changes after
// the list was taken also arrives as an event, so nothing falls between the two.

import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import Docker from 'dockerode';
import { TesseraError, errorMessage } from '../../errors.js';
import { puFromInspect, type ExtractedContainer, type InspectLike } from './extract.js';

/** The part of the Engine API the monitor uses; dockerode in production, a fake in unit tests. */
export interface DockerEngine {
  /** IDs of the running (and paused) containers. */
  listRunning(): Promise<string[]>;
  /** The inspect answer, or null when the container no longer exists. */
  inspect(id: string): Promise<InspectLike | null>;
  /** A stream of newline-separated JSON event messages; ends or errors when the engine goes away. */
  events(signal: AbortSignal): Promise<NodeJS.ReadableStream>;
}

/** The slice of a pino logger the monitor writes to. */
export interface MonitorLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface DockerMonitorOptions {
  /** Engine socket. Default /var/run/docker.sock. */
  socketPath?: string;
  log?: MonitorLogger;
  /** Replaces the dockerode engine (unit tests). */
  engine?: DockerEngine;
  /** Reconnect delays: first, then doubled up to max. Default 250 ms .. 5000 ms. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Timeout of one inspect or list request. Default 10000 ms. */
  requestTimeoutMs?: number;
  /** Where /PID/cgroup is read for a container's net_cls cgroup. Default /proc. */
  procRoot?: string;
}

/** A container as a PU candidate: the extracted inspect answer plus where its net_cls cgroup is. */
export interface DockerPu extends ExtractedContainer {
  /**
   * The container's own net_cls cgroup path (e.g. "/docker/<id>", relative to the net_cls
   * mount), read from /proc/PID/cgroup. Every process the runtime starts in the container,
   * `docker exec` included, is placed there, so a classid written there covers them all.
   */
  netClsCgroup?: string;
}

export type DockerPuStopReason = 'stopped' | 'removed' | 'restarted' | 'engine-resync';

export interface DockerPuStop {
  id: string;
  name: string;
  reason: DockerPuStopReason;
}

export interface DockerMonitorEvents {
  /** A running container appeared (resync, start, or restart with a new PID 1). */
  'pu-start': [pu: DockerPu];
  /** Labels, addresses, pause state, name or posture of a known container changed; same PID 1. */
  'pu-update': [pu: DockerPu, previous: DockerPu];
  /** A known container stopped, was removed or restarted (then a 'pu-start' follows). */
  'pu-stop': [stop: DockerPuStop];
  /** Connected (first start or after a reconnect) and resynced. */
  connected: [];
  /** The engine went away; the monitor reconnects by itself. */
  disconnected: [error: TesseraError];
}

export interface DockerMonitor extends EventEmitter<DockerMonitorEvents> {
  /**
   * Connects, opens the event stream and reports every running container ('pu-start').
   * Rejects with TESSERA_ERR_DOCKER when the engine cannot be reached; the monitor is then
   * stopped and start() may be called again.
   */
  start(): Promise<void>;
  /** Closes the event stream and waits for work in progress. Idempotent. */
  stop(): Promise<void>;
  /** The running containers known now. */
  containers(): DockerPu[];
  /** True while the event stream is open. */
  readonly connected: boolean;
  /**
   * What the engine's `create` event said of a container not started yet (labels, image,
   * name), waiting up to `timeoutMs` for that event. Never asks the engine: during the
   * runtime's create the engine holds the container and an inspect would deadlock.
   */
  created(id: string, timeoutMs: number): Promise<CreatedContainer | undefined>;
}

/** A container as its `create` event described it: the only identity known before it runs. */
export interface CreatedContainer {
  id: string;
  name: string;
  image: string;
  /** Config.Labels (image labels merged with `docker run -l`), except keys "image" and "name". */
  labels: Record<string, string>;
}

/** Created-but-not-started containers remembered at most (oldest forgotten first). */
const CREATED_MAX = 512;

interface EngineEvent {
  Type?: string;
  Action?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
}

const CONTAINER_ACTIONS = ['create', 'start', 'die', 'destroy', 'pause', 'unpause', 'rename', 'update'];
const NETWORK_ACTIONS = ['connect', 'disconnect'];

const NOOP_LOG: MonitorLogger = { debug() {}, info() {}, warn() {}, error() {} };

function dockerError(socketPath: string, what: string, err: unknown): TesseraError {
  if (err instanceof TesseraError) return err;
  return new TesseraError('TESSERA_ERR_DOCKER', `Docker engine at ${socketPath}: ${what}: ${errorMessage(err)}`, { cause: err });
}

/** The dockerode-backed engine. */
function createDockerodeEngine(socketPath: string, timeoutMs: number): DockerEngine {
  const docker = new Docker({ socketPath });
  return {
    async listRunning() {
      const list = await docker.listContainers({ abortSignal: AbortSignal.timeout(timeoutMs) } as Docker.ContainerListOptions);
      return list.map((c) => c.Id);
    },
    async inspect(id) {
      try {
        return (await docker.getContainer(id).inspect({ abortSignal: AbortSignal.timeout(timeoutMs) } as Docker.ContainerInspectOptions)) as InspectLike;
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode === 404) return null;
        throw err;
      }
    },
    async events(signal) {
      return docker.getEvents({
        abortSignal: signal,
        filters: { type: ['container', 'network'], event: [...CONTAINER_ACTIONS, ...NETWORK_ACTIONS] },
      } as Docker.GetEventsOptions);
    },
  };
}

/** net_cls path of a process from /proc/PID/cgroup (cgroup v1), or undefined. */
export function netClsCgroupOf(procRoot: string, pid: number): string | undefined {
  if (pid <= 0) return undefined;
  let text: string;
  try {
    text = readFileSync(`${procRoot}/${pid}/cgroup`, 'utf8');
  } catch {
    return undefined; // exited meanwhile, or no procfs here
  }
  for (const line of text.split('\n')) {
    const [, controllers, path] = line.split(':', 3) as [string, string | undefined, string | undefined];
    if (controllers !== undefined && path !== undefined && controllers.split(',').includes('net_cls')) {
      // The rest of the line is the path even if it contained ':'.
      return line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1);
    }
  }
  return undefined;
}

/** What makes two snapshots of one running container differ for the daemon. */
function sameState(a: DockerPu, b: DockerPu): boolean {
  return (
    a.pid === b.pid &&
    a.paused === b.paused &&
    a.name === b.name &&
    a.ip === b.ip &&
    a.netnsPath === b.netnsPath &&
    a.netClsCgroup === b.netClsCgroup &&
    JSON.stringify([a.labels, a.systemLabels, a.addresses, a.posture]) === JSON.stringify([b.labels, b.systemLabels, b.addresses, b.posture])
  );
}

class DockerMonitorImpl extends EventEmitter<DockerMonitorEvents> implements DockerMonitor {
  readonly #socketPath: string;
  readonly #log: MonitorLogger;
  readonly #engine: DockerEngine;
  readonly #minMs: number;
  readonly #maxMs: number;
  readonly #procRoot: string;
  readonly #known = new Map<string, DockerPu>();
  readonly #chains = new Map<string, Promise<void>>();
  readonly #created = new Map<string, CreatedContainer>();
  readonly #createdWaiters = new Map<string, Array<(c: CreatedContainer) => void>>();
  #state: 'stopped' | 'starting' | 'running' | 'stopping' = 'stopped';
  #abort: AbortController | null = null;
  #stream: NodeJS.ReadableStream | null = null;
  #connected = false;
  #retryTimer: NodeJS.Timeout | null = null;
  #retryDelay: number;
  #reconnecting: Promise<void> | null = null;

  constructor(o: DockerMonitorOptions) {
    super();
    this.#socketPath = o.socketPath ?? '/var/run/docker.sock';
    this.#log = o.log ?? NOOP_LOG;
    const timeoutMs = o.requestTimeoutMs ?? 10_000;
    this.#engine = o.engine ?? createDockerodeEngine(this.#socketPath, timeoutMs);
    this.#minMs = o.reconnectMinMs ?? 250;
    this.#maxMs = o.reconnectMaxMs ?? 5_000;
    this.#retryDelay = this.#minMs;
    this.#procRoot = o.procRoot ?? '/proc';
  }

  get connected(): boolean {
    return this.#connected;
  }

  containers(): DockerPu[] {
    return [...this.#known.values()];
  }

  async start(): Promise<void> {
    if (this.#state !== 'stopped') return;
    this.#state = 'starting';
    try {
      await this.#connect();
    } catch (err) {
      this.#closeStream();
      this.#state = 'stopped';
      throw dockerError(this.#socketPath, 'cannot follow containers', err);
    }
    this.#state = 'running';
    this.emit('connected');
  }

  async stop(): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'stopping') return;
    this.#state = 'stopping';
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#closeStream();
    await this.#reconnecting?.catch(() => {});
    await Promise.allSettled([...this.#chains.values()]);
    this.#state = 'stopped';
  }

  /** Opens the event stream, then resyncs. Throws on any failure (the caller retries). */
  async #connect(): Promise<void> {
    const abort = new AbortController();
    this.#abort = abort;
    const stream = await this.#engine.events(abort.signal);
    if (abort.signal.aborted) {
      (stream as unknown as { destroy?: () => void }).destroy?.();
      throw new Error('stopped while connecting');
    }
    this.#stream = stream;
    this.#follow(stream, abort);
    this.#connected = true;
    await this.#resync();
  }

  #closeStream(): void {
    this.#connected = false;
    this.#abort?.abort();
    this.#abort = null;
    const s = this.#stream as unknown as { destroy?: () => void } | null;
    this.#stream = null;
    s?.destroy?.();
  }

  #follow(stream: NodeJS.ReadableStream, abort: AbortController): void {
    let buf = '';
    let ended = false;
    const onEnd = (err?: unknown) => {
      if (ended) return;
      ended = true;
      if (abort.signal.aborted || this.#stream !== stream) return; // we closed it
      this.#lost(err ?? new Error('event stream ended'));
    };
    stream.on('data', (chunk: Buffer | string) => {
      buf += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) this.#onLine(line);
      }
    });
    stream.on('end', () => onEnd());
    stream.on('close', () => onEnd());
    stream.on('error', (err: unknown) => onEnd(err));
  }

  #onLine(line: string): void {
    let ev: EngineEvent;
    try {
      ev = JSON.parse(line) as EngineEvent;
    } catch {
      this.#log.warn({ line: line.slice(0, 200) }, 'docker monitor: unparsable event line');
      return;
    }
    let id: string | undefined;
    if (ev.Type === 'container' && ev.Action && CONTAINER_ACTIONS.includes(ev.Action)) id = ev.Actor?.ID;
    else if (ev.Type === 'network' && ev.Action && NETWORK_ACTIONS.includes(ev.Action)) id = ev.Actor?.Attributes?.container;
    if (!id) return;
    this.#log.debug({ container: id.slice(0, 12), type: ev.Type, action: ev.Action }, 'docker event');
    if (ev.Type === 'container' && ev.Action === 'create') {
      this.#noteCreated(id, ev.Actor?.Attributes ?? {});
      return;
    }
    if (ev.Type === 'container' && (ev.Action === 'die' || ev.Action === 'destroy')) {
      // PID 1 is gone: no need to ask. This matters when the engine itself is shutting down
      // and kills every container while its API no longer answers.
      const reason: DockerPuStopReason = ev.Action === 'destroy' ? 'removed' : 'stopped';
      this.#enqueue(id, async () => this.#forget(id, reason));
      return;
    }
    this.#enqueue(id, () => this.#refresh(id, 'stopped'));
  }

  #noteCreated(id: string, attrs: Record<string, string>): void {
    // The engine puts Config.Labels in the event's attributes, then overwrites "image" and
    // "name" with the image and the container's name: a user label with either key is lost
    // here (the start's inspect brings it back, docs/docker.md).
    const { image = '', name = '', ...labels } = attrs;
    const c: CreatedContainer = { id, name, image, labels };
    this.#created.delete(id);
    this.#created.set(id, c);
    while (this.#created.size > CREATED_MAX) this.#created.delete(this.#created.keys().next().value!);
    const waiters = this.#createdWaiters.get(id);
    this.#createdWaiters.delete(id);
    for (const w of waiters ?? []) w(c);
  }

  created(id: string, timeoutMs: number): Promise<CreatedContainer | undefined> {
    const known = this.#created.get(id);
    if (known) return Promise.resolve(known);
    return new Promise((resolve) => {
      const list = this.#createdWaiters.get(id) ?? [];
      const timer = setTimeout(() => {
        const l = this.#createdWaiters.get(id)?.filter((w) => w !== done) ?? [];
        if (l.length) this.#createdWaiters.set(id, l);
        else this.#createdWaiters.delete(id);
        resolve(undefined);
      }, timeoutMs);
      const done = (c: CreatedContainer): void => {
        clearTimeout(timer);
        resolve(c);
      };
      list.push(done);
      this.#createdWaiters.set(id, list);
    });
  }

  /**
   * `definite`: the engine said the container died or is gone. A not-running inspect answer
   * is not enough for a container only created so far: between `create` and `start` it is
   * not running yet, while the runtime shim may already have enrolled it.
   */
  #forget(id: string, reason: DockerPuStopReason, definite = true): void {
    const prev = this.#known.get(id);
    const created = this.#created.get(id);
    if (!prev) {
      if (definite && created) {
        this.#created.delete(id);
        this.emit('pu-stop', { id, name: created.name, reason });
      }
      return;
    }
    this.#created.delete(id);
    this.#known.delete(id);
    this.emit('pu-stop', { id, name: prev.name, reason });
  }

  #enqueue(id: string, work: () => Promise<void>): Promise<void> {
    const prev = this.#chains.get(id) ?? Promise.resolve();
    const next = prev.then(work).catch((err: unknown) => {
      this.#log.warn({ container: id.slice(0, 12), err: errorMessage(err) }, 'docker monitor: could not refresh a container');
    });
    this.#chains.set(id, next);
    void next.finally(() => {
      if (this.#chains.get(id) === next) this.#chains.delete(id);
    });
    return next;
  }

  /** Re-reads one container and emits what changed since we last saw it. */
  async #refresh(id: string, reason: DockerPuStopReason): Promise<void> {
    let inspect: InspectLike | null;
    try {
      inspect = await this.#engine.inspect(id);
    } catch (err) {
      throw dockerError(this.#socketPath, `inspect ${id.slice(0, 12)}`, err);
    }
    const prev = this.#known.get(id);
    if (inspect === null || inspect.State?.Running !== true) {
      this.#forget(id, inspect === null ? 'removed' : reason, inspect === null);
      return;
    }
    const pu: DockerPu = puFromInspect(inspect);
    const cg = netClsCgroupOf(this.#procRoot, pu.pid);
    if (cg !== undefined) pu.netClsCgroup = cg;
    if (pu.warnings.length) this.#log.warn({ container: pu.name, warnings: pu.warnings }, 'docker monitor: labels left out');
    if (prev && prev.pid !== pu.pid) {
      // Restarted between two looks: its processes, cgroup and netns are new.
      this.#known.delete(id);
      this.emit('pu-stop', { id, name: prev.name, reason: 'restarted' });
    } else if (prev) {
      if (!sameState(prev, pu)) {
        this.#known.set(id, pu);
        this.emit('pu-update', pu, prev);
      }
      return;
    }
    this.#known.set(id, pu);
    this.#created.delete(id);
    this.emit('pu-start', pu);
  }

  /** Every running container is (re)read; known ones that are gone are stopped. */
  async #resync(): Promise<void> {
    const running = await this.#engine.listRunning();
    const ids = new Set(running);
    const work: Promise<void>[] = [];
    for (const id of ids) work.push(this.#enqueue(id, () => this.#refresh(id, 'engine-resync')));
    for (const id of this.#known.keys()) {
      if (!ids.has(id)) work.push(this.#enqueue(id, () => this.#refresh(id, 'engine-resync')));
    }
    await Promise.all(work);
  }

  #lost(err: unknown): void {
    this.#closeStream();
    if (this.#state !== 'running') return;
    const e = dockerError(this.#socketPath, 'event stream lost', err);
    this.#log.warn({ err: e.message }, 'docker monitor: engine went away, reconnecting');
    this.emit('disconnected', e);
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#state !== 'running' || this.#retryTimer) return;
    const delay = this.#retryDelay;
    this.#retryDelay = Math.min(this.#retryDelay * 2, this.#maxMs);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#reconnecting = this.#connect()
        .then(() => {
          this.#retryDelay = this.#minMs;
          this.#log.info({ socket: this.#socketPath }, 'docker monitor: reconnected');
          this.emit('connected');
        })
        .catch((err: unknown) => {
          this.#closeStream();
          this.#log.debug({ err: errorMessage(err), nextMs: this.#retryDelay }, 'docker monitor: reconnect failed');
          this.#scheduleReconnect();
        })
        .finally(() => {
          this.#reconnecting = null;
        });
    }, delay);
    this.#retryTimer.unref?.();
  }
}

/** Creates a monitor of the Docker engine at `socketPath`; call start() to begin. */
export function createDockerMonitor(options: DockerMonitorOptions = {}): DockerMonitor {
  const o = options;
  for (const k of ['reconnectMinMs', 'reconnectMaxMs', 'requestTimeoutMs'] as const) {
    const v = o[k];
    if (v !== undefined && !(Number.isInteger(v) && v > 0)) {
      throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', `docker monitor: ${k} must be a positive integer of milliseconds, got ${String(v)}`);
    }
  }
  if (o.socketPath !== undefined && (typeof o.socketPath !== 'string' || !o.socketPath.startsWith('/'))) {
    throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', `docker monitor: socketPath must be an absolute path to the engine's unix socket, got ${JSON.stringify(o.socketPath)}`);
  }
  return new DockerMonitorImpl(o);
}
