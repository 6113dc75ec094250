// Per-host status in etcd under the host's lease: <prefix>status/<host> holds the applied
// revisions, health and version; it disappears by itself when the host stops renewing, so
// `tessera cluster status` shows a dead host as gone, not as forever healthy. One lease per
// host covers its status and its (bounded) flow-summary slots.

import { createBackoff, type BackoffOptions } from './backoff.js';
import { prefixEnd, type EtcdClient, type KeepAliveStream } from './etcd.js';
import type { Layout } from './layout.js';

export interface HostStatus {
  host: string;
  version: string;
  health: 'ok' | 'degraded';
  problems: string[];
  policyRevision: number | null;
  trustRevision: number | null;
  etcdRevision: number;
  staleSeconds: number | null;
  updatedAt: string;
}

export interface StatusPublisherOptions {
  client: EtcdClient;
  layout: Layout;
  host: string;
  ttlSeconds?: number;
  status: () => Omit<HostStatus, 'host' | 'updatedAt'>;
  log?: (level: 'info' | 'warn', message: string) => void;
  backoff?: BackoffOptions;
}

export class StatusPublisher {
  private readonly o: StatusPublisherOptions;
  private readonly ttl: number;
  private readonly backoff;
  private lease: string | null = null;
  private keepAlive: KeepAliveStream | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private busy: Promise<void> = Promise.resolve();
  /** How many times a lease was granted (1 in a quiet life; more after etcd outages). */
  grants = 0;
  lastError: string | null = null;

  constructor(opts: StatusPublisherOptions) {
    this.o = opts;
    this.ttl = opts.ttlSeconds ?? 15;
    this.backoff = createBackoff(opts.backoff ?? { baseMs: 500, maxMs: 30_000 });
  }

  start(): void {
    void this.publish();
  }

  /** Write the current status now (on a change); serialized with the renewal loop. */
  publish(): Promise<void> {
    this.busy = this.busy.then(() => this.publishOnce()).catch(() => undefined);
    return this.busy;
  }

  private async publishOnce(): Promise<void> {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    try {
      if (this.lease === null) await this.grant();
      const value: HostStatus = { host: this.o.host, ...this.o.status(), updatedAt: new Date().toISOString() };
      await this.o.client.put(Buffer.from(this.o.layout.statusOf(this.o.host)), Buffer.from(JSON.stringify(value)), this.lease!);
      this.backoff.reset();
      this.lastError = null;
      this.schedule(Math.max(1000, (this.ttl * 1000) / 3));
    } catch (err) {
      this.lastError = (err as Error).message;
      this.dropLease();
      const delay = this.backoff.next();
      this.o.log?.('warn', `fleet: status publish failed (${this.lastError}); retrying in ${delay} ms`);
      this.schedule(delay);
    }
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.lease !== null && this.keepAlive) {
        this.keepAlive.write({ ID: this.lease });
        this.schedule(Math.max(1000, (this.ttl * 1000) / 3));
      } else void this.publish();
    }, ms);
  }

  private async grant(): Promise<void> {
    const g = await this.o.client.leaseGrant(this.ttl);
    if (g.error) throw new Error(`lease grant refused: ${g.error}`);
    this.lease = g.ID;
    this.grants++;
    const ka = this.o.client.keepAliveStream();
    ka.on('data', (r) => {
      // TTL 0: the lease expired while we were away; its keys are gone. Grant anew and rewrite.
      if (r.TTL === '0' || Number(r.TTL) <= 0) {
        this.dropLease();
        void this.publish();
      }
    });
    const lost = (): void => {
      if (this.keepAlive !== ka || this.stopped) return;
      this.keepAlive = null;
      this.o.client.rotate();
      void this.publish();
    };
    ka.on('error', lost);
    ka.on('end', lost);
    this.keepAlive = ka;
  }

  private dropLease(): void {
    const ka = this.keepAlive;
    this.keepAlive = null;
    this.lease = null;
    ka?.cancel();
  }

  /** Stop renewing; with `revoke`, delete the status at once (a clean shutdown). */
  async stop(revoke = true): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    // A daemon's stop must not wait on an etcd that is away: at most 2 s each, then the
    // lease expires by itself within its TTL.
    const bounded = (p: Promise<unknown>): Promise<unknown> => {
      let t: NodeJS.Timeout | undefined;
      return Promise.race([p.catch(() => undefined), new Promise((r) => (t = setTimeout(r, 2000)))]).finally(() => clearTimeout(t));
    };
    await bounded(this.busy);
    const lease = this.lease;
    this.dropLease();
    if (revoke && lease !== null) await bounded(this.o.client.leaseRevoke(lease));
  }
}

/** Read every host's status (for `tessera cluster status`). */
export async function readHostStatuses(client: EtcdClient, layout: Layout): Promise<{ statuses: HostStatus[]; etcdRevision: number }> {
  const key = Buffer.from(layout.status);
  const r = await client.range(key, prefixEnd(key));
  const statuses: HostStatus[] = [];
  for (const kv of r.kvs) {
    try {
      statuses.push(JSON.parse(kv.value.toString('utf8')) as HostStatus);
    } catch {
      // A malformed status is skipped; the host rewrites it on its next renewal.
    }
  }
  return { statuses, etcdRevision: Number(r.header.revision) };
}
