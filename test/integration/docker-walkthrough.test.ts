// The seeds' walkthrough with a real Docker engine (scripts/docker-setup.sh: dockerd in its own
// network namespace `tessera-docker`, which is "the host" here): a tessera daemon with
// --docker runs there; a --net=host web container is protected by its labels; processes and
// containers (host network and bridge) with the same labels authorize each other in both
// directions; others are refused at once; `docker exec` processes count as the container;
// a restarted daemon protects running containers again (a stop keeps their rules and
// classids); nothing of a removed container's PU is left. Every container started here is removed by ID, also on failure.

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { uniquePrefix } from '../../scripts/lib/netns.js';
import { findNetClsMounts } from '../../src/rules/cgroups.js';
import { BRIDGE_ADDR, IMAGE, NETNS, createDockerCluster, docker, dockerAvailable, dockerTeardown, dockerTry, skipWithoutDocker } from '../helpers/docker.js';

skipWithoutDocker('docker walkthrough');

interface PuJson {
  id: string;
  kind: string;
  labels: string[];
  ports: number[];
  pids: number[];
  classid: string;
  posture: Array<{ flag: string; fix: string }>;
}

const puIdOf = (containerId: string): string => `ctr-${containerId.slice(0, 12)}`;

/** The container's own net_cls cgroup directory, from its PID 1 (as the monitor finds it). */
function netClsDirOf(pid: number): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .find((l) => l.split(':')[1]?.split(',').includes('net_cls'));
  const mount = findNetClsMounts(readFileSync('/proc/self/mounts', 'utf8'))[0];
  if (!line || !mount) throw new Error(`no net_cls cgroup for pid ${pid}`);
  return join(mount, line.split(':')[2]!);
}

