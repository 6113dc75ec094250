// The daemon's side of the fleet: connect to etcd, follow the bundles (fail-static cache in
// the state directory), hand verified policy bundles to the daemon's reload path, and publish
// this host's applied revision and health under its lease. The daemon passes in how to
// validate and apply a policy (src/fleet does not import the policy compiler).

import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { TesseraError } from '../errors.js';
import type { PolicyPayload, TrustPayload } from './bundle.js';
import { trustUpdateOf } from './trust-ops.js';
import { createBundleCache } from './cache.js';
import { EtcdClient, type EtcdTls } from './etcd.js';
import { readOperatorPublicFile } from './files.js';
import { Follower, type FollowerStatus } from './follower.js';
import { createLayout, DEFAULT_PREFIX } from './layout.js';
import { StatusPublisher } from './status.js';
import { publishHostEntry } from './hosts.js';
import { createBackoff } from './backoff.js';
import { parseClusterUrl } from './url.js';
import { buildDirectory, type DirectoryView } from './directory.js';
import { readHostEntries } from './hosts.js';
import { createHostTrust } from '../identity/revocation.js';
import { ecPublicKey, type EcPublicJwk } from '../identity/jws.js';
import type { KeyObject } from 'node:crypto';

export interface ClusterTlsFiles {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

export interface FleetLinkOptions {
  url: string;
  tls?: ClusterTlsFiles;
  operatorPubFiles: readonly string[];
  /** Fail-static cache directory (the daemon's state dir + /fleet). */
  cacheDir: string;
  hostId: string;
  prefix?: string;
  version: string;
  /** Null when the policy text compiles, else the reason. */
  validatePolicy: (text: string, source: string) => string | null;
  /** Apply a verified, valid policy (the daemon's hot-reload path); throw to refuse. */
  applyPolicy: (text: string, name: string) => void;
  /** Apply a verified trust bundle (revocations, label bindings, CAs) to the datapath, hot. */
  applyTrust?: (update: ReturnType<typeof trustUpdateOf>, name: string) => void;
  health: () => { state: 'ok' | 'degraded'; problems: string[] };
  log: (level: 'info' | 'warn', message: string) => void;
  /** CA mode: this host's certificate, published in the host directory (hosts/<host>). */
  certificate?: string;
  /** This host's static handshake public key (base64url of the raw 32 bytes), or null. */
  handshakeKey?: string | null;
  /** This host's addresses, published with the entry. */
  addresses?: string[];
  /** CA mode: the configured CA keys (--ca), used for directory entries until a trust bundle lists CAs. */
  caPublicJwks?: EcPublicJwk[];
  /** The directory changed (entries that verify, minus revoked): the workers' `hostKeys`. */
  applyDirectory?: (view: DirectoryView) => void;
  directoryIntervalMs?: number;
  /** Tests shorten these. */
  progressIntervalMs?: number;
  progressTimeoutMs?: number;
  statusTtlSeconds?: number;
}

export interface FleetLink {
  status(): FollowerStatus & { url: string };
  /** Republish this host's status now (after a health change). */
  publish(): void;
  /** The last host directory built (null before the first read). */
  directory(): DirectoryView | null;
  stop(): Promise<void>;
}

function readFile(path: string, what: string, secret: boolean): Buffer {
  try {
    if (secret && (statSync(path).mode & 0o077) !== 0) {
      throw new TesseraError('TESSERA_ERR_KEY_FILE', `${what} ${path} is readable by group or others: run chmod 600 ${path}`);
    }
    return readFileSync(path);
  } catch (err) {
    if (err instanceof TesseraError) throw err;
    throw new TesseraError('TESSERA_ERR_KEY_FILE', `${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** An etcd client for `url` (etcd:// or etcds://), with TLS files when given. */
export function connectCluster(url: string, tls?: ClusterTlsFiles): EtcdClient {
  let parsed;
  try {
    parsed = parseClusterUrl(url);
  } catch (err) {
    throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', (err as Error).message);
  }
  const useTls = parsed.tls || tls?.caFile !== undefined || tls?.certFile !== undefined;
  let creds: EtcdTls | undefined;
  if (useTls) {
    if (!tls?.caFile) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', 'TLS to etcd needs --cluster-ca FILE (the CA that signed the etcd members\' certificates)');
    if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', '--cluster-cert and --cluster-key go together');
    creds = {
      ca: readFile(tls.caFile, 'cluster CA', false),
      ...(tls.certFile ? { cert: readFile(tls.certFile, 'cluster client certificate', false), key: readFile(tls.keyFile!, 'cluster client key', true) } : {}),
    };
  }
  return new EtcdClient({ endpoints: parsed.endpoints, ...(creds ? { tls: creds } : {}) });
}

export function startFleetLink(o: FleetLinkOptions): FleetLink {
  if (o.operatorPubFiles.length === 0) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', '--cluster needs --operator-pub FILE (the operator public key that signs fleet bundles)');
  const trusted = o.operatorPubFiles.map((f) => readOperatorPublicFile(f));
  const layout = createLayout(o.prefix ?? DEFAULT_PREFIX);
  const client = connectCluster(o.url, o.tls);
  let trustPayload: TrustPayload | null = null;
  let lastKeys = '';
  let lastDirectory: DirectoryView | null = null;
  let stopped = false;
  const refreshDirectory = async (): Promise<void> => {
    if (!o.applyDirectory || stopped) return;
    const fromBundle = (trustPayload?.cas ?? []).map((c) => ecPublicKey(c.publicJwk as unknown as EcPublicJwk)).filter((k): k is KeyObject => k !== null);
    const caKeys = fromBundle.length > 0 ? fromBundle : (o.caPublicJwks ?? []).map((j) => ecPublicKey(j)).filter((k): k is KeyObject => k !== null);
    if (caKeys.length === 0) return;
    let raw;
    try {
      raw = await readHostEntries(client, layout);
    } catch {
      return; // etcd away: the directory the workers have stays (fail-static), retried at the next refresh
    }
    const u = trustPayload ? trustUpdateOf(trustPayload) : { revoked: [] };
    const view = buildDirectory(raw, { layout, caKeys, trust: createHostTrust({ revoked: u.revoked }), now: Date.now() / 1000 });
    lastDirectory = view;
    const text = JSON.stringify(view.hostKeys);
    if (text === lastKeys) return;
    lastKeys = text;
    o.applyDirectory(view);
  };
  const follower = new Follower({
    client,
    layout,
    trusted,
    cache: createBundleCache(o.cacheDir),
    validate: (kind, b) => (kind === 'policy' ? o.validatePolicy((b.payload as PolicyPayload).text, (b.payload as PolicyPayload).source) : null),
    onBundle: (a) => {
      if (a.kind === 'policy') {
        const p = a.bundle.payload as PolicyPayload;
        o.applyPolicy(p.text, `etcd policy revision ${a.bundle.revision} (${p.source}, sha256 ${a.digest.slice(0, 12)}, from ${a.source})`);
      }
      if (a.kind === 'trust') {
        trustPayload = a.bundle.payload as TrustPayload;
        o.applyTrust?.(trustUpdateOf(trustPayload), `etcd trust revision ${a.bundle.revision} (sha256 ${a.digest.slice(0, 12)}, from ${a.source})`);
        // Revoked hosts leave the directory at once, not at the next refresh.
        void refreshDirectory();
      }
      void publisher.publish();
    },
    onRefused: () => void publisher.publish(),
    log: o.log,
    ...(o.progressIntervalMs !== undefined ? { progressIntervalMs: o.progressIntervalMs } : {}),
    ...(o.progressTimeoutMs !== undefined ? { progressTimeoutMs: o.progressTimeoutMs } : {}),
  });
  const publisher = new StatusPublisher({
    client,
    layout,
    host: o.hostId,
    ttlSeconds: o.statusTtlSeconds ?? 15,
    log: o.log,
    status: () => {
      const s = follower.status();
      const h = o.health();
      const problems = [...h.problems];
      const lastApplied = [s.applied.policy?.appliedAt, s.applied.trust?.appliedAt].filter((t): t is string => t !== undefined).sort().at(-1) ?? '';
      // A refusal matters until a later bundle is applied.
      if (s.lastRefusal && s.lastRefusal.at >= lastApplied) problems.push(`refused ${s.lastRefusal.kind} bundle: ${s.lastRefusal.reason}`);
      return {
        version: o.version,
        health: problems.length > 0 ? 'degraded' : h.state,
        problems,
        policyRevision: s.applied.policy?.revision ?? null,
        trustRevision: s.applied.trust?.revision ?? null,
        etcdRevision: s.etcdRevision,
        staleSeconds: s.staleSeconds,
      };
    },
  });
  follower.start();
  publisher.start();
  // The directory entry outlives the daemon (no lease): peers look certificates up there.
  let retry: NodeJS.Timeout | null = null;
  const backoff = createBackoff({ baseMs: 500, maxMs: 30_000 });
  const publishEntry = (): void => {
    if (o.certificate === undefined || stopped) return;
    publishHostEntry(client, layout, { host: o.hostId, certificate: o.certificate, handshakeKey: o.handshakeKey ?? null, addresses: o.addresses ?? [], publishedAt: new Date().toISOString() }).then(
      () => {
        o.log('info', `fleet: published this host's directory entry ${layout.host(o.hostId)}`);
        void refreshDirectory();
      },
      (err: unknown) => {
        if (stopped) return;
        const delay = backoff.next();
        o.log('warn', `fleet: could not publish the host directory entry (${(err as Error).message}); retrying in ${delay} ms`);
        retry = setTimeout(publishEntry, delay);
      },
    );
  };
  publishEntry();
  // The directory is read, not watched: every 20-30 s (jittered) and after each trust bundle.
  const every = o.directoryIntervalMs ?? 20_000;
  let dirTimer: NodeJS.Timeout | null = null;
  const scheduleDirectory = (): void => {
    if (stopped || !o.applyDirectory) return;
    dirTimer = setTimeout(() => void refreshDirectory().finally(scheduleDirectory), every + Math.floor(Math.random() * every * 0.5));
  };
  void refreshDirectory();
  scheduleDirectory();
  return {
    directory: () => lastDirectory,
    status: () => ({ ...follower.status(), url: o.url }),
    publish: () => void publisher.publish(),
    async stop() {
      stopped = true;
      if (retry) clearTimeout(retry);
      if (dirTimer) clearTimeout(dirTimer);
      await follower.stop();
      await publisher.stop(true);
      client.close();
    },
  };
}

/** Where the daemon keeps its fail-static copies. */
export function fleetCacheDir(stateDir: string): string {
  return join(stateDir, 'fleet');
}
