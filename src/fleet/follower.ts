// The follower: a daemon's view of the fleet's bundles in etcd.
//
//   start   → load the last verified bundles from disk (fail-static) and emit them;
//   list    → Range over <prefix>bundles/ at one revision R (the "synced" point);
//   watch   → from R+1 on one stream, with progress requests on a timer: a stream that
//             answers nothing within progressTimeoutMs is taken as half-open and dropped;
//   resume  → after a transport error, "no leader" or a half-open stream: the next member,
//             watch again from the last revision seen (no relist: relist storms hurt etcd);
//   relist  → after a compaction past our revision, a cancel, or another cluster id
//             (a watch never resumes against a different etcd, Cilium #32005);
//   every retry waits an exponential backoff with jitter, reset once a watch answers a progress request.
// Only bundles that verify (operator signature, kind, no rollback) and pass `validate` are
// emitted; every refusal is counted, logged and kept as lastRefusal.

import { verifyBundle, type Bundle, type RefusalReason } from './bundle.js';
import { createBackoff, type BackoffOptions } from './backoff.js';
import type { BundleCache } from './cache.js';
import { isRetriable, prefixEnd, type EtcdClient, type WatchResponse } from './etcd.js';
import { BUNDLE_KINDS, type BundleKind, type Layout } from './layout.js';
import type { OperatorPublicKey } from './operator-key.js';

export type BundleSource = 'etcd' | 'disk';

export interface AppliedBundle {
  readonly kind: BundleKind;
  readonly bundle: Bundle;
  readonly digest: string;
  readonly source: BundleSource;
}

export interface Refusal {
  readonly kind: BundleKind;
  readonly reason: RefusalReason | 'apply-failed';
  readonly message: string;
  readonly source: BundleSource;
  readonly etcdRevision: number | null;
  readonly at: string;
}

export type FollowerState = 'starting' | 'synced' | 'resyncing' | 'disconnected' | 'stopped';

export interface FollowerStatus {
  state: FollowerState;
  member: string;
  clusterId: string | null;
  /** The etcd revision up to which bundle changes have been seen. */
  etcdRevision: number;
  lastSyncAt: string | null;
  /** Seconds since etcd last answered this follower; null before the first answer. */
  staleSeconds: number | null;
  applied: Partial<Record<BundleKind, { revision: number; digest: string; issuedAt: string; source: BundleSource; appliedAt: string }>>;
  counters: { lists: number; watches: number; compactions: number; cancels: number; reconnects: number; halfOpen: number; clusterIdChanges: number; refused: number };
  lastError: { message: string; at: string } | null;
  lastRefusal: Refusal | null;
}

export interface FollowerOptions {
  client: EtcdClient;
  layout: Layout;
  trusted: readonly OperatorPublicKey[];
  cache?: BundleCache;
  /** A problem with a verified bundle's content (say, a policy that does not compile), or null. */
  validate?: (kind: BundleKind, bundle: Bundle) => string | null;
  onBundle: (b: AppliedBundle) => void;
  onRefused?: (r: Refusal) => void;
  log?: (level: 'info' | 'warn', message: string) => void;
  backoff?: BackoffOptions;
  progressIntervalMs?: number;
  progressTimeoutMs?: number;
}

type EndKind = 'transport' | 'half-open' | 'compacted' | 'canceled' | 'cluster-changed' | 'stopped';

class WatchEnd extends Error {
  constructor(
    readonly kind: EndKind,
    message: string,
  ) {
    super(message);
  }
}

export class Follower {
  private readonly o: FollowerOptions;
  private readonly backoff;
  private readonly progressIntervalMs: number;
  private readonly progressTimeoutMs: number;
  private readonly st: FollowerStatus;
  private lastSyncMs: number | null = null;
  private stopped = false;
  private abortWatch: (() => void) | null = null;
  private wake: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  private readonly marks = new Map<BundleKind, { revision: number; digest: string }>();

  constructor(opts: FollowerOptions) {
    this.o = opts;
    this.backoff = createBackoff(opts.backoff ?? { baseMs: 250, maxMs: 30_000 });
    this.progressIntervalMs = opts.progressIntervalMs ?? 5_000;
    this.progressTimeoutMs = opts.progressTimeoutMs ?? 15_000;
    this.st = {
      state: 'starting',
      member: opts.client.current(),
      clusterId: null,
      etcdRevision: 0,
      lastSyncAt: null,
      staleSeconds: null,
      applied: {},
      counters: { lists: 0, watches: 0, compactions: 0, cancels: 0, reconnects: 0, halfOpen: 0, clusterIdChanges: 0, refused: 0 },
      lastError: null,
      lastRefusal: null,
    };
  }

