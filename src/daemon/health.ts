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

export interface HealthService {
  /** Report a problem of `component`; its `since` is kept while the problem persists. */
  degrade(component: string, message: string): void;
  /** The component is fine again; returns whether it had a problem. */
  recover(component: string): boolean;
  health(): Health;
  setReady(what: Readiness, ok: boolean): void;
  /** Ready, or the reasons it is not (short, for /readyz). */
  readiness(): { ready: boolean; reasons: string[] };
}

export function createHealth(now: () => Date = () => new Date()): HealthService {
  const problems = new Map<string, { component: string; message: string; since: string }>();
  const ready: Record<Readiness, boolean> = { rules: false, workers: false, policy: false };
  return {
    degrade(component, message) {
      const since = problems.get(component)?.since ?? now().toISOString();
      problems.set(component, { component, message, since });
    },
    recover: (component) => problems.delete(component),
    health: () => ({ state: problems.size ? 'degraded' : 'ok', problems: [...problems.values()].map((p) => ({ ...p })) }),
    setReady(what, ok) {
      ready[what] = ok;
    },
    readiness() {
      const reasons = (Object.keys(ready) as Readiness[]).filter((k) => !ready[k]).map((k) => READINESS_REASON[k]);
      return { ready: reasons.length === 0, reasons };
    },
  };
}
