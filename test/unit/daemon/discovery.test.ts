import { describe, expect, it } from 'vitest';
import { createListenerDiscovery, portsByCgroup, type DiscoveredPu, type Listener } from '../../../src/daemon/discovery.js';
import { parseSsListeners } from '../../../src/monitors/process/listeners.js';

interface Pu extends DiscoveredPu {
  pids: number[];
  ports: number[];
}
const pu = (id: string, o: Partial<Pu> = {}): Pu => ({ id, kind: 'process', createdAt: new Date(0), pids: [], ports: [], cgroup2: { cgroup: `tessera/${id}` }, ...o });

function harness(pus: Pu[], o: { listeners?: Listener[] | null; procs?: Record<string, number[]>; byPid?: Record<number, number[]>; batch?: number } = {}) {
  const calls = { pidsOf: [] as string[], portsOfPids: 0, listeners: 0, ended: [] as string[], changes: 0 };
  const d = createListenerDiscovery<Pu>(
    {
      pus: () => pus,
      async pidsOf(p) {
        calls.pidsOf.push(p.id);
        return o.procs?.[p.id] ?? [1];
      },
      async listeners() {
        calls.listeners++;
        return o.listeners === undefined ? [] : o.listeners;
      },
      async portsOfPids(pids) {
        calls.portsOfPids++;
        return pids.flatMap((p) => o.byPid?.[p] ?? []);
      },
      setObserved(p, pids, ports) {
        p.pids = pids;
        if (ports.join() !== p.ports.join()) calls.changes++;
        p.ports = ports;
      },
      async end(p) {
        calls.ended.push(p.id);
        pus.splice(pus.indexOf(p), 1);
      },
      now: () => 10_000,
    },
    { batch: o.batch ?? 64, graceMs: 2000 },
  );
  return { d, calls };
}

describe('listener discovery (issue 17)', () => {
  it('gives each PU the ports of sockets in its cgroup v2 or below, from one dump', async () => {
    const pus = [pu('a'), pu('b'), pu('c', { cgroup2: undefined }), pu('n', { netns: '/proc/9/ns/net', kind: 'container' })];
    const listeners: Listener[] = [
      { port: 80, cgroup: '/tessera/a' },
      { port: 81, cgroup: '/tessera/a/exec-1' },
      { port: 22, cgroup: '/system.slice/sshd.service' },
      { port: 90, cgroup: '/tessera/ab' },
      { port: 443, cgroup: '/tessera/b' },
    ];
    expect([...portsByCgroup(pus, listeners)].map(([p, ports]) => [p.id, ports])).toEqual([
      ['a', [80, 81]],
      ['b', [443]],
    ]);
    const { d, calls } = harness(pus, { listeners, procs: { c: [7] }, byPid: { 7: [5432] } });
    await d.tick();
    expect(pus.map((p) => [p.id, p.ports])).toEqual([
      ['a', [80, 81]],
      ['b', [443]],
      ['c', [5432]], // no cgroup v2: its descriptors are read
      ['n', []], // its own namespace: not this host's ports
    ]);
    expect(calls.listeners).toBe(1);
    expect(calls.portsOfPids).toBe(1);
  });

  it('reads the process lists of at most `batch` PUs a tick, round robin, and ends a process PU with none left', async () => {
    const pus = Array.from({ length: 1000 }, (_, i) => pu(`p${i}`));
    const { d, calls } = harness(pus, { procs: { p5: [], p150: [] }, batch: 100 });
    await d.tick();
    expect(calls.pidsOf).toHaveLength(100);
    expect(calls.ended).toEqual(['p5']);
    await d.tick();
    expect(calls.pidsOf).toHaveLength(200);
    expect(calls.ended).toEqual(['p5', 'p150']);
    // Ten more ticks: every PU was read, none twice more than the rounds allow.
    for (let i = 0; i < 10; i++) await d.tick();
    expect(new Set(calls.pidsOf).size).toBe(1000);
    expect(calls.listeners).toBe(12);
    expect(calls.portsOfPids).toBe(0); // every PU has a cgroup v2: no descriptor read at all
  });

  it('does not end a process PU in its grace period, nor a container PU', async () => {
    const young = pu('y', { createdAt: new Date(9_000) });
    const ctr = pu('k', { kind: 'container' });
    const { d, calls } = harness([young, ctr], { procs: { y: [], k: [] } });
    await d.tick();
    expect(calls.ended).toEqual([]);
  });

  it('changes the registry only when ports change (each change is a rule transaction)', async () => {
    const pus = [pu('a', { ports: [80] })];
    const { d, calls } = harness(pus, { listeners: [{ port: 80, cgroup: '/tessera/a' }] });
    await d.tick();
    await d.tick();
    expect(calls.changes).toBe(0);
  });

  it('without the cgroup dump, reads descriptors for the batch only and keeps the rest', async () => {
    const pus = [pu('a', { ports: [1] }), pu('b', { ports: [2] })];
    const { d, calls } = harness(pus, { listeners: null, procs: { a: [3], b: [4] }, byPid: { 3: [80], 4: [81] }, batch: 1 });
    await d.tick();
    expect(pus.map((p) => p.ports)).toEqual([[80], [2]]);
    expect(calls.portsOfPids).toBe(1);
  });

  it('coalesces overlapping ticks into one round', async () => {
    const { d, calls } = harness([pu('a')]);
    await Promise.all([d.tick(), d.tick(), d.tick()]);
    expect(calls.listeners).toBe(1);
  });
});

describe('parseSsListeners', () => {
  it('reads port and cgroup of IPv4 and IPv6 listeners; null when ss prints no cgroup at all', () => {
    const text = [
      'LISTEN 0      128    0.0.0.0:2024 0.0.0.0:* cgroup:/',
      'LISTEN 0      4096   [::]:8080    [::]:*    cgroup:/tessera/proc-1a2b',
      'LISTEN 0      4096   *:443        *:*       cgroup:/system.slice/docker-abc.scope',
      '',
    ].join('\n');
    expect(parseSsListeners(text)).toEqual([
      { port: 2024, cgroup: '/' },
      { port: 8080, cgroup: '/tessera/proc-1a2b' },
      { port: 443, cgroup: '/system.slice/docker-abc.scope' },
    ]);
    expect(parseSsListeners('LISTEN 0 128 0.0.0.0:22 0.0.0.0:*\n')).toBeNull();
    expect(parseSsListeners('')).toEqual([]);
  });
});