  /** Emit the bundles kept on disk (before etcd answers), then follow etcd in the background. */
  start(): void {
    if (this.loop) return;
    const cache = this.o.cache;
    if (cache) {
      for (const kind of BUNDLE_KINDS) {
        const stored = cache.loadBundle(kind);
        if (stored !== null) this.consider(kind, stored, 'disk', null);
      }
    }
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abortWatch?.();
    this.wake?.();
    // An etcd call in flight ends when the caller closes the client; do not wait on it long.
    let t: NodeJS.Timeout | undefined;
    await Promise.race([this.loop, new Promise((r) => (t = setTimeout(r, 2000)))]).finally(() => clearTimeout(t));
    this.st.state = 'stopped';
  }

  status(): FollowerStatus {
    const s = structuredClone(this.st);
    s.member = this.o.client.current();
    s.staleSeconds = this.lastSyncMs === null ? null : Math.max(0, Math.round((Date.now() - this.lastSyncMs) / 100) / 10);
    return s;
  }

  private log(level: 'info' | 'warn', message: string): void {
    this.o.log?.(level, message);
  }

  private synced(): void {
    this.lastSyncMs = Date.now();
    this.st.lastSyncAt = new Date(this.lastSyncMs).toISOString();
  }

  private async run(): Promise<void> {
    const point = this.o.cache?.loadFollowPoint() ?? null;
    // Resume from where the last run was (its cluster id is checked on the first answer).
    let resume = point !== null;
    if (point) {
      this.st.clusterId = point.clusterId;
      this.st.etcdRevision = point.revision;
    }
    while (!this.stopped) {
      try {
        if (!resume) await this.list();
        resume = false;
        await this.watch();
      } catch (err) {
        if (this.stopped) break;
        const end = err instanceof WatchEnd ? err : new WatchEnd(isRetriable(err) ? 'transport' : 'canceled', (err as Error)?.message ?? String(err));
        this.st.lastError = { message: `${end.kind}: ${end.message}`, at: new Date().toISOString() };
        if (end.kind === 'transport' || end.kind === 'half-open') {
          // Same history on another member: resume the watch, no relist.
          resume = this.st.clusterId !== null;
          this.st.counters.reconnects++;
          if (end.kind === 'half-open') this.st.counters.halfOpen++;
          this.o.client.rotate();
          this.st.state = 'disconnected';
        } else {
          if (end.kind === 'compacted') this.st.counters.compactions++;
          if (end.kind === 'canceled') this.st.counters.cancels++;
          if (end.kind === 'cluster-changed') this.st.counters.clusterIdChanges++;
          this.st.state = 'resyncing';
        }
        const delay = this.backoff.next();
        this.log('warn', `fleet: etcd ${end.kind} (${end.message}) on ${this.o.client.current()}; ${resume ? 'resuming the watch' : 'relisting'} in ${delay} ms`);
        await this.sleep(delay);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(t);
        self.wake = null;
        resolve();
      }
      this.wake = done;
    });
  }

  private async list(): Promise<void> {
    const key = Buffer.from(this.o.layout.bundles);
    const r = await this.o.client.range(key, prefixEnd(key));
    if (this.stopped) return;
    const clusterId = r.header.cluster_id;
    if (this.st.clusterId !== null && this.st.clusterId !== clusterId) {
      this.log('warn', `fleet: etcd cluster id changed from ${this.st.clusterId} to ${clusterId}; following the new cluster from a fresh list`);
    }
    this.st.clusterId = clusterId;
    for (const kv of r.kvs) {
      const kind = this.o.layout.kindOf(kv.key.toString('utf8'));
      if (kind) this.consider(kind, kv.value, 'etcd', Number(kv.mod_revision));
    }
    this.st.etcdRevision = Number(r.header.revision);
    this.st.counters.lists++;
    this.st.state = 'synced';
    this.synced();
    this.saveFollowPoint();
  }

  private saveFollowPoint(): void {
    if (!this.o.cache || this.st.clusterId === null) return;
    try {
      this.o.cache.saveFollowPoint({ clusterId: this.st.clusterId, revision: this.st.etcdRevision, savedAt: new Date().toISOString() });
    } catch (err) {
      this.log('warn', `fleet: could not save the follow point in ${this.o.cache.dir}: ${(err as Error).message}`);
    }
  }

  private watch(): Promise<void> {
    return new Promise<void>((_resolve, reject) => {
      const stream = this.o.client.watchStream();
      let lastMessage = Date.now();
      let done = false;
      const finish = (end: WatchEnd): void => {
        if (done) return;
        done = true;
        clearInterval(timer);
        this.abortWatch = null;
        stream.cancel();
        reject(end);
      };
      this.abortWatch = () => finish(new WatchEnd('stopped', 'stopped'));
      stream.on('data', (r: WatchResponse) => {
        lastMessage = Date.now();
        try {
          this.onResponse(r, (msg) => stream.write(msg));
        } catch (err) {
          finish(err instanceof WatchEnd ? err : new WatchEnd('canceled', (err as Error).message));
        }
      });
      stream.on('error', (err: Error) => finish(new WatchEnd('transport', err.message)));
      stream.on('end', () => finish(new WatchEnd('transport', 'the member closed the watch stream')));
      const key = Buffer.from(this.o.layout.bundles);
      stream.write({
        create_request: { key, range_end: prefixEnd(key), start_revision: String(this.st.etcdRevision + 1), progress_notify: true, prev_kv: false, watch_id: '0' },
      });
      this.st.counters.watches++;
      const timer = setInterval(() => {
        if (Date.now() - lastMessage > this.progressTimeoutMs) {
          finish(new WatchEnd('half-open', `no answer to progress requests for ${this.progressTimeoutMs} ms`));
          return;
        }
        stream.write({ progress_request: {} });
      }, this.progressIntervalMs);
      if (this.stopped) finish(new WatchEnd('stopped', 'stopped'));
    });
  }

  private onResponse(r: WatchResponse, send: (msg: Record<string, unknown>) => void): void {
    const cid = r.header?.cluster_id;
    if (cid && cid !== '0' && this.st.clusterId !== null && cid !== this.st.clusterId) {
      throw new WatchEnd('cluster-changed', `the member answers for cluster ${cid}, not ${this.st.clusterId}`);
    }
    if (r.compact_revision !== '0' && r.compact_revision !== '') {
      throw new WatchEnd('compacted', `revision ${this.st.etcdRevision + 1} is compacted (compact revision ${r.compact_revision})`);
    }
    if (r.canceled) {
      const reason = r.cancel_reason || 'canceled by etcd';
      throw new WatchEnd(/no leader/i.test(reason) ? 'transport' : 'canceled', reason);
    }
    if (r.created) {
      // Ask at once: the answer says the member is alive and (3.5+) caught up.
      send({ progress_request: {} });
      return;
    }
    if (r.events.length === 0) {
      // A progress answer: the member and its leader are alive; the watch has proved itself.
      this.st.state = 'synced';
      this.backoff.reset();
      this.synced();
      return;
    }
    for (const ev of r.events) {
      const rev = Number(ev.kv.mod_revision);
      const kind = this.o.layout.kindOf(ev.kv.key.toString('utf8'));
      if (kind && ev.type === 'PUT') this.consider(kind, ev.kv.value, 'etcd', rev);
      else if (kind) this.log('warn', `fleet: the ${kind} bundle was deleted from etcd at revision ${rev}; keeping the applied one`);
      if (rev > this.st.etcdRevision) this.st.etcdRevision = rev;
    }
    this.synced();
    this.saveFollowPoint();
  }

  private refuse(kind: BundleKind, reason: Refusal['reason'], message: string, source: BundleSource, etcdRevision: number | null): void {
    const r: Refusal = { kind, reason, message, source, etcdRevision, at: new Date().toISOString() };
    this.st.counters.refused++;
    this.st.lastRefusal = r;
    this.log('warn', `fleet: refused the ${kind} bundle from ${source}${etcdRevision === null ? '' : ` (etcd revision ${etcdRevision})`}: ${reason}: ${message}`);
    this.o.onRefused?.(r);
  }

  private consider(kind: BundleKind, stored: string | Buffer, source: BundleSource, etcdRevision: number | null): void {
    const v = verifyBundle(stored, kind, this.o.trusted, this.marks.get(kind) ?? null);
    if (!v.ok) return this.refuse(kind, v.reason, v.message, source, etcdRevision);
    if (v.duplicate) return;
    const problem = this.o.validate?.(kind, v.bundle) ?? null;
    if (problem !== null) return this.refuse(kind, 'bad-payload', problem, source, etcdRevision);
    if (source === 'etcd' && this.o.cache) {
      try {
        this.o.cache.saveBundle(kind, typeof stored === 'string' ? stored : stored.toString('utf8'));
      } catch (err) {
        this.log('warn', `fleet: could not keep the ${kind} bundle in ${this.o.cache.dir}: ${(err as Error).message}`);
      }
    }
    this.marks.set(kind, { revision: v.bundle.revision, digest: v.digest });
    this.st.applied[kind] = { revision: v.bundle.revision, digest: v.digest, issuedAt: v.bundle.issuedAt, source, appliedAt: new Date().toISOString() };
    try {
      this.o.onBundle({ kind, bundle: v.bundle, digest: v.digest, source });
    } catch (err) {
      this.refuse(kind, 'apply-failed', (err as Error).message, source, etcdRevision);
    }
  }
}
