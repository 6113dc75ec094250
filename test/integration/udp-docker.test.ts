// UDP of Docker containers with their own network namespace (issue 13, bridge networks), with
// a real dockerd (scripts/docker-setup.sh: dockerd in the namespace `tessera-docker`, "the
// host" here) and a real `tessera daemon --docker` there. A bridge container app=dns runs a
// UDP echo server; containers (bridge and host network) and host processes query it. Default
// deny: a same-label PU is answered, an app=other container and an unprotected process are not,
// a bridge PU gets nothing from an unprotected server on another namespace host, and nothing
// is answered while the daemon is stopped or after it crashed (the namespace queues have no
// reader then). Answers are counted, never timed. Every container is removed by ID, also on
// failure; the cluster's destroy removes namespaces, chains and cgroups.

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCluster, existingNsHost, waitFor, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, killAndWait } from '../../scripts/lib/netns.js';
import { skipBecause } from '../helpers/skip.js';
import type { ChildProcess } from 'node:child_process';

const DOCKER = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
const IMAGE = 'tessera/busybox:local';
const NETNS = process.env.TESSERA_DOCKER_NETNS ?? 'tessera-docker';
const BRIDGE_ADDR = '10.213.200.1';
const SUBNET = 170;
/** The docker host's address on the segment it shares with the plain host. */
const DOCKER_SEGMENT_ADDR = `10.213.${SUBNET}.254`;
const PORT = 5353;
const PLAIN_PORT = 5354;
const dockerAvailable = isRoot && existsSync(`/run/netns/${NETNS}`) && spawnSync(DOCKER, ['info'], { timeout: 15_000, stdio: 'ignore' }).status === 0;

skipBecause(!isRoot, 'UDP of docker containers (needs root)', 'integration tests need root: run as root');
skipBecause(isRoot && !dockerAvailable, 'UDP of docker containers (needs dockerd)', `dockerd not running in netns ${NETNS}: run scripts/docker-setup.sh (CI does)`);

/** busybox has no UDP server: the host's python3, mounted read-only (as the demo does). */
const PY = ['-v', '/usr:/usr:ro', '-v', '/lib:/lib:ro', '-v', '/lib64:/lib64:ro'];

const echoServer = (port: number): string =>
  ['import socket', 's=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)', `s.bind(("0.0.0.0", ${port}))`, 'while True:', '  d,a=s.recvfrom(4096)', '  s.sendto(b"echo:"+d,a)'].join('\n');

/** One DNS-sized query, two retries 1 s apart (as a resolver does); prints the answer's first 5 bytes or "none". */
const query = (addr: string, port: number): string =>
  [
    'import socket',
    's=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)',
    'ans="none"',
    'for i in range(3):',
    `  s.sendto(b"q"*40,("${addr}", ${port}))`,
    '  try:',
    '    d,_=s.recvfrom(4096); ans=d[:5].decode(errors="replace"); break',
    '  except socket.timeout: pass',
    'print(ans)',
  ].join('\n');

function docker(...args: string[]): string {
  return execFileSync(DOCKER, args, { encoding: 'utf8', timeout: 60_000 }).trim();
}

