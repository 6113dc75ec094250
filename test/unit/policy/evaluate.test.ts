import { describe, expect, it } from 'vitest';
import { rules, pu, req, compile, fixture } from './helpers.js';

const api = pu('app=api', 'env=prod', 'team=core');
const db = pu('app=db', 'env=prod');
const web = pu('app=web', 'env=staging', 'tier=edge');
const bare = pu();

/** ingress decision for client → server (the server's host), as allow/ruleId. */
function ing(p: ReturnType<typeof rules>, c: ReturnType<typeof pu> | null, s: ReturnType<typeof pu>, port = 80, addr?: string): string {
  const d = p.ingress(req(c, s, port, addr));
  return `${d.allow ? 'allow' : 'reject'}:${d.ruleId}`;
}
function eg(p: ReturnType<typeof rules>, c: ReturnType<typeof pu>, s: ReturnType<typeof pu> | null, port = 80, addr?: string): string {
  const d = p.egress(req(c, s, port, addr));
  return `${d.allow ? 'allow' : 'reject'}:${d.ruleId}`;
}

describe('label operators', () => {
  it('scalar value means equals', () => {
    const p = rules('  - {id: r, from: {app: api}, action: allow}\n');
    expect(ing(p, api, db)).toBe('allow:r');
    expect(ing(p, web, db)).toBe('reject:default:reject');
    expect(ing(p, bare, db)).toBe('reject:default:reject');
  });

  it('eq operator is the same as the scalar form', () => {
    const p = rules('  - {id: r, from: {app: {eq: api}}, action: allow}\n');
    expect(ing(p, api, db)).toBe('allow:r');
    expect(ing(p, web, db)).toBe('reject:default:reject');
  });

  it('ne matches other values and a missing key', () => {
    const p = rules('  - {id: r, from: {app: {ne: api}}, action: allow}\n');
    expect(ing(p, api, db)).toBe('reject:default:reject');
    expect(ing(p, web, db)).toBe('allow:r');
    expect(ing(p, bare, db)).toBe('allow:r');
  });

  it('a list means in; the in operator is the same', () => {
    for (const sel of ['{env: [prod, qa]}', '{env: {in: [prod, qa]}}']) {
      const p = rules(`  - {id: r, from: ${sel}, action: allow}\n`);
      expect(ing(p, api, db), sel).toBe('allow:r');
      expect(ing(p, web, db), sel).toBe('reject:default:reject');
      expect(ing(p, bare, db), sel).toBe('reject:default:reject');
    }
  });

  it('notIn matches values outside the list and a missing key', () => {
    const p = rules('  - {id: r, from: {env: {notIn: [prod, qa]}}, action: allow}\n');
    expect(ing(p, api, db)).toBe('reject:default:reject');
    expect(ing(p, web, db)).toBe('allow:r');
    expect(ing(p, bare, db)).toBe('allow:r');
  });

  it('exists: true and exists: false', () => {
    const yes = rules('  - {id: r, from: {team: {exists: true}}, action: allow}\n');
    expect(ing(yes, api, db)).toBe('allow:r');
    expect(ing(yes, web, db)).toBe('reject:default:reject');
    const no = rules('  - {id: r, from: {team: {exists: false}}, action: allow}\n');
    expect(ing(no, api, db)).toBe('reject:default:reject');
    expect(ing(no, web, db)).toBe('allow:r');
  });

  it('several operators on one key and several keys must all hold', () => {
    const p = rules('  - {id: r, from: {tier: {exists: true, ne: core}, env: staging}, action: allow}\n');
    expect(ing(p, web, db)).toBe('allow:r');
    expect(ing(p, pu('tier=core', 'env=staging'), db)).toBe('reject:default:reject');
    expect(ing(p, pu('env=staging'), db)).toBe('reject:default:reject');
    expect(ing(p, pu('tier=edge', 'env=prod'), db)).toBe('reject:default:reject');
  });

  it('{} selects every Tessera PU but not a peer without Tessera', () => {
    const p = rules('  - {id: r, from: {}, action: allow}\n');
    expect(ing(p, bare, db)).toBe('allow:r');
    expect(ing(p, null, db, 80, '10.0.0.1')).toBe('reject:default:reject');
  });

  it('an omitted side is any peer, with or without Tessera', () => {
    const p = rules('  - {id: r, to: {app: db}, action: allow}\n');
    expect(ing(p, api, db)).toBe('allow:r');
    expect(ing(p, null, db, 80, '192.0.2.1')).toBe('allow:r');
    expect(ing(p, null, db)).toBe('allow:r');
  });

  it('system labels (@ keys) can be selected', () => {
    const p = rules('  - {id: r, from: {"@sys:image": nginx}, action: allow}\n');
    expect(ing(p, pu('@sys:image=nginx', 'app=x'), db)).toBe('allow:r');
    expect(ing(p, pu('app=x'), db)).toBe('reject:default:reject');
  });

  it('values are strings exactly as written (failsafe YAML)', () => {
    const p = rules('  - {id: r, from: {version: 1.10, flag: no, empty: ""}, action: allow}\n');
    expect(ing(p, pu('version=1.10', 'flag=no', 'empty='), db)).toBe('allow:r');
    expect(ing(p, pu('version=1.1', 'flag=no', 'empty='), db)).toBe('reject:default:reject');
    expect(ing(p, pu('version=1.10', 'flag=false', 'empty='), db)).toBe('reject:default:reject');
  });
});

