// The daemon's fleet service (--cluster): follows the signed bundles in etcd (src/fleet),
// compiles a verified policy bundle and hands it to the policy service's reload path, and
// publishes this host's applied revision and health. etcd away: the last verified bundles
// (kept on disk) stay in force; health says so, with how stale they are.

import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import { fleetCacheDir, startFleetLink, type FleetLink } from '../fleet/link.js';
import type { DaemonConfig } from './config.js';
import type { HealthService } from './health.js';
import { loadPolicyText } from './policy-source.js';
import type { PolicyService } from './policy-service.js';
import type { TrustUpdate } from '../datapath/messages.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspectCertificate } from '../identity/certificate.js';
import type { EcPublicJwk } from '../identity/jws.js';
import { localAddresses } from '../fleet/hosts.js';

const CHECK_EVERY_MS = 5000;

export interface FleetService {
  link: FleetLink;
  stop(): Promise<void>;
}

/** The public half of <stateDir>/handshake.key (an X25519 JWK), or null when there is none yet. */
function readHandshakePublic(stateDir: string): string | null {
  const path = join(stateDir, 'handshake.key');
  if (!existsSync(path)) return null;
  try {
    const x = (JSON.parse(readFileSync(path, 'utf8')) as { x?: unknown }).x;
    return typeof x === 'string' && /^[A-Za-z0-9_-]{43}$/.test(x) ? x : null;
  } catch {
    return null;
  }
}

export function startFleetService(o: {
  cluster: NonNullable<DaemonConfig['cluster']>;
  stateDir: string;
  hostId: string;
  /** CA mode: this host's certificate, for the host directory. */
  certificate?: string;
  /** CA mode: the configured CA public key (--ca), for directory entries until a trust bundle lists CAs. */
  caPublicJwk?: Record<string, unknown>;
  /** The host's static handshake public key (raw 32 bytes); absent: read from <stateDir>/handshake.key if there. */
  handshakePublicKey?: Uint8Array;
  /** The host's addresses for its directory entry (default: its interfaces' non-loopback addresses). */
  addresses?: string[];
  policy: PolicyService;
  /** Hand a verified trust bundle to the workers (a snapshot delta: revoked, labelBindings, cas). */
  applyTrust: (update: TrustUpdate) => void;
  health: HealthService;
  log: Logger;
}): FleetService {
  const log = o.log.child({ component: 'fleet' });
  const c = o.cluster;
  const handshakeKey = o.handshakePublicKey ? Buffer.from(o.handshakePublicKey).toString('base64url') : readHandshakePublic(o.stateDir);
  const link = startFleetLink({
    url: c.url,
    tls: { ...(c.caFile ? { caFile: c.caFile } : {}), ...(c.certFile ? { certFile: c.certFile } : {}), ...(c.keyFile ? { keyFile: c.keyFile } : {}) },
    operatorPubFiles: c.operatorPubFiles,
    cacheDir: fleetCacheDir(o.stateDir),
    hostId: o.hostId,
    ...(c.prefix ? { prefix: c.prefix } : {}),
    version: c.version ?? 'unknown',
    ...(o.certificate !== undefined ? { certificate: o.certificate } : {}),
    handshakeKey,
    addresses: o.addresses ?? localAddresses(),
    ...(o.caPublicJwk ? { caPublicJwks: [o.caPublicJwk as unknown as EcPublicJwk] } : {}),
    applyDirectory: (view) => {
      o.applyTrust({ hostKeys: view.hostKeys });
      log.info({ hosts: view.hosts.length, addresses: Object.keys(view.hostKeys).length, refused: view.refused.length, conflicts: view.conflicts }, 'host directory changed');
    },
    validatePolicy: (text, source) => {
      try {
        loadPolicyText(text, source, 'check', source);
        return null;
      } catch (err) {
        return errorMessage(err);
      }
    },
    applyPolicy: (text, name) => {
      const rev = /revision (\d+)/.exec(name)?.[1] ?? 'fleet';
      o.policy.adopt(loadPolicyText(text, name, rev, name), 'fleet bundle');
      o.health.recover('fleet-bundle');
    },
    applyTrust: (u, name) => {
      o.applyTrust(u);
      log.info({ revoked: u.revoked.length, labelBindings: u.labelBindings.length, cas: u.cas.length }, `applied ${name}`);
    },
    health: () => {
      const h = o.health.health();
      return { state: h.state, problems: h.problems.map((p) => `${p.component}: ${p.message}`) };
    },
    log: (level, message) => (level === 'warn' ? log.warn(message) : log.info(message)),
  });
  let wasConnected = true;
  // --cluster-max-stale: counted from the last answer of etcd, or from this start when none yet.
  const started = Date.now();
  let refusingNew = false;
  const certExp = o.certificate ? inspectCertificate(o.certificate) : null;
  const timer = setInterval(() => {
    // Renewal is the operator's (tessera cluster join again, same key): say so while a third of the lifetime is left.
    if (certExp) {
      const left = certExp.exp - Date.now() / 1000;
      if (left < (certExp.exp - certExp.iat) / 3) o.health.degrade('certificate', `this host's certificate expires at ${new Date(certExp.exp * 1000).toISOString()}: renew it (tessera cluster join) and restart the daemon`);
    }
    const s = link.status();
    if (s.lastRefusal && s.lastRefusal.at >= (s.applied.policy?.appliedAt ?? '')) {
      o.health.degrade('fleet-bundle', `refused the ${s.lastRefusal.kind} bundle (${s.lastRefusal.reason}): ${s.lastRefusal.message}; the applied one stays`);
    }
    const connected = s.state === 'synced';
    if (!connected) {
      o.health.degrade('fleet', `etcd not synced (${s.state}${s.lastError ? `: ${s.lastError.message}` : ''}); enforcing the last verified bundles, ${s.staleSeconds === null ? 'never synced' : `${s.staleSeconds}s stale`}`);
    } else if (!wasConnected) {
      o.health.recover('fleet');
    }
    wasConnected = connected;
    const max = c.maxStaleSeconds;
    if (max !== undefined && max > 0) {
      const stale = connected ? 0 : (s.staleSeconds ?? (Date.now() - started) / 1000);
      if (stale > max && !refusingNew) {
        refusingNew = true;
        o.applyTrust({ refuseNew: true });
        o.health.degrade('fleet-stale', `no contact with etcd for ${Math.round(stale)}s (bound ${max}s): peers not verified before are refused (stale-trust)`);
        log.warn({ staleSeconds: Math.round(stale), bound: max }, 'fleet staleness bound passed: refusing identities not verified before');
      } else if (stale <= max && refusingNew) {
        refusingNew = false;
        o.applyTrust({ refuseNew: false });
        o.health.recover('fleet-stale');
        log.info('fleet in contact again: new identities accepted');
      }
    }
  }, CHECK_EVERY_MS);
  return {
    link,
    async stop() {
      clearInterval(timer);
      await link.stop();
    },
  };
}
