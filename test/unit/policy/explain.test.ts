import { describe, expect, it } from 'vitest';
import { explain, createDefaultPolicy, type Policy } from '../../../src/policy/index.js';
import { TesseraError } from '../../../src/errors.js';
import { compile, fixture } from './helpers.js';

const db = compile(fixture('database.yaml'));

describe('explain', () => {
  it('walks the rules in order with a reason for each until one decides', () => {
    const e = explain(db, { from: ['app=web'], to: ['app=db', 'env=prod'], port: 5432, direction: 'ingress' });
    expect(e.decision).toEqual({ allow: false, ruleId: 'db-closed', action: 'reject', audit: false, reject: 'drop', observed: ['db-probe'] });
    expect(e.chain).toEqual([
      { direction: 'ingress', ruleId: 'api-to-db', line: 11, matched: false, why: 'from: client has app=web, the rule needs app=api' },
      { direction: 'ingress', ruleId: 'db-probe', line: 16, matched: true, why: 'observe: from any peer to {app=db}, any port — observed, evaluation continues' },
      { direction: 'ingress', ruleId: 'db-closed', line: 20, matched: true, why: 'reject (drop): from any peer to {app=db}, any port' },
    ]);
    expect(e.ingress?.decision).toBe(e.decision);
    expect(e.egress).toBeUndefined();
  });

  it('reasons for ports, missing labels, directions and networks', () => {
    const p = compile(
      'version: 1\nrules:\n' +
        '  - {id: p, ports: "8000-8080", action: allow}\n' +
        '  - {id: l, from: {team: {exists: true}}, action: allow}\n' +
        '  - {id: d, direction: egress, action: allow}\n' +
        '  - {id: n, to: {app: web}, fromNetworks: 10.0.0.0/8, action: allow}\n',
    );
    const whys = explain(p, { from: null, to: ['app=web'], port: 443, peerAddr: '192.0.2.1' }).chain.map((s) => `${s.ruleId}: ${s.why}`);
    expect(whys).toEqual([
      'p: port 443 is not in 8000-8080',
      'l: from: the client has no Tessera identity, and from selects Tessera PUs',
      'd: applies to egress only',
      'n: fromNetworks: 192.0.2.1 is not in 10.0.0.0/8',
      'default:reject: no rule matched: the default is reject',
    ]);
    const tagged = explain(p, { from: ['app=x'], to: ['app=web'], port: 443, direction: 'ingress' }).chain.map((s) => s.why);
    expect(tagged[1]).toBe('from: client has no label team, the rule needs team exists');
    expect(tagged[3]).toBe('fromNetworks: the client runs Tessera; networks match only peers without Tessera');
    const ok = explain(p, { from: null, to: ['app=web'], port: 443, peerAddr: '10.1.2.3' });
    expect(ok.decision).toMatchObject({ allow: true, ruleId: 'n' });
  });

  it('both directions: mutual authorization, reported per side', () => {
    const p = compile('version: 1\nrules:\n  - {id: in, direction: ingress, from: {app: api}, to: {app: db}, action: allow}\n');
    const e = explain(p, { from: ['app=api'], to: ['app=db'], port: 5432 });
    expect(e.ingress?.decision).toMatchObject({ allow: true, ruleId: 'in' });
    expect(e.egress?.decision).toMatchObject({ allow: false, ruleId: 'default:reject' });
    expect(e.decision).toBe(e.egress?.decision);
    expect(e.chain.map((s) => `${s.direction}:${s.ruleId}:${s.matched}`)).toEqual([
      'ingress:in:true',
      'egress:in:false',
      'egress:default:reject:true',
    ]);
  });

  it('a side without Tessera is not evaluated (it runs no policy)', () => {
    const e = explain(createDefaultPolicy(), { from: null, to: ['app=nginx'], port: 80 });
    expect(e.egress).toBeUndefined();
    expect(e.decision).toMatchObject({ allow: false, ruleId: 'default:reject' });
    expect(e.chain[0]!.why).toBe('sameLabels: both sides must be Tessera PUs');
  });

  it('says when audit mode lets a refusal through', () => {
    const e = explain(db, { from: ['app=web'], to: ['app=db', 'env=staging'], port: 5432, direction: 'ingress' });
    expect(e.decision).toMatchObject({ allow: true, audit: true, ruleId: 'db-closed' });
    expect(e.chain.at(-1)!.why).toContain('audit mode');
  });

  it('refuses queries it cannot answer', () => {
    const fake: Policy = { name: 'x', ingress: () => ({ allow: true, ruleId: 'x' }), egress: () => ({ allow: true, ruleId: 'x' }) };
    expect(() => explain(fake, { from: [], to: [], port: 1 })).toThrow(TesseraError);
    expect(() => explain(db, { from: [], to: null, port: 1, direction: 'ingress' })).toThrow(/to must be a PU/);
    expect(() => explain(db, { from: null, to: null, port: 1 })).toThrow(/at least one side/);
    expect(() => explain(db, { from: [], to: [], port: 70000 })).toThrow(/not a TCP port/);
  });
});
