// Learn mode with real containers (scripts/docker-setup.sh: dockerd in netns tessera-docker,
// "the host"): web containers of several versions, one recreated under a new name, call an
// api container while every PU learns. The suggestion keeps one group for them (@sys:name and
// version dropped), and once enforced, a new web container never seen before is let in while
// a container of another app is refused. Every container started here is removed by ID.

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { uniquePrefix } from '../../scripts/lib/netns.js';
import { BRIDGE_ADDR, IMAGE, createDockerCluster, docker, dockerAvailable, dockerTeardown, dockerTry, skipWithoutDocker } from '../helpers/docker.js';

skipWithoutDocker('learn mode with containers');

describe.runIf(dockerAvailable)('learn mode with containers: replicas, versions and renamed containers make one group', () => {
  const suffix = randomBytes(3).toString('hex');
  const port = 19_100 + (randomBytes(2).readUInt16BE(0) % 800);
  const containers: string[] = [];
  let cluster: Cluster;
  let h: TesseraHost;
  let dir: string;
  let policyFile: string;

  /** A bridge client container whose first instruction is the connection (the runtime shim enrolls it before it starts). */
  function client(name: string, labels: string[]): { code: number; stdout: string; stderr: string } {
    const full = `lrn-${name}-${suffix}`;
    const r = dockerTry('run', '--name', full, ...labels.flatMap((l) => ['-l', l]), IMAGE, 'timeout', '5', 'wget', '-qO-', `http://${BRIDGE_ADDR}:${port}/`);
    const id = dockerTry('inspect', '-f', '{{.Id}}', full).stdout.trim();
    if (id) containers.push(id);
    return r;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-lrn-docker-'));
    policyFile = join(dir, 'policy.yaml');
    writeFileSync(policyFile, 'version: 1\nmode: learn\nrules: []\n');
    cluster = await createDockerCluster({ prefix: uniquePrefix('lrn'), subnet: 162, daemonArgs: ['--policy', policyFile] });
    h = cluster.host('docker');
    const api = docker('run', '-d', '--name', `lrn-api-${suffix}`, '--net=host', '-l', 'app=api', IMAGE, 'httpd', '-f', '-p', String(port), '-h', '/var/www');
    containers.push(api);
    await waitFor('the api container listening', async () => (await h.status()).pus.some((p) => p.ports.includes(port)), 20_000);
  }, 180_000);

  afterAll(() => dockerTeardown({ containers, cluster, dir }), 120_000);

  it('learns, suggests one web group, and enforces it for a container never seen', async () => {
    for (const [name, version] of [['web-1', '1.0.0'], ['web-2', '1.1.0']] as const) {
      const r = client(name, ['app=web', `version=${version}`]);
      expect(r.stderr).toBe('');
    }
    // web-1 recreated under a new name (same labels, new @sys:name, new container id).
    expect(client('web-1-recreated', ['app=web', 'version=1.0.0']).stderr).toBe('');
    const edges = await waitFor('the three web containers in the edge table', async () => {
      const r = await h.tessera(['policy', 'edges']);
      if (r.code !== 0) return null;
      const t = JSON.parse(r.stdout) as { edges: Array<{ client: { labels?: string[] }; port: number }> };
      const web = t.edges.filter((e) => e.port === port && e.client.labels?.includes('app=web'));
      return web.length >= 3 ? web : null;
    }, 20_000, 500);
    expect(new Set(edges.map((e) => e.client.labels!.find((l) => l.startsWith('@sys:name='))))).toEqual(new Set([`@sys:name=lrn-web-1-${suffix}`, `@sys:name=lrn-web-2-${suffix}`, `@sys:name=lrn-web-1-recreated-${suffix}`]));
    const out = join(dir, 'suggested.yaml');
    const s = await h.tessera(['policy', 'suggest', '--out', out]);
    expect(s.code, s.stderr).toBe(0);
    const text = readFileSync(out, 'utf8');
    const webLine = text.split('\n').find((l) => l.startsWith('#   web '))!;
    expect(webLine).toMatch(/stable across 3 PUs \(3 label sets\)/);
    expect(webLine).toContain('@sys:name per instance: dropped');
    expect(webLine).toContain('version version-like: dropped');
    expect(text).toMatch(/- id: web-to-api\n    from: \{app: web[^}]*\}\n    to: \{app: api[^}]*\}\n    ports: \[\d+\]/);
    const before = ((await h.status()) as unknown as { policy: { revision: string } }).policy.revision;
    writeFileSync(policyFile, text);
    await waitFor('the suggested policy', async () => ((await h.status()) as unknown as { policy: { revision: string } }).policy.revision !== before, 10_000, 100);
    const fresh = client('web-new', ['app=web', 'version=2.0.0']);
    expect(fresh.stderr).toBe('');
    const other = client('other', ['app=other']);
    expect(other.code).not.toBe(0);
    expect(other.stderr).toMatch(/refused/i);
  });
});
