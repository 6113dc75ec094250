import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { check, compilePolicy, explain, type Policy, type PolicyRequest } from '../../../src/policy/index.js';
import { isIP } from 'node:net';
import { fixture } from './helpers.js';

/** An address as the datapath passes it: the packet's 4 or 16 bytes (text that is no address stays text). */
function addrBytes(text: string): Uint8Array | string {
  if (isIP(text) === 4) return Uint8Array.from(text.split('.').map(Number));
  if (isIP(text) !== 6) return text;
  const [head, tail] = text.includes('.') ? [text.slice(0, text.lastIndexOf(':') + 1) + '0:0', text.slice(text.lastIndexOf(':') + 1)] : [text, null];
  const halves = head.split('::');
  const groups = (h: string | undefined) => (h ? h.split(':').map((g) => parseInt(g, 16)) : []);
  const l = groups(halves[0]);
  const r = groups(halves[1]);
  const all = halves.length === 2 ? [...l, ...Array(8 - l.length - r.length).fill(0), ...r] : l;
  const b = new Uint8Array(16);
  all.forEach((g, i) => ((b[i * 2] = g >> 8), (b[i * 2 + 1] = g & 0xff)));
  if (tail) b.set(tail.split('.').map(Number), 12);
  return b;
}

const KEYS = ['app', 'env', 'tier'];
const VALUES = ['a', 'b', 'c'];
const NETS = ['10.0.0.0/8', '10.1.0.0/16', '10.1.2.3', '192.168.0.0/16', '2001:db8::/32', '2001:db8:1::/48', '::/0', '0.0.0.0/0'];
const ADDRS = ['10.1.2.3', '10.2.0.1', '192.168.5.5', '8.8.8.8', '2001:db8:1::5', '2001:db9::1', '::ffff:10.1.2.3', 'bogus'];
const PORTS = [22, 80, 85, 443, 8080];

const value = fc.constantFrom(...VALUES);
const condition = fc.oneof(
  value,
  fc.uniqueArray(value, { minLength: 1, maxLength: 3 }),
  fc.record({ eq: value }),
  fc.record({ ne: value, exists: fc.constantFrom('true', 'false') }, { requiredKeys: [] }).filter((o) => Object.keys(o).length > 0),
  fc.record({ in: fc.uniqueArray(value, { minLength: 1 }), notIn: fc.uniqueArray(value, { minLength: 1 }) }, { requiredKeys: [] }).filter((o) => Object.keys(o).length > 0),
);
const selector = fc.dictionary(fc.constantFrom(...KEYS), condition, { maxKeys: 2 });
const ports = fc.oneof(fc.constantFrom(80, 443, '80-90', '1-1024', [22, '8000-8080']));

const rule = fc
  .record(
    {
      direction: fc.constantFrom('ingress', 'egress', 'both'),
      from: selector,
      to: selector,
      net: fc.constantFrom('fromNetworks', 'toNetworks'),
      nets: fc.uniqueArray(fc.constantFrom(...NETS), { minLength: 1, maxLength: 2 }),
      sameLabels: fc.constantFrom('true', ['app'], ['env', 'tier']),
      ports,
      action: fc.constantFrom('allow', 'reject', 'observe'),
      reject: fc.constantFrom('reset', 'drop'),
    },
    { requiredKeys: ['action'] },
  )
  .map((r) => {
    // Keep only combinations the language accepts.
    const out: Record<string, unknown> = { action: r.action };
    if (r.direction) out.direction = r.direction;
    if (r.ports !== undefined) out.ports = r.ports;
    if (r.action === 'reject' && r.reject) out.reject = r.reject;
    if (r.nets && r.net) {
      out[r.net] = r.nets;
      if (r.net === 'fromNetworks' && r.to) out.to = r.to;
      if (r.net === 'toNetworks' && r.from) out.from = r.from;
    } else {
      if (r.from) out.from = r.from;
      if (r.to) out.to = r.to;
      if (r.sameLabels) out.sameLabels = r.sameLabels;
    }
    return out;
  });

const policyText = fc
  .record({
    rules: fc.array(rule, { maxLength: 8 }),
    mode: fc.constantFrom('enforce', 'audit'),
    modes: fc.array(fc.record({ select: selector, mode: fc.constantFrom('enforce', 'audit') }), { maxLength: 2 }),
  })
  .map(({ rules, mode, modes }) =>
    ['version: 1', `mode: ${mode}`, `modes: ${JSON.stringify(modes)}`, rules.length ? 'rules:' : 'rules: []', ...rules.map((r, i) => `  - ${JSON.stringify({ id: `r${i}`, ...r })}`), ''].join('\n'),
  );

const labels = fc.oneof(
  fc.constant(null),
  fc.uniqueArray(fc.constantFrom(...KEYS), { maxLength: 3 }).chain((ks) =>
    fc.tuple(...ks.map((k) => value.map((v) => `${k}=${v}`))).map((ls) => Object.freeze([...ls, '@sys:host=h'].sort())),
  ),
);
const request = fc.record({
  client: labels,
  server: labels,
  port: fc.constantFrom(...PORTS),
  peerAddr: fc.constantFrom(...ADDRS),
});

