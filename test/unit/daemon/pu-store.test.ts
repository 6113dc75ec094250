// Re-adoption at start: process PUs of an earlier run whose cgroups still hold processes come
// back with their ids, labels, index and ports; what cannot be read or re-adopted is reported
// and never stops the daemon; orphaned cgroups are removed so no stale classid is inherited.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPuStore } from '../../../src/daemon/pu-store.js';
import { classidFor } from '../../../src/rules/index.js';
import type { SavedPu } from '../../../src/daemon/state.js';
import { capturingLogger, fakeNetCls, registryOver } from './fakes.js';

describe('PU store', () => {
  let dir: string;
  let path: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-pustore-'));
    path = join(dir, 'pus.json');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function store(cgroups: Parameters<typeof fakeNetCls>[0]) {
    const n = fakeNetCls(cgroups);
    const registry = registryOver(n.netcls);
    const l = capturingLogger();
    const warned: string[] = [];
    const s = createPuStore({ path, registry, netcls: n.netcls, log: l.log, warn: (_k, _o, m) => void warned.push(m) });
    return { ...n, registry, s, l, warned };
  }
  const web: SavedPu = { id: 'proc-aaaa0001', kind: 'process', name: 'httpd', labels: ['app=web'], index: 3, ports: [80] };

  it('re-adopts a running process PU with its index and ports, and removes orphaned cgroups', async () => {
    writeFileSync(path, JSON.stringify([web, { ...web, id: 'proc-gone0002', index: 4 }]));
    const t = store({ 'proc-aaaa0001': { pids: [100] }, 'proc-gone0002': { pids: [] }, 'proc-orphan03': { pids: [] } });
    const containers = await t.s.readopt();
    expect(containers.size).toBe(0);
    const pu = t.registry.get(web.id)!;
    expect(pu).toMatchObject({ index: 3, ports: [80], pids: [100], labels: ['app=web'] });
    expect(t.registry.all()).toHaveLength(1); // the PU with no process left is not re-adopted
    expect(t.removed.sort()).toEqual(['proc-gone0002', 'proc-orphan03']);
  });

  it('a corrupt state file is reported once, re-adopts nothing, and orphaned cgroups still go', async () => {
    writeFileSync(path, '{"truncated": [');
    const t = store({ 'proc-aaaa0001': { pids: [] } });
    expect((await t.s.readopt()).size).toBe(0);
    expect(t.registry.all()).toEqual([]);
    expect(t.l.at('warn').map((l) => l.msg)).toEqual(['PU state: ignoring what cannot be read']);
    expect(String(t.l.at('warn')[0]!.problem)).toMatch(/not readable JSON/);
    expect(t.removed).toEqual(['proc-aaaa0001']);
  });

  it('a cgroup that still has processes but no state entry stays, with a warning (cleanup removes it)', async () => {
    writeFileSync(path, 'not json');
    const t = store({ 'proc-stray0001': { pids: [77] } });
    await t.s.readopt();
    expect(t.removed).toEqual([]);
    expect(t.l.at('warn').some((l) => /orphaned cgroup still has processes/.test(l.msg))).toBe(true);
  });

  it('a wanted index already taken gets a free one, and the cgroup is re-tagged with its classid', async () => {
    const other: SavedPu = { ...web, id: 'proc-bbbb0002', name: 'api', labels: ['app=api'], ports: [8080] };
    writeFileSync(path, JSON.stringify([web, other])); // both saved with index 3 (a hand-edited or damaged file)
    const t = store({ 'proc-aaaa0001': { pids: [100] }, 'proc-bbbb0002': { pids: [200] } });
    await t.s.readopt();
    const a = t.registry.get(web.id)!;
    const b = t.registry.get(other.id)!;
    expect(a.index).toBe(3);
    expect(b.index).not.toBe(3);
    expect(b.classid).toBe(classidFor(b.index));
    expect(t.groups.get(other.id)!.classid).toBe(b.classid); // its processes carry the new classid
    expect(b.ports).toEqual([8080]);
    expect(t.l.at('warn').some((l) => l.pu === other.id && l.wanted === 3)).toBe(true);
  });

  it('returns saved container entries for the Docker resync, and saves PUs without system labels', async () => {
    const ctr: SavedPu = { id: 'ctr-0123456789ab', kind: 'container', name: 'nginx', labels: [], index: 7, ports: [443] };
    writeFileSync(path, JSON.stringify([web, ctr]));
    const t = store({ 'proc-aaaa0001': { pids: [100] } });
    expect([...(await t.s.readopt()).values()]).toEqual([ctr]);
    t.s.save();
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual([{ id: web.id, kind: 'process', name: 'httpd', labels: ['app=web'], index: 3, ports: [80] }]);
  });

  it('a save that cannot write is reported, not thrown', () => {
    const t = store({});
    const s = createPuStore({ path: join(dir, 'missing-dir', 'pus.json'), registry: t.registry, netcls: t.netcls, log: t.l.log, warn: (_k, _o, m) => void t.warned.push(m) });
    s.save();
    expect(t.warned).toEqual(['cannot save PU state']);
  });

  it('saveSoon writes off the event loop, coalesces calls made while a write is in flight, and skips content already written', async () => {
    const t = store({});
    const a = await t.registry.create({ name: 'a', kind: 'process', labels: [] });
    t.s.saveSoon();
    // Two more changes while the first write is in flight: one more write, with both.
    await t.registry.create({ name: 'b', kind: 'process', labels: [] });
    t.s.saveSoon();
    await t.registry.create({ name: 'c', kind: 'process', labels: [] });
    t.s.saveSoon();
    await t.s.flushed();
    const names = () => (JSON.parse(readFileSync(path, 'utf8')) as SavedPu[]).map((p) => p.name);
    expect(names()).toEqual(['a', 'b', 'c']);
    // Nothing changed: nothing is written (the file replaced behind its back stays as it is).
    writeFileSync(path, '[]');
    t.s.saveSoon();
    await t.s.flushed();
    expect(readFileSync(path, 'utf8')).toBe('[]');
    await t.registry.remove(a.id);
    t.s.saveSoon();
    await t.s.flushed();
    expect(names()).toEqual(['b', 'c']);
    expect(t.warned).toEqual([]);
  });

  it('a synchronous save (at stop) is not replaced by an older write still in flight', async () => {
    const t = store({});
    await t.registry.create({ name: 'a', kind: 'process', labels: [] });
    t.s.saveSoon(); // in flight: [a]
    await t.registry.create({ name: 'b', kind: 'process', labels: [] });
    t.s.save(); // [a, b], now
    await t.s.flushed();
    expect((JSON.parse(readFileSync(path, 'utf8')) as SavedPu[]).map((p) => p.name)).toEqual(['a', 'b']);
  });
});