describe.runIf(dockerAvailable)('docker walkthrough: containers and processes as PUs, on one host and across hosts', () => {
  const suffix = randomBytes(3).toString('hex');
  const port = 18_100 + (randomBytes(2).readUInt16BE(0) % 800);
  const hostPuPort = port + 1000;
  const containers: string[] = [];
  let cluster: Cluster;
  let h: TesseraHost;
  let remote: TesseraHost;
  /** The docker host's address on the segment it shares with `remote`. */
  const DOCKER_SEGMENT_ADDR = '10.213.61.254';
  let dir: string;
  let page: string;
  let web = '';
  let webPid = 0;
  let webClassidFile = '';

  function run(name: string, ...args: string[]): string {
    const id = docker('run', '-d', '--name', `tessera-wt-${name}-${suffix}`, ...args);
    containers.push(id);
    return id;
  }

  async function pus(): Promise<PuJson[]> {
    return (await h.status()).pus as unknown as PuJson[];
  }

  async function puOf(containerId: string): Promise<PuJson | undefined> {
    return (await pus()).find((p) => p.id === puIdOf(containerId));
  }

  /** Rules of a container's own namespace, seen through its PID 1. */
  async function nsRules(containerId: string): Promise<string> {
    const pid = docker('inspect', '-f', '{{.State.Pid}}', containerId);
    const r = await h.exec(['nsenter', `--net=/proc/${pid}/ns/net`, 'iptables-save', '-t', 'mangle'], { timeoutMs: 10_000 });
    return r.stdout;
  }

  /** A bridge container is ready once its PU exists and its namespace has our rules and queue rule. */
  async function waitBridgePu(containerId: string): Promise<PuJson> {
    return waitFor(
      `PU and namespace rules of ${containerId.slice(0, 12)}`,
      async () => {
        const pu = await puOf(containerId);
        return pu && (await nsRules(containerId)).includes('-A TESSERA-PU-IN -j TESSERA-PU-PORT') ? pu : null;
      },
      20_000,
      150,
    );
  }

  const wget = (url: string): string[] => ['timeout', '5', 'wget', '-qO-', url];
  const hostWget = (url: string): string[] => ['timeout', '5', 'busybox', 'wget', '-qO-', url];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-dwt-'));
    // The image carries the user label org.tessera.image=busybox, so a container's user labels
    // are {app=..., org.tessera.image=busybox} and never equal a process's {app=nginx}: the
    // built-in same-labels policy would keep containers and processes apart. This policy says
    // what the walkthrough means: app=nginx talks to app=nginx.
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, 'version: 1\nname: walkthrough\nrules:\n  - id: nginx-to-nginx\n    from: {app: nginx}\n    to: {app: nginx}\n    action: allow\n');
    writeFileSync(join(dir, 'index.html'), 'page of a host process\n');
    const prefix = uniquePrefix('dw');
    // Only the docker host follows the engine (classids, namespace rules, queue numbers).
    cluster = await createDockerCluster({ prefix, hosts: ['remote'], subnet: 61, daemonArgs: ['--policy', policy] });
    h = cluster.host('docker');
    remote = cluster.host('remote');
    // A second host: plug the docker namespace into the remote host's segment (a veth from
    // the topology's switch; deleting the switch namespace deletes both ends).
    const sw = `${prefix}-sw`;
    const must = (argv: string[]): void => void execFileSync(argv[0]!, argv.slice(1), { stdio: 'pipe', timeout: 10_000 });
    must(['ip', '-n', sw, 'link', 'add', 'pdock', 'type', 'veth', 'peer', 'name', `tw${suffix}`, 'netns', NETNS]);
    must(['ip', '-n', sw, 'link', 'set', 'pdock', 'master', 'br0', 'up']);
    must(['ip', '-n', NETNS, 'addr', 'add', `${DOCKER_SEGMENT_ADDR}/24`, 'dev', `tw${suffix}`]);
    must(['ip', '-n', NETNS, 'link', 'set', `tw${suffix}`, 'up']);
  }, 180_000);

  afterAll(() => dockerTeardown({ containers, cluster, dir }), 120_000);

  it('a --net=host web container with -l app=nginx is a PU when docker run returns: labels, posture, classid in its own cgroup, its port', async () => {
    web = run('web', '--net=host', '-l', 'app=nginx', IMAGE, 'httpd', '-f', '-p', String(port), '-h', '/var/www');
    // Enrolled by the runtime shim before it started: listed at once, classid already written.
    const early = await puOf(web);
    expect(early?.labels).toEqual(expect.arrayContaining(['app=nginx', '@sys:network=host']));
    expect(docker('inspect', '-f', '{{.HostConfig.NetworkMode}}', web)).toBe('host');
    page = docker('exec', web, 'cat', '/var/www/index.html') + '\n';
    const pu = await waitFor('web PU listening', async () => {
      const p = await puOf(web);
      return p?.ports.includes(port) ? p : null;
    }, 20_000);
    expect(pu.kind).toBe('container');
    expect(pu.labels).toEqual(expect.arrayContaining(['app=nginx', '@sys:network=host', `@sys:name=tessera-wt-web-${suffix}`]));
    expect(pu.posture.map((p) => p.flag)).toEqual(expect.arrayContaining(['host-network', 'root-user']));
    for (const p of pu.posture) expect(p.fix).toMatch(/--|drop|mount/); // each flag names the option that fixes it
    webPid = Number(docker('inspect', '-f', '{{.State.Pid}}', web));
    webClassidFile = join(netClsDirOf(webPid), 'net_cls.classid');
    expect(webClassidFile).toContain(web);
    expect(Number(readFileSync(webClassidFile, 'utf8').trim())).toBe(Number(pu.classid));
    // tessera status (text) shows the posture flags with their fixes
    const text = await h.tessera(['status']);
    expect(text.stdout).toContain(puIdOf(web));
    expect(text.stdout).toMatch(/risk: +host-network \(fix: .*--network/);
  });

  it('an unprotected wget from the host to 127.0.0.1:PORT is refused at once (and was since the container started: docker-enroll.test.ts)', async () => {
    const r = await h.exec(hostWget(`http://127.0.0.1:${port}/`), { timeoutMs: 10_000 });
    // At once: a reset ("refused"), not a drop that timeout(1) would end with status 124.
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBe(124);
    expect(r.stderr).toMatch(/refused/i);
    const flows = await h.flows();
    expect(flows.some((f) => f.verdict === 'reject' && f.reason === 'missing-token' && f.direction === 'ingress')).toBe(true);
  });

  it('a bridge container with -l app=nginx whose first instruction is wget gets the page through the bridge address', async () => {
    // As users run it: the connection is the container's first instruction.
    const name = `tessera-wt-first-${suffix}`;
    const r = dockerTry('run', '--rm', '--name', name, '-l', 'app=nginx', IMAGE, ...wget(`http://${BRIDGE_ADDR}:${port}/`));
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(page);
    const flows = await h.flows();
    expect(flows.some((f) => f.verdict === 'accept' && f.direction === 'ingress' && f.stage === 'syn' && f.remoteLabels?.includes(`@sys:name=${name}`))).toBe(true);
    // A long-running one for the exec tests below, used as soon as docker run returns.
    const client = run('client', '-l', 'app=nginx', IMAGE, 'sleep', '300');
    expect(dockerTry('exec', client, ...wget(`http://${BRIDGE_ADDR}:${port}/`)).stdout).toBe(page);
    const pu = await waitBridgePu(client);
    expect(pu.labels).toEqual(expect.arrayContaining(['app=nginx', '@sys:network=bridge']));
  });

  it('tessera run --label app=nginx -- wget from the host gets the page', async () => {
    const r = await h.runPu(['app=nginx'], hostWget(`http://127.0.0.1:${port}/`));
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(page);
  });

  it('a container with -l app=other is refused at once', async () => {
    const first = dockerTry('run', '--rm', '-l', 'app=other', IMAGE, ...wget(`http://${BRIDGE_ADDR}:${port}/`));
    expect(first.code).not.toBe(0);
    expect(first.stderr).toMatch(/refused/i);
    const other = run('other', '-l', 'app=other', IMAGE, 'sleep', '300');
    const r = dockerTry('exec', other, ...wget(`http://${BRIDGE_ADDR}:${port}/`));
    // At once: a reset makes wget say "refused"; a dropped SYN would leave it silent until
    // the container's timeout ends it.
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/refused/i);
    const flows = await h.flows();
    expect(flows.some((f) => f.verdict === 'reject' && f.remoteLabels?.includes('app=other'))).toBe(true);
  });

  it('the other direction: a bridge container serving app=nginx admits a host process app=nginx and refuses an unprotected one', async () => {
    const server = run('bserver', '-l', 'app=nginx', IMAGE, 'httpd', '-f', '-p', '8080', '-h', '/var/www');
    const ip = docker('inspect', '-f', '{{.NetworkSettings.IPAddress}}', server);
    const url = `http://${ip}:8080/`;
    // Probed right after docker run returned, unprotected first: its rules were there before httpd ran.
    const early = await h.exec(hostWget(url), { timeoutMs: 10_000 });
    expect(early.stdout).toBe('');
    const ok = await waitFor('the page for app=nginx (httpd listening)', async () => {
      const r = await h.runPu(['app=nginx'], hostWget(url));
      return r.stdout === page ? r : null;
    }, 10_000, 50);
    expect(ok.stderr).toBe('');
    const bad = await h.exec(hostWget(url), { timeoutMs: 10_000 });
    expect(bad.code).not.toBe(0);
    expect(bad.stdout).toBe('');
    // Refused at once: the reset REJECT sends from the container's namespace goes in the
    // reply direction of the refused SYN's flow, which the namespace ruleset lets leave.
    expect(bad.stderr).toMatch(/refused/i);
    expect((await h.flows()).some((f) => f.verdict === 'reject' && f.reason === 'missing-token' && f.localPu === puIdOf(server))).toBe(true);
    // container to container across the bridge, by the server's own IP
    const client = containers.find((c) => dockerTry('inspect', '-f', '{{.Name}}', c).stdout.includes(`tessera-wt-client-${suffix}`))!;
    const cc = dockerTry('exec', client, ...wget(url));
    expect(cc.stdout).toBe(page);
  });

  it('docker exec in the host-network web container is classified as the container (app=nginx), a plain host process is not', async () => {
    const server = h.spawnPu(['app=nginx'], ['busybox', 'httpd', '-f', '-p', String(hostPuPort), '-h', dir]);
    try {
      await h.waitForListener(hostPuPort);
      const r = dockerTry('exec', web, ...wget(`http://127.0.0.1:${hostPuPort}/`));
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('page of a host process\n');
      const flows = await h.flows();
      expect(
        flows.some((f) => f.verdict === 'accept' && f.direction === 'ingress' && f.stage === 'syn' && f.localLabels?.join(',') === 'app=nginx' && f.remoteLabels?.includes(`@sys:name=tessera-wt-web-${suffix}`)),
      ).toBe(true);
      const bad = await h.exec(hostWget(`http://127.0.0.1:${hostPuPort}/`), { timeoutMs: 10_000 });
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/refused/i);
    } finally {
      server.kill('SIGTERM');
    }
  });

  it('across hosts: containers and processes with app=nginx authorize each other through two daemons', async () => {
    const client = containers.find((c) => dockerTry('inspect', '-f', '{{.Name}}', c).stdout.includes(`tessera-wt-client-${suffix}`))!;
    const other = containers.find((c) => dockerTry('inspect', '-f', '{{.Name}}', c).stdout.includes(`tessera-wt-other-${suffix}`))!;
    const remotePort = 18_080;
    const server = remote.spawnPu(['app=nginx'], ['busybox', 'httpd', '-f', '-p', String(remotePort), '-h', dir]);
    try {
      await remote.waitForListener(remotePort);
      // bridge container -> process on the other host (routed and masqueraded by the docker host)
      const url = `http://${remote.addr}:${remotePort}/`;
      const r = dockerTry('exec', client, ...wget(url));
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('page of a host process\n');
      const seen = await waitFor('remote ingress record', async () =>
        (await remote.flows()).find((f) => f.verdict === 'accept' && f.stage === 'syn' && f.remoteLabels?.includes(`@sys:name=tessera-wt-client-${suffix}`)),
      );
      expect(seen.remoteHost).toBe('host-docker');
      expect(dockerTry('exec', other, ...wget(url)).stderr).toMatch(/refused/i);
      // process on the other host -> host-network container
      const back = await remote.runPu(['app=nginx'], hostWget(`http://${DOCKER_SEGMENT_ADDR}:${port}/`));
      expect(back.stderr).toBe('');
      expect(back.stdout).toBe(page);
      const bad = await remote.exec(hostWget(`http://${DOCKER_SEGMENT_ADDR}:${port}/`), { timeoutMs: 10_000 });
      expect(bad.stderr).toMatch(/refused/i);
    } finally {
      server.kill('SIGTERM');
    }
  });

  it('a restarted daemon protects running containers again; while it is down no container starts (fail-closed)', async () => {
    const client = containers.find((c) => dockerTry('inspect', '-f', '{{.Name}}', c).stdout.includes(`tessera-wt-client-${suffix}`))!;
    const before = await puOf(web);
    expect(before).toBeDefined();
    await h.stopDaemon();
    // A stop keeps enforcement (fail-closed while no daemon reads): the classid stays in the
    // host-network container's cgroup, the TESSERA rules on the host and in the bridge
    // container's namespace.
    expect(Number(readFileSync(webClassidFile, 'utf8').trim())).toBe(Number(before!.classid));
    expect((await h.exec(['iptables-save', '-t', 'mangle'])).stdout).toContain('TESSERA');
    expect(await nsRules(client)).toContain('TESSERA');
    // The runtime shim finds no daemon: the container is not started, nothing of it runs.
    const refused = dockerTry('run', '-d', '--name', `tessera-wt-down-${suffix}`, '-l', 'app=nginx', IMAGE, 'sleep', '300');
    containers.push(`tessera-wt-down-${suffix}`); // created, never started: removed by name at the end
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/tessera: no tessera daemon/);
    expect(docker('ps', '-q', '--filter', `name=tessera-wt-down-${suffix}`)).toBe('');
    await h.startDaemon();
    const late = run('late', '-l', 'app=nginx', IMAGE, 'sleep', '300');
    const webPu = await waitFor('web PU again', async () => {
      const p = await puOf(web);
      return p?.ports.includes(port) ? p : null;
    }, 20_000);
    expect(Number(readFileSync(webClassidFile, 'utf8').trim())).toBe(Number(webPu.classid));
    // Re-adopted with its saved index: the classid never changed under the container.
    expect(webPu.classid).toBe(before!.classid);
    await waitBridgePu(client);
    await waitBridgePu(late);
    const bad = await h.exec(hostWget(`http://127.0.0.1:${port}/`), { timeoutMs: 10_000 });
    expect(bad.stderr).toMatch(/refused/i);
    expect(dockerTry('exec', late, ...wget(`http://${BRIDGE_ADDR}:${port}/`)).stdout).toBe(page);
    expect(dockerTry('exec', client, ...wget(`http://${BRIDGE_ADDR}:${port}/`)).stdout).toBe(page);
  });

  it('after docker rm -f nothing of the PU is left: no PU, no classid rule, no cgroup; a bridge PU\'s queue lets its namespace go', async () => {
    const before = await puOf(web);
    expect(before).toBeDefined();
    const cgroupDir = join(webClassidFile, '..');
    docker('rm', '-f', web);
    containers.splice(containers.indexOf(web), 1);
    await waitFor('web PU gone', async () => !(await puOf(web)), 15_000);
    expect(existsSync(cgroupDir)).toBe(false);
    await waitFor('host rules without its classid', async () => !(await h.exec(['iptables-save', '-t', 'mangle'])).stdout.includes(`--cgroup ${Number(before!.classid)} `), 15_000);
    // A bridge container: its namespace must not be kept alive by our queue socket.
    const late = containers.find((c) => dockerTry('inspect', '-f', '{{.Name}}', c).stdout.includes(`tessera-wt-late-${suffix}`))!;
    const pid = docker('inspect', '-f', '{{.State.Pid}}', late);
    const daemonPid = h.daemon!.pid!;
    // The daemon's queue socket in the container's namespace: a netlink socket listed in that
    // namespace's /proc/net/netlink and held open by the daemon.
    const nsNetlink = readFileSync(`/proc/${pid}/net/netlink`, 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/).pop()).filter(Boolean) as string[];
    const held = (): string[] => {
      const fds = spawnSync('bash', ['-c', `for f in /proc/${daemonPid}/fd/*; do readlink "$f"; done`], { encoding: 'utf8' }).stdout;
      return nsNetlink.filter((inode) => fds.includes(`socket:[${inode}]`));
    };
    expect(held().length).toBe(1);
    docker('rm', '-f', late);
    containers.splice(containers.indexOf(late), 1);
    await waitFor('late PU gone', async () => !(await puOf(late)), 15_000);
    await waitFor('queue socket in its namespace closed', async () => held().length === 0, 10_000);
    const status = await h.status();
    expect(status.pus.some((p) => p.id === puIdOf(web) || p.id === puIdOf(late))).toBe(false);
  });
});
