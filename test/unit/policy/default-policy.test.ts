import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { check, createDefaultPolicy, DEFAULT_POLICY_TEXT, explain, type PolicyRequest } from '../../../src/policy/index.js';
import { ROOT, pu, req } from './helpers.js';

// The policy as it was hand-written before the language (commit 36dc99f), verbatim in logic:
// both protected and equal user labels.
function previousDefault(r: PolicyRequest): boolean {
  if (!r.client || !r.server) return false;
  const key = (ls: readonly string[]): string => ls.filter((l) => l.charCodeAt(0) !== 64).join('\n');
  return key(r.client.labels) === key(r.server.labels);
}

describe('the built-in default policy', () => {
  it('policy/default.yaml is byte for byte the embedded DEFAULT_POLICY_TEXT', () => {
    expect(readFileSync(join(ROOT, 'policy/default.yaml'), 'utf8')).toBe(DEFAULT_POLICY_TEXT);
  });

  it('checks clean: no errors, no warnings', () => {
    expect(check(DEFAULT_POLICY_TEXT, { file: 'policy/default.yaml' })).toEqual({ ok: true, errors: [], warnings: [] });
  });

  it('keeps the name tessera status shows', () => {
    expect(createDefaultPolicy().name).toBe('default (same user labels)');
  });

  const nginx = pu('app=nginx');
  const cases: Array<[string, PolicyRequest]> = [
    ['same single label', req(nginx, pu('app=nginx'), 80)],
    ['same labels, other port', req(nginx, pu('app=nginx'), 5432)],
    ['different value', req(pu('app=other'), nginx, 80)],
    ['client has one more label', req(pu('app=nginx', 'env=prod'), nginx, 80)],
    ['server has one more label', req(nginx, pu('app=nginx', 'env=prod'), 80)],
    ['same user labels, different system labels', req(pu('@sys:host=a', 'app=nginx'), pu('@sys:host=b', 'app=nginx'), 80)],
    ['same system labels, different user labels', req(pu('@sys:host=a', 'app=a'), pu('@sys:host=a', 'app=b'), 80)],
    ['both without labels', req(pu(), pu(), 80)],
    ['only system labels on one side', req(pu(), pu('@sys:image=x'), 80)],
    ['empty value vs missing key', req(pu('app='), pu(), 80)],
    ['untagged client', req(null, nginx, 80)],
    ['untagged client with address', req(null, nginx, 80, '10.213.1.1')],
    ['untagged server', req(nginx, null, 80, '10.213.1.2')],
    ['several labels, same set', req(pu('a=1', 'b=2', 'c=3'), pu('a=1', 'b=2', 'c=3'), 443)],
    ['several labels, one differs', req(pu('a=1', 'b=2', 'c=3'), pu('a=1', 'b=2', 'c=4'), 443)],
  ];

  it.each(cases)('%s: same answer as the previous hand-written default, on both hosts', (_name, r) => {
    const p = createDefaultPolicy();
    const want = previousDefault(r);
    if (r.server) expect(p.ingress(r).allow).toBe(want);
    if (r.client) expect(p.egress(r).allow).toBe(want);
  });

  it('an allow is rule same-labels, everything else default:reject', () => {
    const p = createDefaultPolicy();
    expect(p.ingress(req(nginx, pu('app=nginx'), 80)).ruleId).toBe('same-labels');
    expect(p.ingress(req(pu('app=x'), nginx, 80)).ruleId).toBe('default:reject');
    expect(p.ingress(req(null, nginx, 80)).ruleId).toBe('default:reject');
  });

  it('explains the seeds walkthrough refusal', () => {
    const e = explain(createDefaultPolicy(), { from: ['app=other'], to: ['app=nginx'], port: 80 });
    expect(e.decision.allow).toBe(false);
    expect(e.chain[0]).toMatchObject({ direction: 'ingress', ruleId: 'same-labels', matched: false });
    expect(e.chain[0]!.why).toContain('user labels differ');
  });
});
