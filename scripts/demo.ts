// `npm run demo`: the seeds' walkthrough, with Linux processes, across three namespace hosts.
// Each host runs its own `tessera daemon` (a freshly made CA issued every host a certificate).
//
//   host a (10.213.1.1)          host b (10.213.1.2)              host c (10.213.1.3)
//   clients                      web server PU app=nginx :80      client PU app=other
//
// Every step prints what it ran, what happened, and the flow record the daemons wrote.
// Everything is torn down at the end, also on failure or Ctrl-C.
//
// `npm run demo -- --docker`: the same walkthrough with Docker containers, in the namespace
// `tessera-docker` where scripts/docker-setup.sh runs dockerd (demo.sh starts it, and stops
// it at the end if it started it). That namespace is "the host": a daemon with --docker runs
// there, a --net=host web container serves, bridge containers and host processes connect.
// Then the seeds' UDP case (issue 13): a --net=host DNS container app=dns answers a same-label
// --net=host container and a same-label bridge container, not app=other ones nor an
// unprotected process.

import { mkdtempSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCluster, existingNsHost, waitFor, type Cluster, type FlowJson, type TesseraHost } from './lib/cluster.js';
import { isRoot, uniquePrefix } from './lib/netns.js';

const bold = (s: string): string => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const ok = (s: string): string => (process.stdout.isTTY ? `\x1b[32m${s}\x1b[0m` : s);
const no = (s: string): string => (process.stdout.isTTY ? `\x1b[31m${s}\x1b[0m` : s);

function say(line = ''): void {
  process.stdout.write(line + '\n');
}

function describeFlow(f: FlowJson | undefined): string {
  if (!f) return '(no flow record)';
  const peer = f.remoteHost ? `${f.remoteHost} [${(f.remoteLabels ?? []).join(',')}]` : 'an unprotected peer (no token)';
  return `${f.verdict.toUpperCase()} (${f.reason}) ${f.direction} at ${f.stage}: local [${(f.localLabels ?? []).join(',')}] <-> ${peer}`;
}

async function lastFlow(h: TesseraHost, before: number): Promise<FlowJson | undefined> {
  const flows = await waitFor(`a new flow record on ${h.name}`, async () => {
    const all = await h.flows();
    return all.length > before ? all : null;
  }, 5000).catch(() => null);
  return flows?.at(-1);
}

async function step(title: string, h: TesseraHost, recorder: TesseraHost, argv: string[], labels: string[] | null, expectOk: boolean): Promise<boolean> {
  say(bold(`\n▶ ${title}`));
  const shown = labels ? `tessera run ${labels.map((l) => `--label ${l}`).join(' ')} -- ${argv.join(' ')}` : argv.join(' ');
  say(`  [host ${h.name}] $ ${shown}`);
  const before = (await recorder.flows()).length;
  const t0 = Date.now();
  const r = labels ? await h.runPu(labels, argv) : await h.exec(argv, { timeoutMs: 20_000 });
  const ms = Date.now() - t0;
  const got = r.code === 0;
  const out = (r.stdout.trim() || r.stderr.trim()).split('\n')[0] ?? '';
  say(`  → ${got ? ok('connected') : no('refused')} in ${ms} ms: ${out}`);
  say(`  flow record on host ${recorder.name}: ${describeFlow(await lastFlow(recorder, before))}`);
  const pass = got === expectOk;
  say(`  ${pass ? ok('✓ as expected') : no('✗ NOT as expected')}`);
  return pass;
}