describe('actions and evaluation order', () => {
  it('the first matching allow/reject rule decides, in file order', () => {
    const p = rules(
      '  - {id: first, from: {app: api}, action: reject}\n' + //
        '  - {id: second, from: {app: api}, action: allow}\n' +
        '  - {id: third, action: allow}\n',
    );
    expect(ing(p, api, db)).toBe('reject:first');
    expect(ing(p, web, db)).toBe('allow:third');
  });

  it('allow carries action allow; reject carries action reject and the rule reject mode', () => {
    const p = rules(
      '  - {id: a, ports: 1, action: allow}\n' +
        '  - {id: r, ports: 2, action: reject}\n' +
        '  - {id: rr, ports: 3, action: reject, reject: reset}\n' +
        '  - {id: rd, ports: 4, action: reject, reject: drop}\n',
    );
    expect(p.ingress(req(api, db, 1))).toEqual({ allow: true, ruleId: 'a', action: 'allow', audit: false });
    expect(p.ingress(req(api, db, 2))).toEqual({ allow: false, ruleId: 'r', action: 'reject', audit: false });
    expect(p.ingress(req(api, db, 3))).toEqual({ allow: false, ruleId: 'rr', action: 'reject', audit: false, reject: 'reset' });
    expect(p.ingress(req(api, db, 4))).toEqual({ allow: false, ruleId: 'rd', action: 'reject', audit: false, reject: 'drop' });
  });

  it('observe records the rule and evaluation continues to the next rule', () => {
    const p = rules(
      '  - {id: o1, to: {app: db}, action: observe}\n' +
        '  - {id: o2, from: {app: web}, action: observe}\n' +
        '  - {id: ok, from: {app: api}, action: allow}\n',
    );
    expect(p.ingress(req(api, db, 80))).toEqual({ allow: true, ruleId: 'ok', action: 'allow', audit: false, observed: ['o1'] });
    expect(p.ingress(req(web, db, 80))).toEqual({ allow: false, ruleId: 'default:reject', action: 'reject', audit: false, observed: ['o1', 'o2'] });
    // Without a matching observe rule the decision has no `observed` field at all.
    expect(p.ingress(req(api, web, 80))).not.toHaveProperty('observed');
  });

  it('nothing matches: reject with rule id default:reject; an empty rule list refuses everything', () => {
    const p = rules('  - {id: x, from: {app: nobody}, action: allow}\n');
    expect(p.ingress(req(api, db, 80))).toEqual({ allow: false, ruleId: 'default:reject', action: 'reject', audit: false });
    const empty = compile('version: 1\nrules: []\n');
    expect(empty.ingress(req(api, api, 80)).allow).toBe(false);
    expect(empty.egress(req(api, api, 80)).allow).toBe(false);
  });

  it('rules without an id get rule-N by position', () => {
    const p = rules('  - {from: {app: web}, action: allow}\n  - {from: {app: api}, action: allow}\n');
    expect(ing(p, api, db)).toBe('allow:rule-2');
  });

  it('decisions are frozen and reused (no allocation without observe rules)', () => {
    const p = rules('  - {id: r, action: allow}\n');
    const a = p.ingress(req(api, db, 80));
    expect(Object.isFrozen(a)).toBe(true);
    expect(p.ingress(req(web, db, 81))).toBe(a);
  });
});

