// The health service: what is wrong now (status `health`), and whether the daemon is ready
// to protect PUs (/readyz). Components report; nothing here decides how to recover. A
// problem stays until its component clears it (cilium's reconciler reports Degraded the
// same way instead of only logging a retry).

import type { StatusResponse } from '../api/index.js';

export type Health = StatusResponse['health'];
/** What /readyz waits for: rules applied, workers bound, policy loaded. */
export type Readiness = 'rules' | 'workers' | 'policy';
const READINESS_REASON: Record<Readiness, string> = {
  rules: 'host rules not applied',
  workers: 'datapath workers not bound to their queues',
  policy: 'no policy loaded',
};

/** What health needs of the datapath pool: its worker events (src/datapath/pool.ts). */
export interface WorkerEvents {
  on(event: 'worker', fn: (queueNum: number, bound: boolean) => void): unknown;
}

export interface HealthService {
  /** Report a problem of `component`; its `since` is kept while the problem persists. */
  degrade(component: string, message: string): void;
  /** The component is fine again; returns whether it had a problem. */
  recover(component: string): boolean;
  health(): Health;
  setReady(what: Readiness, ok: boolean): void;
  /**
   * A datapath worker died (false) or bound its queue again (true): while one is down the
   * daemon is not ready and health names its queue (its handshakes are dropped, or bypass
   * with --fail-open, until the restart binds it).
   */
  setWorker(queueNum: number, bound: boolean): void;
  /** Ready, or the reasons it is not (short, for /readyz). */
  readiness(): { ready: boolean; reasons: string[] };
}

export function createHealth(now: () => Date = () => new Date()): HealthService {
  const problems = new Map<string, { component: string; message: string; since: string }>();
  const ready: Record<Readiness, boolean> = { rules: false, workers: false, policy: false };
  /** Queues whose worker died after binding, until its restart binds again. */
  const down = new Set<number>();
  const service: HealthService = {
    degrade(component, message) {
      const since = problems.get(component)?.since ?? now().toISOString();
      problems.set(component, { component, message, since });
    },
    recover: (component) => problems.delete(component),
    health: () => ({ state: problems.size ? 'degraded' : 'ok', problems: [...problems.values()].map((p) => ({ ...p })) }),
    setReady(what, ok) {
      ready[what] = ok;
    },
    setWorker(queueNum, bound) {
      const component = `datapath-queue-${queueNum}`;
      if (bound) {
        down.delete(queueNum);
        service.recover(component);
        return;
      }
      down.add(queueNum);
      service.degrade(component, `the datapath worker of queue ${queueNum} died and is restarting: the queue's handshakes are dropped (or bypass it with --fail-open) until it is bound again`);
    },
    readiness() {
      const reasons = (Object.keys(ready) as Readiness[]).filter((k) => !ready[k]).map((k) => READINESS_REASON[k]);
      if (ready.workers && down.size > 0) reasons.push(`datapath worker restarting: queue ${[...down].sort((a, b) => a - b).join(', ')} not bound`);
      return { ready: reasons.length === 0, reasons };
    },
  };
  return service;
}

/** Health follows the pool's workers: one that died is a problem until its restart binds its queue. */
export function followWorkers(health: HealthService, pool: WorkerEvents): void {
  pool.on('worker', (queueNum, bound) => health.setWorker(queueNum, bound));
}
