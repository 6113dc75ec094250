import { describe, expect, it } from 'vitest';
import { check } from '../../../src/policy/index.js';
import { fixture } from './helpers.js';

const head = 'version: 1\nrules:\n';
function warnings(body: string): string[] {
  const r = check(head + body, { file: 'p.yaml' });
  if (!r.ok) throw new Error(r.errors.map((e) => e.text).join('\n'));
  return r.warnings.map((w) => w.text);
}
function codes(body: string): string[] {
  const r = check(head + body, { file: 'p.yaml' });
  return r.warnings.map((w) => w.code);
}

describe('check', () => {
  it('returns the errors of a policy that does not compile, and ok: false', () => {
    const r = check('version: 1\nrules:\n  - {id: a, acton: allow}\n', { file: 'p.yaml' });
    expect(r.ok).toBe(false);
    expect(r.errors.map((e) => e.text)).toEqual(['p.yaml:3:13: unknown key "acton" in a rule (did you mean "action"?)']);
  });

  it('the documented example policies check clean', () => {
    for (const f of ['walkthrough.yaml', 'dns-egress.yaml', 'database.yaml']) {
      expect(check(fixture(f), { file: f }), f).toEqual({ ok: true, errors: [], warnings: [] });
    }
  });

  it('shadowed: a later rule fully covered by an earlier one with another action', () => {
    expect(warnings('  - {id: wide, from: {app: api}, action: allow}\n  - {id: narrow, from: {app: api, env: prod}, ports: 5432, action: reject}\n')).toEqual([
      'p.yaml:4:5: warning: rule "narrow" (reject) is shadowed: rule "wide" (line 3) matches every connection it matches and says allow first',
    ]);
  });

  it('shadowed through operators: in ⊇ eq, exists ⊇ in, ne ⊇ notIn, port ranges, directions', () => {
    expect(codes('  - {id: a, from: {env: [prod, qa]}, action: allow}\n  - {id: b, from: {env: prod}, action: reject}\n')).toEqual(['shadowed']);
    expect(codes('  - {id: a, from: {env: {exists: true}}, action: allow}\n  - {id: b, from: {env: [a, b]}, action: reject}\n')).toEqual(['shadowed']);
    expect(codes('  - {id: a, from: {env: {ne: x}}, action: allow}\n  - {id: b, from: {env: {notIn: [x, y]}}, action: reject}\n')).toEqual(['shadowed']);
    expect(codes('  - {id: a, ports: "1-1000", action: allow}\n  - {id: b, ports: [22, "80-90"], action: reject}\n')).toEqual(['shadowed']);
    expect(codes('  - {id: a, action: allow}\n  - {id: b, direction: egress, from: {x: y}, action: reject}\n')).toEqual(['shadowed']);
    expect(codes('  - {id: a, action: allow}\n  - {id: b, fromNetworks: 10.0.0.0/8, action: reject}\n')).toEqual(['shadowed']);
    expect(codes('  - {id: a, action: allow, ports: 80}\n  - {id: b, action: reject, ports: 80, reject: drop}\n')).toEqual(['shadowed']);
  });

  it('not shadowed when the earlier rule covers only part of it', () => {
    expect(codes('  - {id: a, from: {env: prod}, action: allow}\n  - {id: b, from: {env: [prod, qa]}, action: reject}\n')).toEqual([]);
    expect(codes('  - {id: a, from: {env: {ne: x}}, action: allow}\n  - {id: b, from: {env: {exists: true}}, action: reject}\n')).toEqual([]);
    expect(codes('  - {id: a, ports: 80, action: allow}\n  - {id: b, ports: "80-81", action: reject}\n')).toEqual([]);
    expect(codes('  - {id: a, direction: ingress, action: allow}\n  - {id: b, action: reject}\n')).toEqual([]);
    expect(codes('  - {id: a, from: {}, action: allow}\n  - {id: b, action: reject}\n')).toEqual([]);
    expect(codes('  - {id: a, sameLabels: true, action: allow}\n  - {id: b, action: reject}\n')).toEqual([]);
    // An observe rule decides nothing, so it shadows nothing.
    expect(codes('  - {id: a, action: observe}\n  - {id: b, action: reject}\n')).toEqual([]);
  });

  it('redundant: covered by an earlier rule with the same action', () => {
    expect(warnings('  - {id: a, to: {app: db}, action: allow}\n  - {id: b, from: {app: api}, to: {app: db}, ports: 5432, action: allow}\n')).toEqual([
      'p.yaml:4:5: warning: rule "b" is redundant: rule "a" (line 3) already says allow for every connection it matches',
    ]);
  });

  it('an observe rule after a rule that decides all it would see never runs', () => {
    expect(warnings('  - {id: a, action: reject}\n  - {id: o, to: {app: db}, action: observe}\n')[0]).toContain('rule "o" (observe) never runs');
  });

  it('conflicting CIDRs: a later, narrower network inside an earlier one with another action', () => {
    const w = warnings(
      '  - {id: lan, from: {}, toNetworks: 10.0.0.0/8, ports: "1-1024", action: allow}\n' +
        '  - {id: secret, from: {}, toNetworks: [10.9.0.0/16], action: reject}\n',
    );
    expect(w).toEqual([
      'p.yaml:4:5: warning: toNetworks 10.9.0.0/16 of rule "secret" (reject) lies inside 10.0.0.0/8 of rule "lan" (line 3) (allow): ' +
        'where both rules apply, "lan" decides first; move "secret" above it if it is an exception',
    ]);
    // IPv6 too.
    expect(codes('  - {id: a, from: {}, toNetworks: "2001:db8::/32", ports: 443, action: allow}\n  - {id: b, from: {}, toNetworks: "2001:db8:1::/48", action: reject}\n')).toEqual([
      'cidr-conflict',
    ]);
  });

  it('no CIDR conflict for the exception-first pattern, disjoint networks, other ports, other PUs, or the same action', () => {
    expect(codes('  - {id: a, from: {}, toNetworks: 10.9.0.0/16, action: reject}\n  - {id: b, from: {}, toNetworks: 10.0.0.0/8, action: allow}\n')).toEqual([]);
    expect(codes('  - {id: a, from: {}, toNetworks: 10.0.0.0/8, action: allow}\n  - {id: b, from: {}, toNetworks: 11.0.0.0/8, action: reject}\n')).toEqual([]);
    expect(codes('  - {id: a, from: {}, toNetworks: 10.0.0.0/8, ports: 53, action: allow}\n  - {id: b, from: {}, toNetworks: 10.1.0.0/16, ports: 80, action: reject}\n')).toEqual([]);
    expect(codes('  - {id: a, from: {app: x}, toNetworks: 10.0.0.0/8, action: allow}\n  - {id: b, from: {app: y}, toNetworks: 10.1.0.0/16, action: reject}\n')).toEqual([]);
    expect(codes('  - {id: a, from: {}, toNetworks: "::/0", ports: 53, action: allow}\n  - {id: b, from: {}, toNetworks: 10.0.0.0/8, action: reject}\n')).toEqual([]);
  });

  it('networks within one list: nested entries and host bits', () => {
    expect(warnings('  - {id: a, from: {}, toNetworks: [10.0.0.0/8, 10.1.0.0/16, 192.168.1.1/24], action: allow}\n')).toEqual([
      'p.yaml:3:48: warning: toNetworks: 10.1.0.0/16 is inside 10.0.0.0/8, listed before it',
      'p.yaml:3:61: warning: toNetworks: "192.168.1.1/24" has host bits set; it means 192.168.1.0/24',
    ]);
  });

  it('rules and modes that can never match', () => {
    expect(warnings('  - {id: a, from: {env: {eq: a, ne: a}}, action: allow}\n')).toEqual([
      'p.yaml:3:5: warning: rule "a" never matches: its label selector contradicts itself',
    ]);
    expect(codes('  - {id: a, direction: ingress, toNetworks: 10.0.0.0/8, action: allow}\n')).toEqual(['never-matches']);
    expect(codes('  - {id: a, from: {env: {in: [a]}, team: {exists: false}}, to: {env: {exists: false, in: [b]}}, action: allow}\n')).toEqual(['never-matches']);
    const r = check('version: 1\nmodes:\n  - {select: {a: {exists: true, notIn: []}}, mode: audit}\nrules: []\n');
    expect(r.ok).toBe(false); // an empty notIn list is an error, not a warning
    const m = check('version: 1\nmodes:\n  - {select: {a: {exists: false, eq: b}}, mode: audit}\nrules: []\n', { file: 'p.yaml' });
    expect(m.warnings.map((w) => w.text)).toEqual(['p.yaml:3:5: warning: modes[0] never matches: its label selector contradicts itself']);
  });
});
