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

const CHECK_EVERY_MS = 5000;

export interface FleetService {
  link: FleetLink;
  stop(): Promise<void>;
}

export function startFleetService(o: {
  cluster: NonNullable<DaemonConfig['cluster']>;
  stateDir: string;
  hostId: string;
  /** CA mode: this host's certificate, for the host directory. */
  certificate?: string;
  policy: PolicyService;
  /** Hand a verified trust bundle to the workers (a snapshot delta: revoked, labelBindings, cas). */
  applyTrust: (update: TrustUpdate) => void;
  health: HealthService;
  log: Logger;
}): FleetService {
  const log = o.log.child({ component: 'fleet' });
  const c = o.cluster;
  const link = startFleetLink({
    url: c.url,
    tls: { ...(c.caFile ? { caFile: c.caFile } : {}), ...(c.certFile ? { certFile: c.certFile } : {}), ...(c.keyFile ? { keyFile: c.keyFile } : {}) },
    operatorPubFiles: c.operatorPubFiles,
    cacheDir: fleetCacheDir(o.stateDir),
    hostId: o.hostId,
    ...(c.prefix ? { prefix: c.prefix } : {}),
    version: c.version ?? 'unknown',
    ...(o.certificate !== undefined ? { certificate: o.certificate } : {}),
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
  const timer = setInterval(() => {
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
  }, CHECK_EVERY_MS);
  return {
    link,
    async stop() {
      clearInterval(timer);
      await link.stop();
    },
  };
}
