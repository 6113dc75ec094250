import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createBackoff } from '../../../src/fleet/backoff.js';
import { createBundleCache } from '../../../src/fleet/cache.js';
import { prefixEnd } from '../../../src/fleet/etcd.js';
import { readOperatorKeyFile, readOperatorPublicFile, writeFileAtomic } from '../../../src/fleet/files.js';
import { createLayout, MAX_FLOW_SLOTS } from '../../../src/fleet/layout.js';
import { createOperatorKey, operatorKeyToJson, operatorPublicToJson } from '../../../src/fleet/operator-key.js';
import { parseClusterUrl } from '../../../src/fleet/url.js';

const dir = mkdtempSync(join(tmpdir(), 'tessera-fleet-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('layout', () => {
  const l = createLayout('/t/');
  it('puts every key under the prefix and names bundle keys only', () => {
    expect(l.bundle('policy')).toBe('/t/bundles/policy');
    expect(l.kindOf('/t/bundles/trust')).toBe('trust');
    expect(l.kindOf('/t/bundles/trustx')).toBeNull();
    expect(l.kindOf('/t/hosts/a')).toBeNull();
    expect(l.statusOf('h1')).toBe('/t/status/h1');
  });
  it('bounds flow slots and refuses host ids that would escape their key', () => {
    expect(l.flowSlot('h1', MAX_FLOW_SLOTS - 1)).toBe(`/t/flows/h1/${MAX_FLOW_SLOTS - 1}`);
    expect(() => l.flowSlot('h1', MAX_FLOW_SLOTS)).toThrow(/flow slot/);
    expect(() => l.host('../x')).toThrow();
    expect(() => createLayout('no-slash')).toThrow(/prefix/);
  });
  it('computes etcd prefix range ends', () => {
    expect(prefixEnd(Buffer.from('/a/')).toString()).toBe('/a0');
    expect([...prefixEnd(Buffer.from([0x61, 0xff]))]).toEqual([0x62]);
  });
});

describe('cluster URL', () => {
  it('parses members and TLS', () => {
    expect(parseClusterUrl('etcd://127.0.0.1:2379,e2:2380')).toEqual({ tls: false, endpoints: [{ host: '127.0.0.1', port: 2379 }, { host: 'e2', port: 2380 }] });
    expect(parseClusterUrl('etcds://e:1').tls).toBe(true);
  });
  it('refuses what is not etcd://HOST:PORT', () => {
    for (const bad of ['http://a:1', 'etcd://a', 'etcd://a:0', 'etcd://a:70000', 'etcd://']) expect(() => parseClusterUrl(bad)).toThrow(/cluster URL/);
  });
});

describe('backoff', () => {
  it('grows exponentially to the cap, jittered in [step/2, step], and resets', () => {
    const lo = createBackoff({ baseMs: 100, maxMs: 1000, random: () => 0 });
    expect([lo.next(), lo.next(), lo.next(), lo.next(), lo.next()]).toEqual([50, 100, 200, 400, 500]);
    lo.reset();
    expect(lo.next()).toBe(50);
    const hi = createBackoff({ baseMs: 100, maxMs: 1000, random: () => 0.999999 });
    expect([hi.next(), hi.next(), hi.next(), hi.next(), hi.next()]).toEqual([100, 200, 400, 800, 1000]);
  });
});

describe('key files and the fail-static cache', () => {
  const op = createOperatorKey();
  it('refuses an operator key readable by group or others and reads it at 0600', () => {
    const p = join(dir, 'op.key');
    writeFileSync(p, operatorKeyToJson(op), { mode: 0o644 });
    chmodSync(p, 0o644);
    expect(() => readOperatorKeyFile(p)).toThrow(/chmod 600/);
    chmodSync(p, 0o600);
    expect(readOperatorKeyFile(p).keyId).toBe(op.keyId);
    const pub = join(dir, 'op.pub');
    writeFileSync(pub, operatorPublicToJson(op));
    expect(readOperatorPublicFile(pub).keyId).toBe(op.keyId);
    expect(() => readOperatorPublicFile(join(dir, 'absent.pub'))).toThrow(/ENOENT/);
  });
  it('writes atomically (no temp file left) and keeps bundles and the follow point', () => {
    const c = createBundleCache(join(dir, 'cache'));
    expect(c.loadBundle('policy')).toBeNull();
    c.saveBundle('policy', 'one');
    c.saveBundle('policy', 'two');
    c.saveFollowPoint({ clusterId: '42', revision: 9, savedAt: 'x' });
    expect(c.loadBundle('policy')).toBe('two');
    expect(c.loadFollowPoint()).toEqual({ clusterId: '42', revision: 9, savedAt: 'x' });
    expect(readdirSync(c.dir).sort()).toEqual(['follow.json', 'policy.bundle']);
    writeFileAtomic(join(c.dir, 'follow.json'), '{"clusterId":1}');
    expect(c.loadFollowPoint()).toBeNull();
    expect(readFileSync(join(c.dir, 'policy.bundle'), 'utf8')).toBe('two');
  });
});
