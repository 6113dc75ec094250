// Listening sockets named by cgroup from the addon's dump of cgroup ids: PU cgroups stat'ed
// once, a PU's sub-cgroup found by one bounded walk and remembered, the host's sockets named
// '' (no PU), and a dump without ids refused (the caller falls back to ss).
import { describe, expect, it } from 'vitest';
import { createCgroupIdResolver, createListenerSources, type CgroupFs } from '../../../src/daemon/listener-sources.js';
import { portsByCgroup, type DiscoveredPu } from '../../../src/daemon/discovery.js';

function fakeFs(dirs: Record<string, number>) {
  const calls = { ino: 0, subdirs: 0 };
  const fs: CgroupFs = {
    ino(path) {
      calls.ino++;
      return dirs[path] ?? null;
    },
    subdirs(path) {
      calls.subdirs++;
      return Object.keys(dirs)
        .filter((d) => d.startsWith(`${path}/`) && !d.slice(path.length + 1).includes('/'))
        .map((d) => d.slice(path.length + 1));
    },
  };
  return { fs, calls };
}

const dump = (...socks: Array<[port: number, id: number]>): Uint32Array => new Uint32Array(socks.flatMap(([port, id], i) => [1000 + i, port, id % 2 ** 32, Math.floor(id / 2 ** 32)]));

describe('listening sockets by cgroup id', () => {
  it('names PU sockets by their cgroup, sub-cgroups by one walk, the host by nothing', () => {
    const { fs, calls } = fakeFs({ 'unified/t/p1': 11, 'unified/t/p2': 12, 'unified/t/p2/child': 13, 'unified/t/p3': 2 ** 33 + 5 });
    const r = createCgroupIdResolver(fs);
    const places = [
      { cgroup: 't/p1', path: 'unified/t/p1' },
      { cgroup: 't/p2', path: 'unified/t/p2' },
      { cgroup: 't/p3', path: 'unified/t/p3' },
    ];
    const got = r.listeners(dump([80, 11], [8080, 13], [22, 1], [443, 2 ** 33 + 5]), places);
    expect(got).toEqual([
      { port: 80, cgroup: '/t/p1' },
      { port: 8080, cgroup: '/t/p2/child' },
      { port: 22, cgroup: '' },
      { port: 443, cgroup: '/t/p3' },
    ]);
    const pus: DiscoveredPu[] = places.map((p, i) => ({ id: `p${i + 1}`, kind: 'process', createdAt: new Date(0), pids: [], ports: [], cgroup2: { cgroup: p.cgroup } }));
    expect([...portsByCgroup(pus, got!)].map(([p, ports]) => [p.id, ports])).toEqual([
      ['p1', [80]],
      ['p2', [8080]],
      ['p3', [443]],
    ]);
    // The next tick: nothing stat'ed or walked again.
    const before = { ...calls };
    r.listeners(dump([80, 11], [8080, 13], [22, 1]), places);
    expect(calls).toEqual(before);
  });

  it('refuses a dump without cgroup ids', () => {
    const r = createCgroupIdResolver(fakeFs({}).fs);
    expect(r.listeners(dump([80, 0]), [])).toBeNull();
  });

  it('falls back to ss --cgroup when the dump has no ids, and stays there', async () => {
    const runs: string[][] = [];
    const runner = { run: async (argv: string[]) => (runs.push(argv), { stdout: 'LISTEN 0 128 0.0.0.0:80 0.0.0.0:* cgroup:/t/p1\n', stderr: '', code: 0 }) };
    const warns: string[] = [];
    const src = createListenerSources(runner, { warn: ((_o: object, m: string) => void warns.push(m)) as never }, () => [], () => dump([80, 0]));
    expect(await src.listeners()).toEqual([{ port: 80, cgroup: '/t/p1' }]);
    expect(await src.listeners()).toEqual([{ port: 80, cgroup: '/t/p1' }]);
    expect(runs).toHaveLength(2);
    expect(warns).toHaveLength(1);
  });

  it('with ids, spawns nothing', async () => {
    const runs: string[][] = [];
    const runner = { run: async (argv: string[]) => (runs.push(argv), { stdout: '', stderr: '', code: 0 }) };
    const src = createListenerSources(runner, { warn: (() => {}) as never }, () => [], () => dump([22, 1]));
    expect(await src.listeners()).toEqual([{ port: 22, cgroup: '' }]);
    expect(runs).toHaveLength(0);
  });
});