const DOCKER = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
const IMAGE = 'tessera/busybox:local';
const DOCKER_NETNS = process.env.TESSERA_DOCKER_NETNS ?? 'tessera-docker';
const BRIDGE_ADDR = '10.213.200.1';

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function docker(args: string[]): Ran {
  const r = spawnSync(DOCKER, args, { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** One walkthrough step: what ran where, what happened, the flow record, as expected or not. */
async function dstep(title: string, where: string, shown: string, recorder: TesseraHost, act: () => Promise<Ran> | Ran, expectOk: boolean): Promise<boolean> {
  say(bold(`\n▶ ${title}`));
  say(`  [${where}] $ ${shown}`);
  const before = (await recorder.flows()).length;
  const t0 = Date.now();
  const r = await act();
  const ms = Date.now() - t0;
  const got = r.code === 0;
  const out = (r.stdout.trim() || r.stderr.trim()).split('\n')[0] ?? '';
  say(`  → ${got ? ok('connected') : no('refused')} in ${ms} ms: ${out}`);
  say(`  flow record: ${describeFlow(await lastFlow(recorder, before))}`);
  const pass = got === expectOk;
  say(`  ${pass ? ok('✓ as expected') : no('✗ NOT as expected')}`);
  return pass;
}

/**
 * The seeds' case (issue 13): Consul's DNS on the host network. A --net=host container
 * labelled app=dns answers UDP queries on a port; a same-label --net=host container gets an
 * answer, an app=other one and an unprotected process on the host get nothing; so do bridge
 * containers (app=dns answered, app=other not), judged in their own namespace. The image is
 * busybox (no UDP server): the host's python3 is mounted read-only for the server and clients.
 */
async function dnsCase(h: TesseraHost, run: (args: string[]) => string, puOf: (id: string) => Promise<unknown>): Promise<boolean[]> {
  const port = 5300;
  const py = ['-v', '/usr:/usr:ro', '-v', '/lib:/lib:ro', '-v', '/lib64:/lib64:ro'];
  const server = `import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(("0.0.0.0", ${port}))\nwhile True:\n  d,a=s.recvfrom(512)\n  s.sendto(b"answer:"+d,a)`;
  const query = (addr: string): string => `import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)\nfor i in range(3):\n  s.sendto(b"consul.service?", ("${addr}", ${port}))\n  try:\n    print(s.recv(512).decode()); raise SystemExit(0)\n  except socket.timeout: pass\nprint("no answer"); raise SystemExit(1)`;
  say(bold('\n▶ The seeds\' case: a DNS server container on the host network, label app=dns (UDP)'));
  say(`  [host] $ docker run -d --net=host -l app=dns … python3 (a UDP server on :${port})`);
  const dns = run(['--name', `tessera-demo-dns-${process.pid}`, '--net=host', '-l', 'app=dns', ...py, IMAGE, '/usr/bin/python3', '-c', server]);
  await waitFor('the DNS container as a PU', async () => !!(await puOf(dns)), 20_000);
  await new Promise((r) => setTimeout(r, 1500));
  const client = (labels: string[], net: 'host' | 'bridge' = 'host'): Ran =>
    docker(['run', '--rm', ...(net === 'host' ? ['--net=host'] : []), ...labels.flatMap((l) => ['-l', l]), ...py, IMAGE, '/usr/bin/python3', '-c', query(net === 'host' ? '127.0.0.1' : BRIDGE_ADDR)]);
  const out: boolean[] = [];
  out.push(await dstep('A --net=host container with label app=dns resolves (UDP, authorized by both identities)', 'host', `docker run --rm --net=host -l app=dns … query 127.0.0.1:${port}`, h, () => client(['app=dns']), true));
  out.push(await dstep('A --net=host container with label app=other gets nothing', 'host', `docker run --rm --net=host -l app=other … query 127.0.0.1:${port}`, h, () => client(['app=other']), false));
  out.push(await dstep('An unprotected process on the host gets nothing', 'host', `python3 -c '…query 127.0.0.1:${port}'`, h, () => h.exec(['python3', '-c', query('127.0.0.1')], { timeoutMs: 20_000 }), false));
  // Bridge containers: their UDP is judged inside their own namespace (docs/docker.md).
  out.push(await dstep('A bridge container with label app=dns resolves through the bridge address', 'host', `docker run --rm -l app=dns … query ${BRIDGE_ADDR}:${port}`, h, () => client(['app=dns'], 'bridge'), true));
  out.push(await dstep('A bridge container with label app=other gets nothing', 'host', `docker run --rm -l app=other … query ${BRIDGE_ADDR}:${port}`, h, () => client(['app=other'], 'bridge'), false));
  return out;
}

async function dockerDemo(): Promise<number> {
  say(bold('Tessera demo: Docker containers and Linux processes as PUs on one host'));
  if (!existsSync(`/run/netns/${DOCKER_NETNS}`) || docker(['info']).code !== 0) {
    process.stderr.write(`tessera demo --docker: no dockerd in netns ${DOCKER_NETNS}: run scripts/docker-setup.sh (npm run demo -- --docker does)\n`);
    return 1;
  }
  const containers: string[] = [];
  let cluster: Cluster | null = null;
  const stop = async (): Promise<void> => {
    if (containers.length) docker(['rm', '-f', ...containers.splice(0)]);
    if (cluster) await cluster.destroy();
    cluster = null;
  };
  process.once('SIGINT', () => void stop().finally(() => process.exit(130)));
  process.once('SIGTERM', () => void stop().finally(() => process.exit(143)));
  const run = (args: string[]): string => {
    const r = docker(['run', '-d', ...args]);
    if (r.code !== 0) throw new Error(`docker run ${args.join(' ')}: ${r.stderr.trim()}`);
    const id = r.stdout.trim();
    containers.push(id);
    return id;
  };
  try {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-demo-docker-'));
    const policy = join(dir, 'policy.yaml');
    // The image's own label org.tessera.image=busybox is a user label too, so containers and
    // processes never have equal label sets: say "app=nginx talks to app=nginx" instead.
    writeFileSync(policy, 'version: 1\nname: walkthrough\nrules:\n  - id: nginx-to-nginx\n    from: {app: nginx}\n    to: {app: nginx}\n    action: allow\n  - id: dns-to-dns\n    from: {app: dns}\n    to: {app: dns}\n    protocol: udp\n    action: allow\n');
    say(`"The host" is the network namespace ${DOCKER_NETNS}, where dockerd runs (docs/docker.md).`);
    say(`Policy ${policy}: app=nginx may connect to app=nginx; everything else is refused.`);
    say(bold('\n▶ tessera daemon runs on the host, following Docker'));
    say(`  [host] $ tessera daemon --psk-file … --policy ${policy} --docker /var/run/docker.sock`);
    cluster = await createCluster({
      prefix: uniquePrefix('dd'),
      hosts: [],
      subnet: 2,
      trust: 'psk',
      extraHosts: [existingNsHost('host', DOCKER_NETNS, BRIDGE_ADDR)],
      daemonArgs: ['--docker', '/var/run/docker.sock', '--policy', policy],
    });
    const h = cluster.host('host');
    const port = 8088;
    const puOf = async (id: string) => (await h.status()).pus.find((p) => p.id === `ctr-${id.slice(0, 12)}`);
    const nsReady = async (id: string): Promise<boolean> => {
      const pid = docker(['inspect', '-f', '{{.State.Pid}}', id]).stdout.trim();
      const r = await h.exec(['nsenter', `--net=/proc/${pid}/ns/net`, 'iptables-save', '-t', 'mangle']);
      return r.stdout.includes('-A TESSERA-PU-IN -j TESSERA-PU-PORT') && !!(await puOf(id));
    };

    say(bold('\n▶ A web server container with --net=host and label app=nginx'));
    say(`  [host] $ docker run -d --net=host -l app=nginx ${IMAGE} httpd -f -p ${port} -h /var/www`);
    const web = run(['--name', `tessera-demo-web-${process.pid}`, '--net=host', '-l', 'app=nginx', IMAGE, 'httpd', '-f', '-p', String(port), '-h', '/var/www']);
    say(`  [host] $ docker inspect -f '{{.HostConfig.NetworkMode}}' ${web.slice(0, 12)}`);
    say(`  → ${docker(['inspect', '-f', '{{.HostConfig.NetworkMode}}', web]).stdout.trim()}`);
    const webPu = await waitFor('the web container as a PU', async () => {
      const p = await puOf(web);
      return p?.ports.includes(port) ? p : null;
    }, 20_000);
    say(`  → PU ${webPu.id} classid ${webPu.classid} listening on :${port}; tessera status says:`);
    const text = (await h.tessera(['status'])).stdout.split('\n');
    const at = text.findIndex((l) => l.startsWith(webPu.id));
    for (let i = at; i >= 0 && i < text.length && (i === at || text[i]!.startsWith(' ')); i++) say(`    ${text[i]}`);
    const cgroup = readFileSync(`/proc/${webPu.pids[0]}/cgroup`, 'utf8').split('\n').find((l) => l.split(':')[1]?.split(',').includes('net_cls'))?.split(':')[2];
    if (cgroup) say(`  (the classid is written into the container's own net_cls cgroup ${cgroup}, so docker exec processes carry it too)`);

    const url = `http://127.0.0.1:${port}/`;
    const hostWget = ['timeout', '5', 'busybox', 'wget', '-qO-', url];
    const bridgeUrl = `http://${BRIDGE_ADDR}:${port}/`;
    const results: boolean[] = [];
    results.push(await dstep('An unprotected wget from the host is refused at once', 'host', hostWget.join(' '), h, () => h.exec(hostWget, { timeoutMs: 20_000 }), false));

    say(bold('\n▶ A client container with label app=nginx on the bridge network'));
    say(`  [host] $ docker run -d -l app=nginx ${IMAGE} sleep 300`);
    const friend = run(['--name', `tessera-demo-friend-${process.pid}`, '-l', 'app=nginx', IMAGE, 'sleep', '300']);
    await waitFor('the client container protected', () => nsReady(friend), 20_000);
    say(`  → PU ctr-${friend.slice(0, 12)}: rules and a queue inside its own network namespace, in place before its first instruction (the runtime shim, docs/docker.md)`);
    results.push(
      await dstep('It reaches the web server through the host\'s bridge address and gets the page', 'host', `docker exec ${friend.slice(0, 12)} timeout 5 wget -qO- ${bridgeUrl}`, h, () => docker(['exec', friend, 'timeout', '5', 'wget', '-qO-', bridgeUrl]), true),
    );
    results.push(await dstep('A process with label app=nginx on the host gets the page', 'host', `tessera run --label app=nginx -- ${hostWget.join(' ')}`, h, () => h.runPu(['app=nginx'], hostWget), true));
    const other = run(['--name', `tessera-demo-other-${process.pid}`, '-l', 'app=other', IMAGE, 'sleep', '300']);
    await waitFor('the app=other container protected', () => nsReady(other), 20_000);
    results.push(
      await dstep('A container with label app=other is refused', 'host', `docker run -d -l app=other ${IMAGE} sleep 300; docker exec … wget -qO- ${bridgeUrl}`, h, () => docker(['exec', other, 'timeout', '5', 'wget', '-qO-', bridgeUrl]), false),
    );

    results.push(...(await dnsCase(h, run, puOf)));

    say(bold('\n▶ docker rm -f the web container: nothing of its PU is left'));
    say(`  [host] $ docker rm -f ${web.slice(0, 12)}`);
    docker(['rm', '-f', web]);
    containers.splice(containers.indexOf(web), 1);
    await waitFor('the web PU gone', async () => !(await puOf(web)), 15_000);
    const rules = (await h.exec(['iptables-save', '-t', 'mangle'])).stdout;
    const gone = !rules.includes(`--cgroup ${Number(webPu.classid)} `) && !(await h.status()).pus.some((p) => p.id === webPu.id);
    say(`  → tessera status lists no ${webPu.id}; no rule matches classid ${webPu.classid}: ${gone ? ok('✓') : no('✗')}`);
    results.push(gone);

    return verdict('Counters', (await h.status()).counters, results);
  } catch (err) {
    process.stderr.write(`tessera demo failed: ${(err as Error).message}\n`);
    return 1;
  } finally {
    say('\nTearing down: removing the containers, stopping the daemons and removing their rules and cgroups (tessera cleanup)…');
    await stop();
    say('Done.');
  }
}

/** The counters and whether every step behaved as the walkthrough says; the exit status. */
function verdict(title: string, counters: Record<string, number>, results: boolean[]): number {
  say(bold(`\n${title}: `) + Object.entries(counters).map(([k, v]) => `${k}=${v}`).join(' '));
  const passed = results.every(Boolean);
  say(passed ? ok(bold('\nAll steps behaved as the walkthrough says.')) : no(bold('\nSome step did not behave as expected (see above).')));
  return passed ? 0 : 1;
}

async function main(): Promise<number> {
  if (!isRoot) {
    process.stderr.write('tessera demo: needs root (it creates network namespaces, iptables rules and cgroups): run it as root, e.g. sudo npm run demo\n');
    return 1;
  }
  say(bold('Tessera demo: identity-based authorization between processes on three hosts'));
  say('Building three namespace hosts, a CA, a certificate per host, and a daemon on each…');
  let cluster: Cluster | null = null;
  const stop = async (): Promise<void> => {
    if (cluster) await cluster.destroy();
    cluster = null;
  };
  process.once('SIGINT', () => void stop().finally(() => process.exit(130)));
  process.once('SIGTERM', () => void stop().finally(() => process.exit(143)));
  try {
    cluster = await createCluster({ prefix: uniquePrefix('dm'), hosts: ['a', 'b', 'c'], subnet: 1, trust: 'ca' });
    const [a, b, c] = [cluster.host('a'), cluster.host('b'), cluster.host('c')];
    for (const h of cluster.hosts) say(`  host ${h.name}: ${h.addr}, daemon on ${h.socket}`);

    const www = mkdtempSync(join(tmpdir(), 'tessera-demo-www-'));
    writeFileSync(join(www, 'index.html'), 'hello from the app=nginx web server on host b\n');
    say(bold('\n▶ Start a web server on host b as a protected process with label app=nginx'));
    say(`  [host b] $ tessera run --label app=nginx -- busybox httpd -f -p 80 -h ${www}`);
    b.spawnPu(['app=nginx'], ['busybox', 'httpd', '-f', '-p', '80', '-h', www]);
    await b.waitForListener(80);
    const pu = (await b.status()).pus.find((p) => p.ports.includes(80))!;
    say(`  → PU ${pu.id} labels [${pu.labels.join(',')}] classid ${pu.classid}, listening on :80`);

    const url = `http://${b.addr}/`;
    const wget = ['timeout', '5', 'busybox', 'wget', '-q', '-O', '-', url];
    const results = [
      await step('An unprotected client on host a is refused (the seeds: "This should fail")', a, b, wget, null, false),
      await step('A client with the same label app=nginx on host a gets the page', a, b, wget, ['app=nginx'], true),
      await step('A client with label app=other on host c is refused', c, b, wget, ['app=other'], false),
    ];
    return verdict('Host b counters', (await b.status()).counters, results);
  } catch (err) {
    process.stderr.write(`tessera demo failed: ${(err as Error).message}\n`);
    return 1;
  } finally {
    say('\nTearing down: stopping daemons, removing their rules (tessera cleanup), deleting namespaces and cgroups…');
    await stop();
    say('Done.');
  }
}

process.exitCode = process.argv.includes('--docker') ? (isRoot ? await dockerDemo() : await main()) : await main();
