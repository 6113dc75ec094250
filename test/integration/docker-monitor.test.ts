// The Docker monitor against a real dockerd (scripts/docker-setup.sh starts one in its own
// network namespace): resync of running containers, events in order per container, updates on
// pause and network connect, restarts, and the facts the daemon builds on (PID 1, container IP,
// the container's net_cls cgroup that `docker exec` processes join). Every container and
// network made here is removed by ID in afterAll.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot } from '../../scripts/lib/netns.js';
import { createDockerMonitor, type DockerMonitor, type DockerPu, type DockerPuStop } from '../../src/monitors/docker/index.js';
import { skipBecause } from '../helpers/skip.js';

const DOCKER = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
const IMAGE = 'tessera/busybox:local';
const dockerAvailable = isRoot && spawnSync(DOCKER, ['info'], { timeout: 15_000, stdio: 'ignore' }).status === 0;

function docker(...args: string[]): string {
  return execFileSync(DOCKER, args, { encoding: 'utf8', timeout: 60_000 }).trim();
}

skipBecause(!isRoot, 'docker monitor integration (needs root)', 'integration tests need root: run as root');

skipBecause(isRoot && !dockerAvailable, 'docker monitor integration (needs dockerd)', 'dockerd not running: run scripts/docker-setup.sh');

type Ev = { kind: 'start'; pu: DockerPu } | { kind: 'update'; pu: DockerPu } | { kind: 'stop'; stop: DockerPuStop };

