// The containers act of `npm run demo -- --learn --docker` (scripts/demo-learn.ts): in the
// namespace tessera-docker where scripts/docker-setup.sh runs dockerd, web containers of two
// versions, one recreated under a new name, call an api container while learning; the
// suggestion keeps one web group; once enforced, a web container never seen is let in and a
// container of another app is refused. Every container started here is removed by ID.

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCluster, existingNsHost, waitFor, type Cluster } from './lib/cluster.js';
import { uniquePrefix } from './lib/netns.js';

const DOCKER = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
const IMAGE = 'tessera/busybox:local';
const NETNS = process.env.TESSERA_DOCKER_NETNS ?? 'tessera-docker';
const BRIDGE_ADDR = '10.213.200.1';
const PORT = 8089;

function docker(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(DOCKER, args, { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Runs the act; `check` records each expectation (what, passed, detail); `say` prints. */
export async function containersAct(say: (l?: string) => void, bold: (s: string) => string, dim: (s: string) => string, check: (what: string, pass: boolean, detail?: string) => void): Promise<void> {
  say(bold('\n■ Containers: replicas, versions and a renamed container (namespace tessera-docker)'));
  if (!existsSync(`/run/netns/${NETNS}`) || docker(['info']).code !== 0) {
    check('dockerd runs in netns tessera-docker (npm run demo -- --learn --docker starts it)', false);
    return;
  }
  const ids: string[] = [];
  let cluster: Cluster | null = null;
  const dir = mkdtempSync(join(tmpdir(), 'tessera-demo-learn-docker-'));
  const suffix = Math.floor(Math.random() * 36 ** 4).toString(36);
  const client = (name: string, labels: string[]): { code: number; stdout: string; stderr: string } => {
    const full = `lrn-demo-${name}-${suffix}`;
    say(`  [host] $ docker run --name ${full} ${labels.map((l) => `-l ${l}`).join(' ')} ${IMAGE} wget http://${BRIDGE_ADDR}:${PORT}/`);
    const r = docker(['run', '--name', full, ...labels.flatMap((l) => ['-l', l]), IMAGE, 'timeout', '5', 'wget', '-qO-', `http://${BRIDGE_ADDR}:${PORT}/`]);
    const id = docker(['inspect', '-f', '{{.Id}}', full]).stdout.trim();
    if (id) ids.push(id);
    return r;
  };
  try {
    const policyFile = join(dir, 'policy.yaml');
    writeFileSync(policyFile, 'version: 1\nmode: learn\nrules: []\n');
    cluster = await createCluster({ prefix: uniquePrefix('lrn'), hosts: [], subnet: 166, trust: 'psk', extraHosts: [existingNsHost('host', NETNS, BRIDGE_ADDR)], daemonArgs: ['--docker', '/var/run/docker.sock', '--policy', policyFile] });
    const h = cluster.host('host');
    say(`  [host] $ tessera daemon --docker /var/run/docker.sock --policy ${policyFile}   (mode: learn)`);
    say(`  [host] $ docker run -d --net=host -l app=api ${IMAGE} httpd -p ${PORT}`);
    const api = docker(['run', '-d', '--name', `lrn-demo-api-${suffix}`, '--net=host', '-l', 'app=api', IMAGE, 'httpd', '-f', '-p', String(PORT), '-h', '/var/www']);
    if (api.code !== 0) throw new Error(`docker run api: ${api.stderr.trim()}`);
    ids.push(api.stdout.trim());
    await waitFor('the api container listening', async () => (await h.status()).pus.some((p) => p.ports.includes(PORT)), 20_000);
    let made = 0;
    for (const [name, version] of [['web-1', '1.0.0'], ['web-2', '1.1.0'], ['web-1-recreated', '1.0.0']] as const) if (client(name, ['app=web', `version=${version}`]).code === 0) made++;
    check(`${made} of 3 web containers reached the api while learning`, made === 3);
    await waitFor('the three web containers in the edge table', async () => {
      const r = await h.tessera(['policy', 'edges']);
      if (r.code !== 0) return false;
      const t = JSON.parse(r.stdout) as { edges: Array<{ client: { labels?: string[] }; port: number }> };
      return t.edges.filter((e) => e.port === PORT && e.client.labels?.includes('app=web')).length >= 3;
    }, 20_000, 500);
    const out = join(dir, 'suggested.yaml');
    say(`  [host] $ tessera policy suggest --out ${out}`);
    const s = await h.tessera(['policy', 'suggest', '--out', out]);
    if (s.code !== 0) throw new Error(`suggest: ${s.stderr}`);
    const text = readFileSync(out, 'utf8');
    for (const l of text.trimEnd().split('\n')) say(`  ${l.startsWith('#') || l.includes('  #') ? dim(l) : l}`);
    const webLine = text.split('\n').find((l) => l.startsWith('#   web ')) ?? '';
    check('one web group for 3 containers: names and versions dropped', /stable across 3 PUs/.test(webLine) && webLine.includes('@sys:name per instance: dropped'), webLine.replace(/^#\s+/, ''));
    const before = ((await h.status()) as unknown as { policy: { revision: string } }).policy.revision;
    writeFileSync(policyFile, text);
    await waitFor('the suggested policy', async () => ((await h.status()) as unknown as { policy: { revision: string } }).policy.revision !== before, 10_000, 100);
    say(dim('  (the suggestion installed: enforce)'));
    const fresh = client('web-new', ['app=web', 'version=2.0.0']);
    check('a web container never seen (new name, version 2.0.0) is let in', fresh.code === 0, fresh.code === 0 ? 'connected' : fresh.stderr.trim());
    const other = client('other', ['app=other']);
    check('a container of another app is refused', other.code !== 0, other.stderr.trim().split('\n')[0] ?? '');
  } catch (err) {
    check(`containers act: ${(err as Error).message}`, false);
  } finally {
    if (ids.length) docker(['rm', '-f', ...ids]);
    if (cluster) await cluster.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
