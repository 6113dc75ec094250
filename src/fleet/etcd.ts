// A small etcd v3 client over @grpc/grpc-js: unary KV/Lease/Maintenance calls that fail over
// across the configured members, and raw Watch/LeaseKeepAlive streams for the follower and
// the status publisher, which own their loops (reconnect, relist, backoff) themselves.
// Every call carries `hasleader: true`, so a member cut off from the quorum refuses instead
// of serving stale data or keeping a silent watch open (etcd's WithRequireLeader).

import * as grpc from '@grpc/grpc-js';
import { fromJSON } from '@grpc/proto-loader';
import { ETCD_PROTO } from './etcd-proto.js';
import type { Endpoint } from './url.js';

export interface EtcdTls {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export interface EtcdClientOptions {
  endpoints: readonly Endpoint[];
  tls?: EtcdTls;
  /** Deadline of one unary call on one member. */
  requestTimeoutMs?: number;
}

export interface ResponseHeader {
  cluster_id: string;
  member_id: string;
  revision: string;
}

export interface KeyValue {
  key: Buffer;
  value: Buffer;
  create_revision: string;
  mod_revision: string;
  version: string;
  lease: string;
}

export interface WatchEvent {
  type: 'PUT' | 'DELETE';
  kv: KeyValue;
}

export interface WatchResponse {
  header: ResponseHeader | null;
  watch_id: string;
  created: boolean;
  canceled: boolean;
  compact_revision: string;
  cancel_reason: string;
  events: WatchEvent[];
}

export interface RangeResult {
  header: ResponseHeader;
  kvs: KeyValue[];
  more: boolean;
}

export type WatchStream = grpc.ClientDuplexStream<Record<string, unknown>, WatchResponse>;
export type KeepAliveStream = grpc.ClientDuplexStream<{ ID: string }, { header: ResponseHeader | null; ID: string; TTL: string }>;

type Unary = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;
type Stubs = { kv: grpc.Client; watch: grpc.Client; lease: grpc.Client; maintenance: grpc.Client };

const pkg = grpc.loadPackageDefinition(
  fromJSON(ETCD_PROTO as never, { keepCase: true, longs: String, enums: String, bytes: Buffer, defaults: true, oneofs: true }),
) as unknown as { etcdserverpb: Record<string, grpc.ServiceClientConstructor> };

/** The smallest key greater than every key starting with `prefix` (etcd's prefix range end). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** Errors after which another member may answer: the member is down, slow or without leader. */
export function isRetriable(err: unknown): boolean {
  const e = err as grpc.ServiceError;
  if (e?.code === grpc.status.UNAVAILABLE || e?.code === grpc.status.DEADLINE_EXCEEDED || e?.code === grpc.status.CANCELLED) return true;
  return /no leader|leader changed|timed out|too many requests/i.test(String(e?.details ?? e?.message ?? ''));
}

export class EtcdClient {
  private readonly endpoints: readonly Endpoint[];
  private readonly creds: grpc.ChannelCredentials;
  private readonly timeoutMs: number;
  private index = 0;
  private stubs: Stubs | null = null;
  private closed = false;

  constructor(opts: EtcdClientOptions) {
    if (opts.endpoints.length === 0) throw new Error('no etcd endpoint');
    this.endpoints = opts.endpoints;
    this.timeoutMs = opts.requestTimeoutMs ?? 5000;
    this.creds = opts.tls ? grpc.credentials.createSsl(opts.tls.ca, opts.tls.key ?? null, opts.tls.cert ?? null) : grpc.credentials.createInsecure();
    // Start on a member chosen by chance so a fleet's daemons spread over the members.
    this.index = Math.floor(Math.random() * this.endpoints.length);
  }

  /** The member currently used, as host:port. */
  current(): string {
    const e = this.endpoints[this.index]!;
    return `${e.host}:${e.port}`;
  }

  /** Drop the current member's channel and use the next one. */
  rotate(): void {
    this.dropStubs();
    this.index = (this.index + 1) % this.endpoints.length;
  }

  close(): void {
    this.closed = true;
    this.dropStubs();
  }

  private dropStubs(): void {
    if (!this.stubs) return;
    for (const c of Object.values(this.stubs)) c.close();
    this.stubs = null;
  }

