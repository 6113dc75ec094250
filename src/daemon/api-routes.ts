// The local API's handlers (src/api/server.ts routes to them): PU creation and removal,
// status, flows, metrics, policy, revoke and container enrollment, over the daemon's services.

import type { Logger } from 'pino';
import { TesseraError, errorMessage } from '../errors.js';
import type { ApiHandlers, StatusResponse } from '../api/index.js';
import type { WorkerStats } from '../datapath/index.js';
import type { NetCls } from '../rules/index.js';
import type { FlowLog } from './flow-log.js';
import type { HealthService } from './health.js';
import type { Metrics } from './metrics.js';
import type { PolicyService } from './policy-service.js';
import type { PuRegistry } from './pus.js';
import type { RulesStatus } from './sync-loop.js';
import { DEFAULT_POLICY_TEXT } from './policy-source.js';
import type { RevokedFlow } from './revoke.js';

export interface ApiRoutesOptions {
  identity: { host: string; trust: 'psk' | 'ca'; queues: number[]; failOpen: boolean; startedAt: number };
  registry: PuRegistry;
  netcls: Pick<NetCls, 'addPid'>;
  /** Resolves once the PUs' rules are applied; rejects when they could not be. */
  sync(): Promise<void>;
  rules(): RulesStatus;
  workerStats(): WorkerStats[];
  metrics: Metrics;
  flows: FlowLog;
  policy: PolicyService;
  health: HealthService;
  revoke(dryRun: boolean): Promise<RevokedFlow[]>;
  enrollContainer?: ApiHandlers['enrollContainer'];
  learn?: { status(): NonNullable<StatusResponse['learn']>; edges: NonNullable<ApiHandlers['learnEdges']> };
  log: Logger;
  now?: () => number;
}

export function createApiRoutes(o: ApiRoutesOptions): ApiHandlers {
  const { registry, log } = o;
  const now = o.now ?? Date.now;
  return {
    async createPu(req) {
      const pu = await registry.create({ name: req.name ?? `pid ${req.pid}`, kind: 'process', labels: req.labels });
      o.metrics.count('pus_created');
      try {
        // Rules and worker tables in place before the process may send a packet; when they
        // could not be installed the caller (tessera run) must not start its command.
        await o.sync().catch((err: unknown) => {
          throw new TesseraError('TESSERA_ERR_RULES', `the PU's rules could not be installed, so it would run unprotected: ${errorMessage(err).split('\n')[0]}`, { cause: err });
        });
        await o.netcls.addPid(pu.id, req.pid);
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
      if (ok) o.metrics.count('pus_removed');
      return ok;
    },
    listPus: () => registry.all().map((p) => registry.info(p)),
    status(): StatusResponse {
      const stats = o.workerStats();
      const sum = (f: (s: WorkerStats) => number): number => stats.reduce((a, s) => a + f(s), 0);
      return {
        host: o.identity.host,
        trust: o.identity.trust,
        policy: o.policy.status(),
        health: o.health.health(),
        queues: o.identity.queues,
        failOpen: o.identity.failOpen,
        rules: o.rules(),
        pus: registry.all().map((p) => registry.info(p)),
        counters: {
          ...o.metrics.counts(),
          uptime_seconds: Math.round((now() - o.identity.startedAt) / 1000),
          packets: sum((s) => s.queue.received),
          queue_enobufs: sum((s) => s.queue.enobufs),
          handler_errors: sum((s) => s.errors),
        },
        ...(o.learn ? { learn: o.learn.status() } : {}),
      };
    },
    recentFlows: (q) => o.flows.recent(q),
    subscribeFlows: (fn) => o.flows.subscribe(fn),
    metrics: () => o.metrics.text(),
    policy: () => ({ name: o.policy.current().name, text: o.policy.current().text ?? DEFAULT_POLICY_TEXT }),
    revoke: (dryRun) => o.revoke(dryRun),
    ...(o.enrollContainer ? { enrollContainer: o.enrollContainer } : {}),
    ...(o.learn ? { learnEdges: o.learn.edges } : {}),
  };
}
