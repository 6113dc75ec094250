// What `tessera status` reports as a PU's ports: only those whose queue rules are installed.
// A client that waits for a port there (the demo, the benchmark, an operator's script) must
// not reach it in the window between the port scan seeing it and the rule sync. Driven
// through the real applier (sync-loop.ts) with a fake reconciler.
import { describe, expect, it } from 'vitest';
import { hostRulesApplier } from '../../../src/daemon/sync-loop.js';
import type { Reconciler, Ruleset } from '../../../src/rules/index.js';
import { fakeNetCls, registryOver } from './fakes.js';

const queue = { num: 0, count: 1, bypass: false };

function setup(fail: () => boolean) {
  let changes = 0;
  const registry = registryOver(fakeNetCls().netcls, () => changes++);
  const applied: Ruleset[] = [];
  const reconciler = {
    async apply(r: Ruleset) {
      // The scan may change ports while the transaction runs: what counts is what was applied.
      await null;
      if (fail()) throw new Error('iptables-restore: line 3 failed');
      applied.push(r);
      return { changed: true, families: [] };
    },
  } as unknown as Pick<Reconciler, 'apply'>;
  return { registry, applied, apply: hostRulesApplier(() => registry.all(), reconciler, queue), changes: () => changes };
}

describe('PU registry: reported ports', () => {
  it('shows a scanned port only once a rule transaction with it has committed', async () => {
    const s = setup(() => false);
    const pu = await s.registry.create({ name: 'web', kind: 'process', labels: ['app=web'] });
    const before = s.changes();
    expect(s.registry.setObserved(pu, [1234], [8080])).toBe(true);
    expect(s.changes()).toBe(before + 1); // the scan's change asks for a rule sync...
    expect(s.registry.info(pu).ports).toEqual([]); // ...and until it is applied, status shows no port
    expect(await s.apply()).toBe(true);
    expect(s.registry.info(pu).ports).toEqual([8080]);
    expect(JSON.stringify(s.applied.at(-1))).toContain('8080'); // the port was in the ruleset
  });

  it('a failed transaction shows no new port; the next success shows what it applied, not later scans', async () => {
    let failing = true;
    const s = setup(() => failing);
    const pu = await s.registry.create({ name: 'web', kind: 'process', labels: ['app=web'] });
    s.registry.setObserved(pu, [1234], [8080]);
    await expect(s.apply()).rejects.toThrow(/line 3/);
    expect(s.registry.info(pu).ports).toEqual([]);
    failing = false;
    const applying = s.apply();
    s.registry.setObserved(pu, [1234], [8080, 9090]); // seen while the transaction runs
    await applying;
    expect(s.registry.info(pu).ports).toEqual([8080]);
  });

  it('leaves a container with its own namespace out of the host rules (its ports are not this host\'s)', async () => {
    const s = setup(() => false);
    const pu = await s.registry.create({ name: 'db', kind: 'container', labels: ['app=db'], container: { adopt: false, netns: '/proc/1/ns/net' } });
    s.registry.setObserved(pu, [99], [5432]);
    await s.apply();
    expect(JSON.stringify(s.applied.at(-1))).not.toContain('5432');
    expect(s.registry.info(pu).ports).toEqual([]);
  });
});

describe('PU registry: changes for the workers', () => {
  const ids = (d: { set: { id: string }[] }) => d.set.map((p) => p.id);

  it('names only what changed since the last call: added, relabelled, rotated, removed, and the port map when a port changed', async () => {
    const registry = registryOver(fakeNetCls().netcls, () => {});
    const a = await registry.create({ name: 'a', kind: 'process', labels: [] });
    const b = await registry.create({ name: 'b', kind: 'process', labels: [] });
    expect(registry.snapshot().pus).toHaveLength(2); // the snapshot consumes the changes so far
    expect(registry.changes()).toEqual({ removed: [], set: [] });
    const c = await registry.create({ name: 'c', kind: 'process', labels: [] });
    expect(ids(registry.changes())).toEqual([c.id]);
    registry.setObserved(b, [1], [8080]);
    expect(registry.changes()).toEqual({ removed: [], set: [], ports: [[8080, b.index]] });
    registry.setObserved(b, [1], [8080]); // the same ports: no change
    expect(registry.changes()).toEqual({ removed: [], set: [] });
    await registry.relabel(a, { name: 'a', labels: ['app=web'], systemLabels: [] });
    const d = registry.changes();
    expect(ids(d)).toEqual([a.id]);
    expect(d.set[0]!.labels).toEqual(['app=web']);
    await registry.remove(b.id);
    expect(registry.changes()).toEqual({ removed: [b.index], set: [], ports: [] });
  });

  it('an index freed and taken again in one batch is removed, then set to its new PU', async () => {
    const registry = registryOver(fakeNetCls().netcls, () => {});
    const a = await registry.create({ name: 'a', kind: 'process', labels: [] });
    registry.changes();
    await registry.remove(a.id);
    const n = await registry.create({ name: 'n', kind: 'process', labels: [], index: a.index });
    expect(n.index).toBe(a.index);
    expect(registry.changes()).toMatchObject({ removed: [a.index], set: [{ id: n.id, index: a.index }] });
    // Created and removed in one batch: only its index is removed.
    const gone = await registry.create({ name: 'g', kind: 'process', labels: [] });
    await registry.remove(gone.id);
    expect(registry.changes()).toEqual({ removed: [gone.index], set: [] });
  });
});