  private stubsNow(): Stubs {
    if (this.closed) throw new Error('etcd client closed');
    if (this.stubs) return this.stubs;
    const target = `${this.current()}`;
    const options: grpc.ChannelOptions = {
      // Find a dead TCP connection without waiting for the kernel: ping every 10 s, give up after 5 s.
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 2_000,
      'grpc.max_receive_message_length': 8 * 1024 * 1024,
    };
    const P = pkg.etcdserverpb;
    this.stubs = {
      kv: new P.KV!(target, this.creds, options),
      watch: new P.Watch!(target, this.creds, options),
      lease: new P.Lease!(target, this.creds, options),
      maintenance: new P.Maintenance!(target, this.creds, options),
    };
    return this.stubs;
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set('hasleader', 'true');
    return md;
  }

  /** One unary call, tried on each member at most once (rotating on a retriable error). */
  private async call<T>(service: keyof Stubs, name: string, req: unknown): Promise<T> {
    let lastErr: unknown;
    for (let attempt = 0; attempt < this.endpoints.length; attempt++) {
      try {
        return await new Promise<T>((resolve, reject) => {
          const stub = this.stubsNow()[service] as unknown as Record<string, Unary>;
          stub[name]!.call(stub, req, this.metadata(), { deadline: Date.now() + this.timeoutMs }, (err, res) => (err ? reject(err) : resolve(res as T)));
        });
      } catch (err) {
        lastErr = err;
        if (!isRetriable(err) || this.closed) break;
        this.rotate();
      }
    }
    throw lastErr;
  }

  range(key: Buffer, rangeEnd?: Buffer, revision?: number): Promise<RangeResult> {
    // No range_end field at all for one key: an empty one on the wire is not "absent" to etcd.
    return this.call('kv', 'Range', { key, ...(rangeEnd ? { range_end: rangeEnd } : {}), ...(revision ? { revision: String(revision) } : {}) });
  }

  async get(key: Buffer): Promise<{ header: ResponseHeader; kv: KeyValue | null }> {
    const r = await this.range(key);
    return { header: r.header, kv: r.kvs[0] ?? null };
  }

  put(key: Buffer, value: Buffer, lease?: string): Promise<{ header: ResponseHeader }> {
    return this.call('kv', 'Put', { key, value, lease: lease ?? '0' });
  }

  /** Write `value` only if `key`'s mod revision is still `modRevision` (0: the key is absent). */
  async putIfUnchanged(key: Buffer, value: Buffer, modRevision: string): Promise<{ succeeded: boolean; header: ResponseHeader }> {
    const r = await this.call<{ succeeded: boolean; header: ResponseHeader }>('kv', 'Txn', {
      compare: [{ result: 'EQUAL', target: 'MOD', key, mod_revision: modRevision }],
      success: [{ request_put: { key, value } }],
      failure: [],
    });
    return { succeeded: r.succeeded, header: r.header };
  }

  deleteRange(key: Buffer, rangeEnd?: Buffer): Promise<{ header: ResponseHeader; deleted: string }> {
    return this.call('kv', 'DeleteRange', { key, ...(rangeEnd ? { range_end: rangeEnd } : {}) });
  }

  compact(revision: number): Promise<{ header: ResponseHeader }> {
    return this.call('kv', 'Compact', { revision: String(revision), physical: true });
  }

  status(): Promise<{ header: ResponseHeader; version: string; leader: string; errors: string[] }> {
    return this.call('maintenance', 'Status', {});
  }

  leaseGrant(ttlSeconds: number): Promise<{ ID: string; TTL: string; error: string }> {
    return this.call('lease', 'LeaseGrant', { TTL: String(ttlSeconds), ID: '0' });
  }

  leaseRevoke(id: string): Promise<unknown> {
    return this.call('lease', 'LeaseRevoke', { ID: id });
  }

  /** A raw watch stream on the current member; the caller sends create/progress requests. */
  watchStream(): WatchStream {
    const stub = this.stubsNow().watch as unknown as { Watch(md: grpc.Metadata): WatchStream };
    return stub.Watch(this.metadata());
  }

  keepAliveStream(): KeepAliveStream {
    const stub = this.stubsNow().lease as unknown as { LeaseKeepAlive(md: grpc.Metadata): KeepAliveStream };
    return stub.LeaseKeepAlive(this.metadata());
  }
}