function compiled(text: string): Policy {
  const r = compilePolicy(text);
  if (!r.ok) throw new Error(`generator made an invalid policy:\n${text}\n${r.errors.map((e) => e.text).join('\n')}`);
  return r.policy;
}

function toReq(q: { client: readonly string[] | null; server: readonly string[] | null; port: number; peerAddr: string }): PolicyRequest {
  return { client: q.client && { labels: q.client }, server: q.server && { labels: q.server }, port: q.port, peerAddr: q.peerAddr };
}

describe('policy properties (fast-check)', () => {
  it('compile and check never throw on random YAML-ish text, and locate every error', () => {
    const tokens = ['version: 1\n', 'rules:\n', '  - ', 'id: x', 'action: allow', 'from: ', '{', '}', '[', ']', ': ', ', ', '\n', '  ', '\t', '"', "'", '&a ', '*a', '!!str ', '---\n', '#', 'ports: ', '80-', '10.0.0.0/', '::', 'app', '-', '?', '|', '>', '%YAML 1.2\n', '\u0000', '\ud800', 'é'];
    const yamlish = fc.array(fc.oneof(fc.constantFrom(...tokens), fc.string({ maxLength: 4 })), { maxLength: 40 }).map((a) => a.join(''));
    fc.assert(
      fc.property(fc.oneof(yamlish, fc.string({ maxLength: 200 })), (text) => {
        const r = compilePolicy(text);
        const c = check(text);
        expect(c.ok).toBe(r.ok);
        if (!r.ok) {
          expect(r.errors.length).toBeGreaterThan(0);
          for (const e of r.errors) {
            expect(e.line).toBeGreaterThanOrEqual(1);
            expect(e.column).toBeGreaterThanOrEqual(1);
            expect(e.text.startsWith(`policy.yaml:${e.line}:${e.column}: `)).toBe(true);
          }
        }
      }),
      { numRuns: 1500 },
    );
  });

  it('compile never throws on mutations of a valid policy', () => {
    const base = fixture('database.yaml');
    fc.assert(
      fc.property(fc.nat(base.length), fc.nat(20), fc.string({ maxLength: 6 }), (at, del, ins) => {
        const text = base.slice(0, at) + ins + base.slice(at + del);
        const r = compilePolicy(text);
        if (r.ok) {
          // Whatever compiled must also evaluate without throwing.
          r.policy.ingress({ client: { labels: ['app=api'] }, server: { labels: ['app=db'] }, port: 5432, peerAddr: '10.0.0.1' });
          r.policy.egress({ client: { labels: ['app=api'] }, server: null, port: 5432, peerAddr: '::1' });
        }
      }),
      { numRuns: 1500 },
    );
  });

  it('explain reaches the same decision as the fast path', () => {
    fc.assert(
      fc.property(policyText, fc.array(request, { minLength: 1, maxLength: 10 }), (text, reqs) => {
        const p = compiled(text);
        for (const q of reqs) {
          const r = toReq(q);
          for (const dir of ['ingress', 'egress'] as const) {
            if ((dir === 'ingress' ? q.server : q.client) === null) continue;
            const fast = p[dir](r);
            const slow = explain(p, { from: q.client, to: q.server, port: q.port, peerAddr: q.peerAddr, direction: dir });
            expect(slow.decision).toEqual(fast);
            // The datapath asks with the packet's address bytes: the same decision as with text.
            expect(p[dir]({ ...r, peerAddr: addrBytes(q.peerAddr) })).toEqual(fast);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a rule reported shadowed or redundant never decides', () => {
    let reported = 0;
    fc.assert(
      fc.property(policyText, fc.array(request, { minLength: 20, maxLength: 40 }), (text, reqs) => {
        const c = check(text);
        const dead = new Set(
          c.warnings.filter((w) => w.code === 'shadowed' || w.code === 'redundant' || w.code === 'never-matches').flatMap((w) => /^rule "([^"]+)"/.exec(w.message)?.[1] ?? []),
        );
        reported += dead.size;
        const p = compiled(text);
        for (const q of reqs) {
          const r = toReq(q);
          for (const d of [q.server ? p.ingress(r) : null, q.client ? p.egress(r) : null]) {
            if (!d) continue;
            expect(dead.has(d.ruleId)).toBe(false);
            for (const o of d.observed ?? []) expect(dead.has(o)).toBe(false);
          }
        }
      }),
      { numRuns: 400 },
    );
    // The property is vacuous unless the generator produces dead rules.
    expect(reported).toBeGreaterThan(20);
  });

  it('compilation is deterministic', () => {
    fc.assert(
      fc.property(policyText, request, (text, q) => {
        const r = toReq(q);
        expect(compiled(text).ingress(r)).toEqual(compiled(text).ingress(r));
        expect(check(text)).toEqual(check(text));
      }),
      { numRuns: 100 },
    );
  });
});