function dockerTry(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(DOCKER, args, { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

const puIdOf = (containerId: string): string => `ctr-${containerId.slice(0, 12)}`;
const answer = (r: { stdout: string }): string => r.stdout.trim();

describe.runIf(dockerAvailable)('UDP of bridge containers: judged in their own namespace, default deny', () => {
  const suffix = randomBytes(3).toString('hex');
  const containers: string[] = [];
  const children: ChildProcess[] = [];
  let cluster: Cluster;
  let h: TesseraHost;
  let plain: TesseraHost;
  let dir: string;
  let server = '';
  let serverIp = '';
  let client = '';
  let network = '';

  function run(name: string, ...args: string[]): string {
    const id = docker('run', '-d', '--name', `tessera-ud-${name}-${suffix}`, ...args);
    containers.push(id);
    return id;
  }

  /** A container whose first instruction is the query (docker run --rm). */
  const firstQuery = (args: string[], addr: string, port: number): { code: number; stdout: string; stderr: string } =>
    dockerTry('run', '--rm', ...args, ...PY, IMAGE, '/usr/bin/python3', '-c', query(addr, port));
  const execQuery = (id: string, addr: string, port: number): { code: number; stdout: string; stderr: string } =>
    dockerTry('exec', id, '/usr/bin/python3', '-c', query(addr, port));

  async function nsRules(containerId: string): Promise<string> {
    const pid = docker('inspect', '-f', '{{.State.Pid}}', containerId);
    return (await h.exec(['nsenter', `--net=/proc/${pid}/ns/net`, 'iptables-save', '-t', 'mangle'], { timeoutMs: 10_000 })).stdout;
  }

  /** A bridge container's PU exists and its namespace has our rules (the UDP chains are asserted where it matters). */
  async function waitBridgeUdp(containerId: string): Promise<void> {
    await waitFor(
      `PU and namespace rules of ${containerId.slice(0, 12)}`,
      async () => (await h.status()).pus.some((p) => p.id === puIdOf(containerId)) && (await nsRules(containerId)).includes('-A TESSERA-PU-IN'),
      20_000,
      150,
    );
  }

  beforeAll(async () => {
    execFileSync('bash', ['scripts/docker-image.sh'], { stdio: 'inherit', timeout: 120_000 });
    dir = mkdtempSync(join(tmpdir(), 'tessera-udpd-'));
    // The image's label org.tessera.image=busybox is a user label too; say what is meant.
    const policy = join(dir, 'policy.yaml');
    // Docker's embedded DNS (user-defined networks) runs no Tessera: a network rule, without a
    // port (the rules see the port after Docker's DNAT of 127.0.0.11:53), as docs/docker.md says.
    writeFileSync(
      policy,
      'version: 1\nname: udp-docker\nrules:\n  - id: dns-to-dns\n    from: {app: dns}\n    to: {app: dns}\n    protocol: udp\n    action: allow\n' +
        '  - id: embedded-dns\n    direction: egress\n    from: {app: dns}\n    toNetworks: [127.0.0.11]\n    protocol: udp\n    action: allow\n',
    );
    const prefix = `udpbr${randomBytes(2).toString('hex').slice(0, 3)}`;
    cluster = await createCluster({
      prefix,
      hosts: ['plain'],
      subnet: SUBNET,
      trust: 'psk',
      start: false,
      extraHosts: [existingNsHost('docker', NETNS, BRIDGE_ADDR)],
      daemonArgs: ['--policy', policy],
      hostDaemonArgs: { docker: ['--docker', '/var/run/docker.sock'] },
    });
    h = cluster.host('docker');
    plain = cluster.host('plain');
    // The docker host joins the plain host's segment (a veth from the topology's switch; deleting
    // the switch namespace deletes both ends). Docker masquerades its bridge toward it.
    const sw = `${prefix}-sw`;
    const must = (argv: string[]): void => void execFileSync(argv[0]!, argv.slice(1), { stdio: 'pipe', timeout: 10_000 });
    must(['ip', '-n', sw, 'link', 'add', 'pudp', 'type', 'veth', 'peer', 'name', `ub${suffix}`, 'netns', NETNS]);
    must(['ip', '-n', sw, 'link', 'set', 'pudp', 'master', 'br0', 'up']);
    must(['ip', '-n', NETNS, 'addr', 'add', `${DOCKER_SEGMENT_ADDR}/24`, 'dev', `ub${suffix}`]);
    must(['ip', '-n', NETNS, 'link', 'set', `ub${suffix}`, 'up']);
    await h.startDaemon(); // plain has no daemon: an unprotected host
    children.push(plain.spawn(['python3', '-c', echoServer(PLAIN_PORT)]));
    // The plain server answers the docker host's own (unprotected) process: the path works.
    await waitFor('the plain host\'s UDP server', async () => answer(await h.exec(['python3', '-c', query(plain.addr, PLAIN_PORT)], { timeoutMs: 10_000 })) === 'echo:', 15_000, 200);
    server = run('server', '-l', 'app=dns', ...PY, IMAGE, '/usr/bin/python3', '-c', echoServer(PORT));
    serverIp = docker('inspect', '-f', '{{.NetworkSettings.IPAddress}}', server);
    client = run('client', '-l', 'app=dns', ...PY, IMAGE, 'sleep', '600');
  }, 180_000);

  afterAll(async () => {
    try {
      if (containers.length) spawnSync(DOCKER, ['rm', '-f', ...containers], { stdio: 'ignore', timeout: 60_000 });
      if (network) spawnSync(DOCKER, ['network', 'rm', network], { stdio: 'ignore', timeout: 30_000 });
      for (const c of children) await killAndWait(c).catch(() => undefined);
    } finally {
      await cluster?.destroy();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('an unprotected process on the host gets no answer from the bridge server app=dns, from its start on', async () => {
    // Right after docker run returned: the rules were in place before the server ran.
    expect(answer(await h.exec(['python3', '-c', query(serverIp, PORT)], { timeoutMs: 15_000 }))).toBe('none');
    await waitBridgeUdp(server);
    expect(answer(await h.exec(['python3', '-c', query(serverIp, PORT)], { timeoutMs: 15_000 }))).toBe('none');
  });

  it('a bridge container app=dns whose first instruction is the query is answered; so is a long-running one', async () => {
    await waitBridgeUdp(server);
    // The server binds within a moment of its start: the long-running client retries until then.
    const ok = await waitFor('an answer to the app=dns client', async () => (answer(execQuery(client, serverIp, PORT)) === 'echo:' ? true : null), 20_000, 200);
    expect(ok).toBe(true);
    const first = firstQuery(['-l', 'app=dns'], serverIp, PORT);
    expect(answer(first), first.stderr).toBe('echo:');
    const flows = await h.flows();
    expect(flows.some((f) => f.verdict === 'accept' && f.localPu === puIdOf(server) && f.direction === 'ingress')).toBe(true);
  });

  it('a bridge container app=other gets nothing (first instruction and docker exec), and the refusal is recorded', async () => {
    const first = firstQuery(['-l', 'app=other'], serverIp, PORT);
    expect(answer(first), first.stderr).toBe('none');
    const other = run('other', '-l', 'app=other', ...PY, IMAGE, 'sleep', '600');
    await waitBridgeUdp(other);
    expect(answer(execQuery(other, serverIp, PORT))).toBe('none');
    const flows = await h.flows();
    expect(flows.some((f) => f.verdict !== 'accept' && f.localPu === puIdOf(server) && f.remoteLabels?.includes('app=other'))).toBe(true);
  });

  it('host-network containers: app=dns is answered by the bridge server, app=other is not', async () => {
    const same = firstQuery(['--net=host', '-l', 'app=dns'], serverIp, PORT);
    expect(answer(same), same.stderr).toBe('echo:');
    const other = firstQuery(['--net=host', '-l', 'app=other'], serverIp, PORT);
    expect(answer(other), other.stderr).toBe('none');
  });

  it('a bridge PU gets nothing from an unprotected server on another namespace host (the host itself does)', async () => {
    expect(answer(await h.exec(['python3', '-c', query(plain.addr, PLAIN_PORT)], { timeoutMs: 15_000 }))).toBe('echo:');
    expect(answer(execQuery(client, plain.addr, PLAIN_PORT))).toBe('none');
    const first = firstQuery(['-l', 'app=dns'], plain.addr, PLAIN_PORT);
    expect(answer(first), first.stderr).toBe('none');
  });

  it("on a user-defined network, Docker's embedded DNS (127.0.0.11) answers as the network rule says: app=dns resolves, app=other does not", async () => {
    network = `tessera-ud-net-${suffix}`;
    docker('network', 'create', '--subnet', `10.213.${SUBNET + 5}.0/24`, network);
    const named = run('named', '--network', network, '-l', 'app=dns', IMAGE, 'sleep', '600');
    const name = `tessera-ud-named-${suffix}`;
    await waitBridgeUdp(named);
    const lookup = (labels: string[]) => dockerTry('run', '--rm', '--network', network, ...labels.flatMap((l) => ['-l', l]), IMAGE, 'timeout', '8', 'nslookup', name);
    const ok = lookup(['app=dns']);
    expect(ok.stdout, ok.stderr).toContain(`10.213.${SUBNET + 5}.`);
    const refused = lookup(['app=other']);
    expect(refused.stdout).not.toContain(`10.213.${SUBNET + 5}.`);
    expect(refused.code).not.toBe(0);
  }, 60_000);

  it("a removed bridge container's raw sockets are closed with its queue: they do not keep its namespace alive", async () => {
    const gone = run('gone', '-l', 'app=dns', ...PY, IMAGE, 'sleep', '600');
    await waitBridgeUdp(gone);
    const pid = docker('inspect', '-f', '{{.State.Pid}}', gone);
    // Raw sockets of that namespace (its /proc/net/raw and raw6, inode column) held by the daemon.
    const inodes = ['raw', 'raw6'].flatMap((f) =>
      readFileSync(`/proc/${pid}/net/${f}`, 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/)[9]).filter((x): x is string => !!x && x !== '0'),
    );
    const daemonPid = h.daemon!.pid!;
    const held = (): string[] => {
      const fds = spawnSync('bash', ['-c', `for f in /proc/${daemonPid}/fd/*; do readlink "$f"; done`], { encoding: 'utf8' }).stdout;
      return inodes.filter((inode) => fds.includes(`socket:[${inode}]`));
    };
    expect(held().length).toBeGreaterThanOrEqual(1); // IPv4 (and IPv6 where the namespace has it)
    docker('rm', '-f', gone);
    containers.splice(containers.indexOf(gone), 1);
    await waitFor('its PU gone', async () => !(await h.status()).pus.some((p) => p.id === puIdOf(gone)), 15_000);
    await waitFor('its raw sockets closed', async () => held().length === 0, 10_000);
  });

  it('while the daemon is stopped, and after it crashed, no UDP of a bridge container passes; restarted, it is judged again', async () => {
    await waitBridgeUdp(client);
    expect(answer(execQuery(client, serverIp, PORT))).toBe('echo:');
    await h.stopDaemon();
    // A stop keeps the namespaces' rules; their queues have no reader: datagrams are dropped.
    expect(await nsRules(client)).toContain('-A TESSERA-UDP-OUT');
    expect(await nsRules(server)).toContain('-A TESSERA-UDP-IN');
    expect(answer(execQuery(client, serverIp, PORT))).toBe('none');
    expect(answer(await h.exec(['python3', '-c', query(serverIp, PORT)], { timeoutMs: 15_000 }))).toBe('none');
    expect(answer(execQuery(client, plain.addr, PLAIN_PORT))).toBe('none');
    await h.startDaemon();
    await waitBridgeUdp(client);
    await waitFor('an answer after the restart', async () => (answer(execQuery(client, serverIp, PORT)) === 'echo:' ? true : null), 20_000, 200);
    expect(answer(await h.exec(['python3', '-c', query(serverIp, PORT)], { timeoutMs: 15_000 }))).toBe('none');
    // A crash: nothing ends the queues in order, nothing removes a rule.
    const daemon = h.daemon!;
    const gone = new Promise<void>((r) => daemon.once('exit', () => r()));
    daemon.kill('SIGKILL');
    await gone;
    expect(answer(execQuery(client, serverIp, PORT))).toBe('none');
    expect(answer(execQuery(client, plain.addr, PLAIN_PORT))).toBe('none');
    await h.stopDaemon(); // forgets the dead child
    await h.startDaemon();
    await waitBridgeUdp(client);
    await waitFor('an answer after the crash', async () => (answer(execQuery(client, serverIp, PORT)) === 'echo:' ? true : null), 20_000, 200);
  }, 180_000);
});