describe('ingress vs egress', () => {
  it('direction both (default) takes part on both hosts', () => {
    const p = rules('  - {id: r, from: {app: api}, to: {app: db}, action: allow}\n');
    expect(ing(p, api, db)).toBe('allow:r');
    expect(eg(p, api, db)).toBe('allow:r');
    expect(eg(p, db, api)).toBe('reject:default:reject');
  });

  it('direction ingress applies only on the server host, egress only on the client host', () => {
    const i = rules('  - {id: r, direction: ingress, from: {app: api}, to: {app: db}, action: allow}\n');
    expect(ing(i, api, db)).toBe('allow:r');
    expect(eg(i, api, db)).toBe('reject:default:reject');
    const e = rules('  - {id: r, direction: egress, from: {app: api}, to: {app: db}, action: allow}\n');
    expect(ing(e, api, db)).toBe('reject:default:reject');
    expect(eg(e, api, db)).toBe('allow:r');
  });

  it('mutual authorization: a connection passes only if both sides allow it', () => {
    // The server host runs a policy that lets api in; the client host's policy forbids api
    // from calling db. Each host evaluates its own side with its own policy.
    const serverHost = rules('  - {id: in, from: {app: api}, to: {app: db}, action: allow}\n');
    const clientHost = rules('  - {id: out, from: {app: api}, to: {app: web}, action: allow}\n');
    const both = serverHost.ingress(req(api, db, 5432)).allow && clientHost.egress(req(api, db, 5432)).allow;
    expect(serverHost.ingress(req(api, db, 5432)).allow).toBe(true);
    expect(clientHost.egress(req(api, db, 5432)).allow).toBe(false);
    expect(both).toBe(false);
  });
});

describe('ports', () => {
  const p = rules('  - {id: r, ports: [80, "8000-8080", 443, "9000 - 9001"], action: allow}\n');
  it.each([
    [80, true],
    [79, false],
    [81, false],
    [443, true],
    [7999, false],
    [8000, true],
    [8040, true],
    [8080, true],
    [8081, false],
    [9000, true],
    [9001, true],
    [9002, false],
    [65535, false],
  ])('port %i → %s', (port, allow) => {
    expect(p.ingress(req(api, db, port)).allow).toBe(allow);
  });

  it('a single port, the full range and overlapping ranges', () => {
    expect(rules('  - {id: r, ports: 5432, action: allow}\n').ingress(req(api, db, 5432)).allow).toBe(true);
    const all = rules('  - {id: r, ports: "1-65535", action: allow}\n');
    expect(all.ingress(req(api, db, 1)).allow && all.ingress(req(api, db, 65535)).allow).toBe(true);
    const overlap = rules('  - {id: r, ports: ["10-20", "15-30", "31", "40-50"], action: allow}\n');
    expect([9, 10, 25, 30, 31, 32, 39, 40, 50, 51].map((n) => overlap.ingress(req(api, db, n)).allow)).toEqual([
      false, true, true, true, true, false, false, true, true, false,
    ]);
  });
});

