// The host directory the workers get (src/fleet/directory.ts): only entries whose certificate
// verifies, has not expired and is not revoked; an address two hosts claim counts for neither.
import { describe, expect, it } from 'vitest';
import { createPublicKey } from 'node:crypto';
import { buildDirectory, canonicalAddress } from '../../../src/fleet/directory.js';
import { createLayout } from '../../../src/fleet/layout.js';
import { createCa, createHostKey, createHostTrust, issueHostCertificate } from '../../../src/identity/index.js';

const layout = createLayout();
const KEY_A = Buffer.alloc(32, 1).toString('base64url');
const KEY_B = Buffer.alloc(32, 2).toString('base64url');

async function entry(ca: Awaited<ReturnType<typeof createCa>>, host: string, addresses: string[], handshakeKey: string | null, days = 7, now?: number) {
  const k = await createHostKey();
  const certificate = await issueHostCertificate(ca, { host, hostPublicJwk: k.publicJwk, validityDays: days, ...(now !== undefined ? { now } : {}) });
  return { key: layout.host(host), value: JSON.stringify({ host, certificate, handshakeKey, addresses, publishedAt: new Date().toISOString() }) };
}

describe('buildDirectory', () => {
  it('maps addresses to keys of verified, unrevoked, unexpired hosts only', async () => {
    const ca = await createCa('ca');
    const other = await createCa('other');
    const caKeys = [createPublicKey({ key: ca.publicJwk as never, format: 'jwk' })];
    const now = Date.now() / 1000;
    const raw = [
      await entry(ca, 'host-a', ['10.0.0.1', '2001:DB8:0:0::1'], KEY_A),
      await entry(ca, 'host-b', ['10.0.0.2'], KEY_B),
      await entry(ca, 'host-c', ['10.0.0.3'], KEY_B),
      await entry(other, 'host-d', ['10.0.0.4'], KEY_A),
      await entry(ca, 'host-e', ['10.0.0.5'], KEY_A, 1, now - 3 * 86400),
      await entry(ca, 'host-f', ['10.0.0.2'], KEY_A),
      await entry(ca, 'host-g', ['10.0.0.7'], null),
      { key: layout.host('host-h'), value: '{"host":"host-h"' },
    ];
    const v = buildDirectory(raw, { layout, caKeys, trust: createHostTrust({ revoked: ['host-c'] }), now });
    expect(v.hostKeys).toEqual({ '10.0.0.1': KEY_A, '2001:db8::1': KEY_A });
    expect(v.conflicts).toEqual(['10.0.0.2 (host-b, host-f)']);
    expect(v.hosts).toEqual(['host-a', 'host-b', 'host-f', 'host-g']);
    expect(v.refused.join('\n')).toMatch(/host-c: revoked/);
    expect(v.refused.join('\n')).toMatch(/host-d: certificate refused \(untrusted-issuer\)/);
    expect(v.refused.join('\n')).toMatch(/host-e: certificate expired/);
    expect(v.refused.join('\n')).toMatch(/host-h: not valid JSON/);
    expect(v.directory.lookup('10.0.0.1')).toEqual({ host: 'host-a', key: new Uint8Array(Buffer.alloc(32, 1)) });
    expect(v.directory.lookup('10.0.0.2')).toBeUndefined();
  });

  it('canonical addresses are RFC 5952 text', () => {
    expect(canonicalAddress('2001:0DB8:0000:0000:0000:0000:0000:0001')).toBe('2001:db8::1');
    expect(canonicalAddress('10.1.2.3')).toBe('10.1.2.3');
    expect(canonicalAddress('10.1.2')).toBeNull();
    expect(canonicalAddress('fe80::1%eth0')).toBeNull();
  });
});
