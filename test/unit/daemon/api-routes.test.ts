// The API handlers over the daemon's services: a PU whose rules cannot be installed is refused
// and removed (its command must not run unprotected); status carries health and policy.
import { describe, expect, it } from 'vitest';
import { createApiRoutes } from '../../../src/daemon/api-routes.js';
import { createHealth } from '../../../src/daemon/health.js';
import { createMetrics } from '../../../src/daemon/metrics.js';
import { createFlowLog } from '../../../src/daemon/flow-log.js';
import { createPolicyService } from '../../../src/daemon/policy-service.js';
import { TesseraError } from '../../../src/errors.js';
import { capturingLogger, fakeNetCls, registryOver } from './fakes.js';

function setup(syncFails: () => boolean) {
  const n = fakeNetCls();
  const registry = registryOver(n.netcls);
  const l = capturingLogger();
  const health = createHealth(() => new Date('2026-01-01T00:00:00Z'));
  const metrics = createMetrics({ workerStats: () => [], puCount: () => registry.all().length, ready: () => false });
  const routes = createApiRoutes({
    identity: { host: 'host-t', trust: 'psk', queues: [0], failOpen: false, startedAt: 0 },
    registry,
    netcls: n.netcls,
    sync: async () => {
      if (syncFails()) throw new TesseraError('TESSERA_ERR_RULES', 'iptables-restore failed\nline 2');
    },
    rules: () => ({ ok: true, since: 'x' }),
    workerStats: () => [],
    metrics,
    flows: createFlowLog({ size: 10, refusalLinesPerSecond: 1, log: l.log, count: metrics.count }),
    policy: createPolicyService({ apply: () => {}, log: l.log, health, count: metrics.count }),
    health,
    revoke: async () => [],
    log: l.log,
    now: () => 61_000,
  });
  return { routes, registry, n, metrics, health };
}

describe('API routes', () => {
  it('creates a process PU: cgroup, pid moved in after its rules, counted', async () => {
    const t = setup(() => false);
    const info = await t.routes.createPu({ labels: ['app=web'], pid: 4242 });
    expect(info).toMatchObject({ labels: ['app=web'], pids: [4242], name: 'pid 4242' });
    expect(t.n.groups.get(info.id)!.pids).toEqual([4242]);
    expect(t.metrics.counts().pus_created).toBe(1);
    expect(await t.routes.deletePu(info.id)).toBe(true);
    expect(await t.routes.deletePu(info.id)).toBe(false);
    expect(t.metrics.counts().pus_removed).toBe(1);
  });

  it('refuses a PU whose rules could not be installed, removes it, and never moves the pid in', async () => {
    const t = setup(() => true);
    await expect(t.routes.createPu({ labels: ['app=web'], pid: 4242 })).rejects.toMatchObject({ code: 'TESSERA_ERR_RULES', message: expect.stringMatching(/would run unprotected: iptables-restore failed$/) });
    expect(t.registry.all()).toEqual([]);
    expect([...t.n.groups.values()].flatMap((g) => g.pids)).toEqual([]);
  });

  it('status carries health, the policy, the counters and uptime', async () => {
    const t = setup(() => false);
    t.health.degrade('rules', 'applying host rules failed');
    const s = t.routes.status();
    expect(s.health).toEqual({ state: 'degraded', problems: [{ component: 'rules', message: 'applying host rules failed', since: '2026-01-01T00:00:00.000Z' }] });
    expect(s.policy).toMatchObject({ source: 'built-in', revision: 'default', warnings: [] });
    expect(s.counters).toMatchObject({ pus_created: 0, uptime_seconds: 61, packets: 0 });
    expect(await t.routes.metrics()).toMatch(/^tessera_pus 0$/m);
  });
});