describe('external networks', () => {
  const p = rules(
    '  - {id: dns4, direction: egress, from: {}, toNetworks: [10.0.0.53, 192.168.0.0/16], ports: 53, action: allow}\n' +
      '  - {id: dns6, from: {}, toNetworks: ["2001:db8::/32", "fe80::1"], ports: 53, action: allow}\n' +
      '  - {id: lb, to: {app: web}, fromNetworks: [0.0.0.0/0, "::/0"], ports: 443, action: allow}\n' +
      '  - {id: lan-out, from: {app: web}, toNetworks: 10.0.0.0/8, action: reject}\n',
  );

  it.each([
    ['10.0.0.53', 53, 'allow:dns4'],
    ['10.0.0.52', 53, 'reject:lan-out'],
    ['10.0.0.54', 53, 'reject:lan-out'],
    ['192.168.0.0', 53, 'allow:dns4'],
    ['192.168.255.255', 53, 'allow:dns4'],
    ['192.169.0.0', 53, 'reject:default:reject'],
    ['192.167.255.255', 53, 'reject:default:reject'],
    ['10.0.0.53', 54, 'reject:lan-out'],
    ['2001:db8::1', 53, 'allow:dns6'],
    ['2001:0db8:ffff:ffff:ffff:ffff:ffff:ffff', 53, 'allow:dns6'],
    ['2001:db9::', 53, 'reject:default:reject'],
    ['2001:db7:ffff::', 53, 'reject:default:reject'],
    ['fe80::1', 53, 'allow:dns6'],
    ['fe80::2', 53, 'reject:default:reject'],
    ['FE80:0:0:0:0:0:0:1', 53, 'allow:dns6'],
    ['::ffff:10.0.0.53', 53, 'allow:dns4'],
    ['::ffff:11.0.0.1', 53, 'reject:default:reject'],
    ['not-an-address', 53, 'reject:default:reject'],
  ])('egress from web to %s:%i → %s', (addr, port, want) => {
    expect(eg(p, web, null, port, addr)).toBe(want);
  });

  it('networks never match a peer that runs Tessera, whatever its address', () => {
    expect(eg(p, web, db, 53, '10.0.0.53')).toBe('reject:default:reject');
    expect(ing(p, api, web, 443, '192.0.2.1')).toBe('reject:default:reject');
  });

  it('fromNetworks admits clients without Tessera on ingress, v4 and v6', () => {
    expect(ing(p, null, web, 443, '203.0.113.9')).toBe('allow:lb');
    expect(ing(p, null, web, 443, '2001:db8:1::9')).toBe('allow:lb');
    expect(ing(p, null, web, 80, '203.0.113.9')).toBe('reject:default:reject');
    expect(ing(p, null, db, 443, '203.0.113.9')).toBe('reject:default:reject');
    // No address given (an old caller): networks cannot match.
    expect(ing(p, null, web, 443)).toBe('reject:default:reject');
  });

  it('toNetworks never apply on ingress (the server is the local PU there)', () => {
    expect(ing(p, null, web, 53, '10.0.0.53')).toBe('reject:default:reject');
  });

  it('/0, /32, /128 and host-bit edges', () => {
    const q = rules(
      '  - {id: any4, from: {}, toNetworks: 0.0.0.0/0, ports: 1, action: allow}\n' +
        '  - {id: any6, from: {}, toNetworks: "::/0", ports: 2, action: allow}\n' +
        '  - {id: one4, from: {}, toNetworks: 255.255.255.255/32, ports: 3, action: allow}\n' +
        '  - {id: one6, from: {}, toNetworks: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", ports: 4, action: allow}\n' +
        '  - {id: odd, from: {}, toNetworks: 10.1.2.3/15, ports: 5, action: allow}\n' +
        '  - {id: odd6, from: {}, toNetworks: "2001:db8:8000::/33", ports: 6, action: allow}\n',
    );
    expect(eg(q, api, null, 1, '0.0.0.0')).toBe('allow:any4');
    expect(eg(q, api, null, 1, '255.255.255.255')).toBe('allow:any4');
    expect(eg(q, api, null, 1, '::1')).toBe('reject:default:reject');
    expect(eg(q, api, null, 2, '::')).toBe('allow:any6');
    expect(eg(q, api, null, 2, '1.2.3.4')).toBe('reject:default:reject');
    expect(eg(q, api, null, 3, '255.255.255.255')).toBe('allow:one4');
    expect(eg(q, api, null, 3, '255.255.255.254')).toBe('reject:default:reject');
    expect(eg(q, api, null, 4, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff')).toBe('allow:one6');
    expect(eg(q, api, null, 4, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe')).toBe('reject:default:reject');
    // 10.1.2.3/15 means 10.0.0.0/15: 10.0.0.0 .. 10.1.255.255
    expect(eg(q, api, null, 5, '10.0.0.0')).toBe('allow:odd');
    expect(eg(q, api, null, 5, '10.1.255.255')).toBe('allow:odd');
    expect(eg(q, api, null, 5, '10.2.0.0')).toBe('reject:default:reject');
    expect(eg(q, api, null, 6, '2001:db8:8000::')).toBe('allow:odd6');
    expect(eg(q, api, null, 6, '2001:db8:ffff:ffff::1')).toBe('allow:odd6');
    expect(eg(q, api, null, 6, '2001:db8:7fff::1')).toBe('reject:default:reject');
  });
});

describe('sameLabels', () => {
  it('true compares whole user label sets and ignores system labels', () => {
    const p = rules('  - {id: same, sameLabels: true, action: allow}\n');
    expect(ing(p, pu('app=nginx', '@sys:host=a'), pu('@sys:host=b', 'app=nginx'))).toBe('allow:same');
    expect(ing(p, pu('app=nginx', 'env=prod'), pu('app=nginx'))).toBe('reject:default:reject');
    expect(ing(p, pu(), pu('@sys:host=b'))).toBe('allow:same');
    expect(ing(p, null, pu('app=nginx'), 80, '10.0.0.1')).toBe('reject:default:reject');
  });

  it('a key list requires each key on both sides with equal values', () => {
    const p = rules('  - {id: tenant, sameLabels: [tenant], action: allow}\n');
    expect(ing(p, pu('tenant=a', 'app=x'), pu('tenant=a', 'app=y'))).toBe('allow:tenant');
    expect(ing(p, pu('tenant=a'), pu('tenant=b'))).toBe('reject:default:reject');
    expect(ing(p, pu('app=x'), pu('app=x'))).toBe('reject:default:reject');
  });

  it('sameLabels: false is no condition', () => {
    const p = rules('  - {id: r, sameLabels: false, action: allow}\n');
    expect(ing(p, api, db)).toBe('allow:r');
  });
});

describe('audit mode', () => {
  const p = compile(fixture('database.yaml'));
  const stagingDb = pu('app=db', 'env=staging');

  it('a refusal for a PU in audit mode is let through and marked audit', () => {
    expect(p.ingress(req(web, stagingDb, 5432))).toEqual({
      allow: true,
      ruleId: 'db-closed',
      action: 'reject',
      audit: true,
      reject: 'drop',
      observed: ['db-probe'],
      mode: 'audit',
    });
    expect(p.ingress(req(web, db, 5432))).toMatchObject({ allow: false, ruleId: 'db-closed', audit: false });
  });

  it('an allow in audit mode is a plain allow, marked with the mode', () => {
    expect(p.ingress(req(api, stagingDb, 5432))).toEqual({ allow: true, ruleId: 'api-to-db', action: 'allow', audit: false, mode: 'audit' });
  });

  it('the mode is the local PU’s: the server on ingress, the client on egress', () => {
    // stagingDb as the client: on its own host (egress) it is in audit mode.
    expect(p.egress(req(stagingDb, web, 9))).toMatchObject({ allow: true, ruleId: 'default:reject', audit: true });
    // On the web host (ingress, web is local and enforced) the same connection is refused.
    expect(p.ingress(req(stagingDb, web, 9))).toMatchObject({ allow: false, audit: false });
  });

  it('mode: audit for everyone, with an enforce exception; the first matching modes entry wins', () => {
    const q = compile(
      'version: 1\nmode: audit\nmodes:\n  - {select: {app: bank}, mode: enforce}\n  - {select: {app: bank}, mode: audit}\nrules: []\n',
    );
    expect(q.ingress(req(api, db, 1))).toMatchObject({ allow: true, audit: true, ruleId: 'default:reject' });
    expect(q.ingress(req(api, pu('app=bank'), 1))).toMatchObject({ allow: false, audit: false });
  });
});

describe('policy name', () => {
  it('comes from name:, else the file name', () => {
    expect(compile('version: 1\nname: prod rules\nrules: []\n').name).toBe('prod rules');
    expect(compile('version: 1\nrules: []\n', '/etc/tessera/site.yaml').name).toBe('site');
  });
});