describe.runIf(dockerAvailable)('docker monitor with a real engine', () => {
  const suffix = randomBytes(3).toString('hex');
  const ids: string[] = [];
  const networks: string[] = [];
  const events: Ev[] = [];
  let monitor: DockerMonitor;
  let hostId: string;
  let bridgeId: string;

  function run(name: string, ...args: string[]): string {
    const id = docker('run', '-d', '--name', `tessera-it-${name}-${suffix}`, ...args);
    ids.push(id);
    return id;
  }

  function eventsOf(id: string): string[] {
    return events
      .filter((e) => (e.kind === 'stop' ? e.stop.id : e.pu.id) === id)
      .map((e) => (e.kind === 'stop' ? `stop:${e.stop.reason}` : e.kind));
  }

  async function waitFor(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; events: ${JSON.stringify(events.map((e) => [e.kind, e.kind === 'stop' ? e.stop.id.slice(0, 12) : e.pu.id.slice(0, 12)]))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  beforeAll(async () => {
    // Idempotent: builds the image only when it is missing.
    execFileSync('bash', ['scripts/docker-image.sh'], { stdio: 'inherit', timeout: 120_000 });
    // Two containers exist before the monitor starts: the resync must find them.
    hostId = run('host', '--network', 'host', '-l', 'app=nginx', IMAGE, 'httpd', '-f', '-p', '127.0.0.1:18731', '-h', '/var/www');
    bridgeId = run('bridge', '-l', 'app=web', IMAGE, 'httpd', '-f', '-p', '8080', '-h', '/var/www');
    monitor = createDockerMonitor({ socketPath: '/var/run/docker.sock' });
    monitor.on('pu-start', (pu) => events.push({ kind: 'start', pu }));
    monitor.on('pu-update', (pu) => events.push({ kind: 'update', pu }));
    monitor.on('pu-stop', (stop) => events.push({ kind: 'stop', stop }));
    await monitor.start();
  });

  afterAll(async () => {
    try {
      await monitor?.stop();
    } finally {
      if (ids.length) spawnSync(DOCKER, ['rm', '-f', ...ids], { stdio: 'ignore', timeout: 60_000 });
      for (const n of networks) spawnSync(DOCKER, ['network', 'rm', n], { stdio: 'ignore', timeout: 30_000 });
    }
  });

  it('resync reports the host-network container with its labels, PID 1, cgroup and posture', () => {
    const pu = monitor.containers().find((p) => p.id === hostId);
    expect(pu, 'host container found by resync').toBeDefined();
    expect(eventsOf(hostId)).toEqual(['start']);
    expect(pu!.networkMode).toBe('host');
    expect(pu!.name).toBe(`tessera-it-host-${suffix}`);
    expect(pu!.labels).toEqual(['app=nginx', 'org.tessera.image=busybox']);
    expect(pu!.systemLabels).toEqual([`@sys:image=${IMAGE}`, `@sys:name=tessera-it-host-${suffix}`, '@sys:network=host']);
    expect(pu!.pid).toBe(Number(docker('inspect', '-f', '{{.State.Pid}}', hostId)));
    expect(readFileSync(`/proc/${pu!.pid}/comm`, 'utf8').trim()).toBe('httpd');
    expect(pu!.ip).toBeUndefined();
    expect(pu!.posture.map((p) => p.flag)).toEqual(['host-network', 'root-user', 'writable-rootfs']);
    // cgroup v1 with the cgroupfs driver: the container's own net_cls cgroup
    if (pu!.netClsCgroup !== undefined) expect(pu!.netClsCgroup).toContain(hostId);
  });

  it('resync reports the bridge container with its IP and network namespace', () => {
    const pu = monitor.containers().find((p) => p.id === bridgeId)!;
    expect(pu).toBeDefined();
    expect(pu.networkMode).toBe('bridge');
    expect(pu.ip).toBe(docker('inspect', '-f', '{{.NetworkSettings.IPAddress}}', bridgeId));
    expect(pu.ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(pu.labels).toContain('app=web');
    expect(pu.systemLabels).toContain('@sys:network=bridge');
    expect(pu.posture.map((p) => p.flag)).not.toContain('host-network');
    // The netns file is what a queue consumer enters (setns) to intercept inside the container.
    expect(existsSync(pu.netnsPath!)).toBe(true);
    // httpd listens on 8080 ([::]:8080, so tcp6) inside its own netns, seen through its PID
    const tcp = ['tcp', 'tcp6'].map((f) => readFileSync(`/proc/${pu.pid}/net/${f}`, 'utf8')).join('\n');
    expect(tcp).toMatch(/:1F90 0+:0000 0A /);
  });

  it('docker exec processes join the container\'s net_cls cgroup, not PID 1\'s current one', () => {
    const pu = monitor.containers().find((p) => p.id === hostId)!;
    if (pu.netClsCgroup === undefined) return expect(existsSync('/sys/fs/cgroup/net_cls')).toBe(false);
    docker('exec', '-d', hostId, 'sleep', '37');
    let execPid = 0;
    for (let i = 0; i < 50 && !execPid; i++) {
      const out = spawnSync('pgrep', ['-f', '^sleep 37$'], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean).map(Number);
      execPid = out.find((p) => readFileSync(`/proc/${p}/cgroup`, 'utf8').includes(hostId)) ?? 0;
      if (!execPid) spawnSync('sleep', ['0.1']);
    }
    expect(execPid).toBeGreaterThan(0);
    const line = readFileSync(`/proc/${execPid}/cgroup`, 'utf8').split('\n').find((l) => l.split(':')[1]?.split(',').includes('net_cls'));
    expect(line?.split(':')[2]).toBe(pu.netClsCgroup);
  });

  it('a container started later is reported; stop and remove give one pu-stop, after the start', async () => {
    const id = run('late', '-l', 'app=late', IMAGE, 'sleep', '300');
    await waitFor('pu-start of the late container', () => eventsOf(id).includes('start'));
    const pu = monitor.containers().find((p) => p.id === id)!;
    expect(pu.labels).toContain('app=late');
    expect(pu.pid).toBe(Number(docker('inspect', '-f', '{{.State.Pid}}', id)));
    docker('stop', '-t', '1', id);
    await waitFor('pu-stop of the late container', () => eventsOf(id).some((e) => e.startsWith('stop')));
    docker('rm', id);
    await new Promise((r) => setTimeout(r, 500)); // give a destroy event time to (not) produce a second stop
    expect(eventsOf(id)).toEqual(['start', 'stop:stopped']);
    expect(monitor.containers().some((p) => p.id === id)).toBe(false);
  });

  it('pause and unpause are updates of the same PU', async () => {
    const before = events.length;
    docker('pause', bridgeId);
    await waitFor('paused update', () => events.slice(before).some((e) => e.kind === 'update' && e.pu.id === bridgeId && e.pu.paused));
    docker('unpause', bridgeId);
    await waitFor('unpaused update', () => events.slice(before).filter((e) => e.kind === 'update' && e.pu.id === bridgeId).length === 2);
    const ups = events.slice(before).filter((e): e is Extract<Ev, { kind: 'update' }> => e.kind === 'update' && e.pu.id === bridgeId);
    expect(ups.map((e) => e.pu.paused)).toEqual([true, false]);
    expect(events.slice(before).filter((e) => e.kind !== 'update' && (e.kind === 'stop' ? e.stop.id : e.pu.id) === bridgeId)).toEqual([]);
  });

  it('network connect and disconnect update the container\'s addresses', async () => {
    const octet = 202 + (randomBytes(1)[0]! % 48);
    const net = `tessera-it-net-${suffix}`;
    docker('network', 'create', '--subnet', `10.213.${octet}.0/24`, net);
    networks.push(net);
    const before = events.length;
    docker('network', 'connect', net, bridgeId);
    await waitFor('update with the new address', () =>
      monitor.containers().find((p) => p.id === bridgeId)!.addresses.some((a) => a.network === net),
    );
    const pu = monitor.containers().find((p) => p.id === bridgeId)!;
    expect(pu.addresses.find((a) => a.network === net)!.ip).toMatch(new RegExp(`^10\\.213\\.${octet}\\.\\d+$`));
    expect(pu.ip).toBe(pu.addresses.find((a) => a.network === 'bridge')!.ip); // the primary network's IP stays
    docker('network', 'disconnect', net, bridgeId);
    await waitFor('update without it', () => !monitor.containers().find((p) => p.id === bridgeId)!.addresses.some((a) => a.network === net));
    expect(events.slice(before).every((e) => e.kind === 'update')).toBe(true);
  });

  it('a restart is a stop then a start with a new PID 1', async () => {
    const oldPid = monitor.containers().find((p) => p.id === bridgeId)!.pid;
    const before = eventsOf(bridgeId).length;
    docker('restart', '-t', '1', bridgeId);
    await waitFor('restart seen', () => {
      const pu = monitor.containers().find((p) => p.id === bridgeId);
      return pu !== undefined && pu.pid !== oldPid && eventsOf(bridgeId).slice(before).includes('start');
    });
    const seq = eventsOf(bridgeId).slice(before).filter((e) => e !== 'update');
    expect(seq[0]).toMatch(/^stop:(stopped|restarted)$/);
    expect(seq[seq.length - 1]).toBe('start');
    expect(monitor.containers().find((p) => p.id === bridgeId)!.pid).toBe(Number(docker('inspect', '-f', '{{.State.Pid}}', bridgeId)));
  });
});
