import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseDaemonArgs } from '../../../src/bin/daemon.js';
import { runCli } from '../../../src/cli/main.js';
import { capture } from '../cli/fake-daemon.js';

const dir = mkdtempSync(join(tmpdir(), 'tessera-fleet-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('fleet options and commands', () => {
  const base = ['--psk-file', '/p'];
  it('daemon --cluster takes its URL, operator keys and TLS files into the config', () => {
    const c = parseDaemonArgs([...base, '--cluster', 'etcd://e1:2379,e2:2379', '--operator-pub', '/a.pub', '--operator-pub', '/b.pub', '--cluster-ca', '/ca.pem']);
    if (c === 'help') throw new Error('not help');
    expect(c.cluster).toMatchObject({ url: 'etcd://e1:2379,e2:2379', operatorPubFiles: ['/a.pub', '/b.pub'], caFile: '/ca.pem', prefix: '/tessera/v1/' });
    expect(c.policyFile).toBeUndefined();
  });

  it('daemon refuses --cluster without an operator key, with --policy, or with a bad URL (usage errors)', () => {
    expect(() => parseDaemonArgs([...base, '--cluster', 'etcd://e:1'])).toThrow(/--operator-pub/);
    expect(() => parseDaemonArgs([...base, '--cluster', 'etcd://e:1', '--operator-pub', '/a', '--policy', '/p.yaml'])).toThrow(/exclude each other/);
    expect(() => parseDaemonArgs([...base, '--cluster', 'http://e:1', '--operator-pub', '/a'])).toThrow(/cluster URL/);
  });

  it('policy push refuses a policy that does not compile before touching etcd', async () => {
    const f = join(dir, 'bad.yaml');
    writeFileSync(f, 'version: 1\nrules:\n  - id: x\n    acton: allow\n');
    const c = capture();
    expect(await runCli(['policy', 'push', '--cluster', 'etcd://127.0.0.1:1', '--operator-key', join(dir, 'absent.key.json'), f], c.io)).toBe(1);
    expect(c.err.join('\n')).toMatch(/unknown key "acton"[^]*TESSERA_ERR_POLICY/);
  });

  it('cluster status against an etcd that does not answer is one line with a code', async () => {
    const c = capture();
    expect(await runCli(['cluster', 'status', '--cluster', 'etcd://127.0.0.1:1'], c.io)).toBe(1);
    expect(c.err).toHaveLength(1);
    expect(c.err[0]).toMatch(/^tessera cluster: etcd etcd:\/\/127\.0\.0\.1:1: .*ECONNREFUSED.*\[TESSERA_ERR_COMMAND\]$/);
  });
});
