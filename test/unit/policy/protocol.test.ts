// Rules' `protocol:` (issue 13): default both, tcp or udp narrows; explain and check know it.
import { describe, expect, it } from 'vitest';
import { check, compilePolicy, createDefaultPolicy, explain, type Policy } from '../../../src/policy/index.js';

const compile = (lines: string[]): Policy => {
  const r = compilePolicy(['version: 1', 'rules:', ...lines].join('\n'));
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
};
const dns = { labels: ['app=dns'] };

describe('policy protocol', () => {
  it('a rule without protocol covers TCP and UDP; protocol: udp or tcp narrows it', () => {
    const p = compile([
      '  - id: udp-only', '    from: { app: dns }', '    to: { app: dns }', '    protocol: udp', '    ports: 53', '    action: allow',
      '  - id: any', '    from: { app: web }', '    to: { app: web }', '    action: allow',
    ]);
    expect(p.ingress({ client: dns, server: dns, port: 53, protocol: 'udp' }).ruleId).toBe('udp-only');
    expect(p.ingress({ client: dns, server: dns, port: 53, protocol: 'tcp' }).allow).toBe(false);
    expect(p.ingress({ client: dns, server: dns, port: 53 }).allow).toBe(false); // absent: tcp
    const web = { labels: ['app=web'] };
    for (const protocol of ['tcp', 'udp'] as const) expect(p.egress({ client: web, server: web, port: 8080, protocol }).ruleId).toBe('any');
  });

  it('the built-in same-labels policy covers UDP', () => {
    const p = createDefaultPolicy();
    expect(p.ingress({ client: dns, server: dns, port: 5353, protocol: 'udp' }).allow).toBe(true);
    expect(p.ingress({ client: { labels: ['app=other'] }, server: dns, port: 5353, protocol: 'udp' }).allow).toBe(false);
  });

  it('UDP network rules for peers without Tessera', () => {
    const p = compile(['  - id: resolver', '    from: { app: dns }', '    toNetworks: 10.0.0.53/32', '    protocol: udp', '    ports: 53', '    action: allow']);
    expect(p.egress({ client: dns, server: null, port: 53, protocol: 'udp', peerAddr: '10.0.0.53' }).allow).toBe(true);
    expect(p.egress({ client: dns, server: null, port: 53, protocol: 'tcp', peerAddr: '10.0.0.53' }).allow).toBe(false);
    expect(p.egress({ client: dns, server: null, port: 53, protocol: 'udp', peerAddr: '10.0.0.54' }).allow).toBe(false);
  });

  it('explain says why a rule of the other protocol did not match; check does not call rules of different protocols shadowed', () => {
    const p = compile(['  - id: tcp-dns', '    from: { app: dns }', '    to: { app: dns }', '    protocol: tcp', '    action: allow']);
    const e = explain(p, { from: ['app=dns'], to: ['app=dns'], port: 53, protocol: 'udp', direction: 'ingress' });
    expect(e.decision.allow).toBe(false);
    expect(e.chain[0]!.why).toMatch(/protocol udp: the rule is for tcp only/);
    const text = ['version: 1', 'rules:', '  - id: a', '    from: { app: dns }', '    protocol: tcp', '    action: reject', '  - id: b', '    from: { app: dns }', '    protocol: udp', '    action: allow'].join('\n');
    expect(check(text).warnings.filter((w) => w.code === 'shadowed')).toEqual([]);
    const shadow = text.replace('protocol: udp', 'protocol: tcp');
    expect(check(shadow).warnings.some((w) => w.code === 'shadowed')).toBe(true);
    expect(check(text.replace('protocol: udp', 'protocol: sctp')).ok).toBe(false);
  });
});
