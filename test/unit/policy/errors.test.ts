import { describe, expect, it } from 'vitest';
import { compilePolicy, loadPolicy } from '../../../src/policy/index.js';
import { TesseraError } from '../../../src/errors.js';
import { errorsOf } from './helpers.js';

const head = 'version: 1\nrules:\n';

describe('errors carry file:line:column and a reason', () => {
  it('malformed YAML', () => {
    const errs = errorsOf(`${head}  - id: a\n    from: {app: [x, y}\n    action: allow\n`);
    expect(errs.length).toBeGreaterThan(0);
    expect(errs[0]).toMatch(/^policy\.yaml:4:\d+: YAML: /);
    expect(errorsOf('version: 1\nrules:\n  - a: 1\n  b: 2\n')[0]).toMatch(/^policy\.yaml:4:\d+: YAML:/);
  });

  it('tabs, duplicate keys and several documents are YAML errors', () => {
    expect(errorsOf('version: 1\nversion: 1\nrules: []\n')[0]).toMatch(/^policy\.yaml:2:1: YAML: Map keys must be unique/);
    expect(errorsOf('version: 1\nrules: []\n---\nversion: 1\n')[0]).toMatch(/^policy\.yaml:3:1: YAML: .*multiple documents/);
  });

  it('unknown key with a suggestion, and no second "missing action" error', () => {
    expect(errorsOf(`${head}  - id: a\n    acton: allow\n`)).toEqual(['policy.yaml:4:5: unknown key "acton" in a rule (did you mean "action"?)']);
    expect(errorsOf('version: 1\nruls: []\n')).toEqual([
      'policy.yaml:1:1: missing key "rules" (a list; write rules: [] for a policy that refuses everything)',
      'policy.yaml:2:1: unknown key "ruls" in the policy (did you mean "rules"?)',
    ]);
    expect(errorsOf(`${head}  - {id: a, action: allow, frob: 1}\n`)).toEqual(['policy.yaml:3:28: unknown key "frob" in a rule (did you mean "from"?)']);
  });

  it('missing version, missing action, wrong version', () => {
    expect(errorsOf('rules: []\n')).toEqual(['policy.yaml:1:1: missing key "version" (write version: 1)']);
    expect(errorsOf(`${head}  - id: a\n    from: {app: x}\n`)).toEqual(['policy.yaml:3:5: rules[0] (a): missing key "action" (allow, reject or observe)']);
    expect(errorsOf('version: 2\nrules: []\n')).toEqual(['policy.yaml:1:10: version "2" is not supported: this Tessera reads version 1']);
  });

  it('bad enum values suggest the right one', () => {
    expect(errorsOf(`${head}  - {id: a, action: alow}\n`)).toEqual(['policy.yaml:3:21: action "alow" is not one of allow, reject, observe (did you mean "allow"?)']);
    expect(errorsOf(`${head}  - {id: a, action: allow, direction: in}\n`)[0]).toBe('policy.yaml:3:39: direction "in" is not one of ingress, egress, both');
    expect(errorsOf(`${head}  - {id: a, action: allow, reject: drop}\n`)).toEqual(['policy.yaml:3:28: reject: applies only to action: reject (this rule\'s action is allow)']);
  });

  it('bad CIDR', () => {
    const cases: Array<[string, RegExp]> = [
      ['10.0.0.0/33', /prefix length "33": it must be a number 0..32/],
      ['10.0.0/8', /not an IPv4 or IPv6 network/],
      ['10.0.0.256', /not an IPv4 or IPv6 network/],
      ['010.0.0.1', /not an IPv4 or IPv6 network/],
      ['"2001:db8::/129"', /prefix length "129": it must be a number 0..128/],
      ['"2001:db8:::1"', /not an IPv4 or IPv6 network/],
      ['"1:2:3:4:5:6:7:8:9"', /not an IPv4 or IPv6 network/],
      ['"1::2::3"', /not an IPv4 or IPv6 network/],
      ['"fe80::1%eth0"', /zone index/],
      ['10.0.0.0/', /prefix length ""/],
      ['10.0.0.0/08', /prefix length "08"/],
      ['dns.example.com', /not an IPv4 or IPv6 network/],
    ];
    for (const [cidr, re] of cases) {
      const errs = errorsOf(`${head}  - id: a\n    from: {}\n    toNetworks: [${cidr}]\n    action: allow\n`);
      expect(errs, cidr).toHaveLength(1);
      expect(errs[0], cidr).toMatch(/^policy\.yaml:5:18: toNetworks: /);
      expect(errs[0], cidr).toMatch(re);
    }
  });

  it('bad port and port range', () => {
    const cases: Array<[string, string]> = [
      ['"9000-8000"', 'ports: bad port range "9000-8000": the first port must not exceed the second (write 8000-9000)'],
      ['0', 'ports: "0" is out of range: ports are 1..65535'],
      ['65536', 'ports: "65536" is out of range: ports are 1..65535'],
      ['"1-70000"', 'ports: "1-70000" is out of range: ports are 1..65535'],
      ['http', 'ports: "http" is not a port: write a number 1..65535 or a range like 8000-8080'],
      ['-5', 'ports: "-5" is not a port: write a number 1..65535 or a range like 8000-8080'],
      ['"80,443"', 'ports: "80,443" is not a port: write a number 1..65535 or a range like 8000-8080'],
    ];
    for (const [port, msg] of cases) {
      expect(errorsOf(`${head}  - id: a\n    ports: [${port}]\n    action: allow\n`), port).toEqual([`policy.yaml:4:13: ${msg}`]);
    }
    expect(errorsOf(`${head}  - id: a\n    ports: []\n    action: allow\n`)).toEqual(['policy.yaml:4:12: ports: the list is empty']);
  });

  it('bad operator and bad label keys', () => {
    expect(errorsOf(`${head}  - id: a\n    from: {app: {nin: [x]}}\n    action: allow\n`)).toEqual([
      'policy.yaml:4:18: unknown key "nin" in operators of from.app (did you mean "in"?)',
    ]);
    expect(errorsOf(`${head}  - id: a\n    from: {app: {notin: [x]}}\n    action: allow\n`)[0]).toContain('(did you mean "notIn"?)');
    expect(errorsOf(`${head}  - id: a\n    from: {app: {}}\n    action: allow\n`)).toEqual(['policy.yaml:4:17: from.app: no operator (use eq, ne, in, notIn or exists)']);
    expect(errorsOf(`${head}  - id: a\n    from: {app: {exists: maybe}}\n    action: allow\n`)[0]).toBe(
      'policy.yaml:4:26: from.app.exists "maybe" is not one of true, false',
    );
    const bang = errorsOf(`${head}  - id: a\n    from: {"!tier": web}\n    action: allow\n`);
    expect(bang[0]).toMatch(/^policy\.yaml:4:12: from: "!tier" is not a label key .*tier: \{ne: value\}/);
    expect(errorsOf(`${head}  - id: a\n    from: {app: "a\\u0001"}\n    action: allow\n`)[0]).toContain('control character');
  });

  it('structure errors: wrong types, both label and network sides, sameLabels with networks, duplicate ids', () => {
    expect(errorsOf('version: 1\nrules: {a: 1}\n')).toEqual(['policy.yaml:2:8: rules must be a list']);
    expect(errorsOf(`${head}  - just a string\n`)).toEqual(['policy.yaml:3:5: a rule must be a mapping (key: value)']);
    expect(errorsOf(`${head}  - {id: a, from: [x], action: allow}\n`)).toEqual(['policy.yaml:3:19: from must be a mapping (key: value)']);
    expect(errorsOf(`${head}  - {id: a, from: {}, fromNetworks: [10.0.0.0/8], action: allow}\n`)[0]).toMatch(
      /^policy\.yaml:3:23: use from \(Tessera PUs by label\) or fromNetworks/,
    );
    expect(errorsOf(`${head}  - {id: a, fromNetworks: 10.0.0.0/8, toNetworks: 10.0.0.0/8, action: allow}\n`)[0]).toContain('networks on both sides');
    expect(errorsOf(`${head}  - {id: a, sameLabels: true, fromNetworks: 10.0.0.0/8, action: allow}\n`)[0]).toContain('cannot be combined');
    expect(errorsOf(`${head}  - {id: a, action: allow}\n  - {id: a, action: reject}\n`)).toEqual(['policy.yaml:4:5: rule id "a" is already used by the rule at line 3']);
    expect(errorsOf(`${head}  - {id: "a b", action: allow}\n`)[0]).toMatch(/^policy\.yaml:3:10: rule id "a b": use 1\.\.64 characters/);
    expect(errorsOf(`${head}  - {action: allow}\n  - {id: rule-1, action: allow}\n`)[0]).toContain('rule id "rule-1" is already used');
  });

  it('aliases and merge keys are refused', () => {
    expect(errorsOf(`${head}  - {id: a, from: &s {app: x}, action: allow}\n  - {id: b, from: *s, action: allow}\n`)[0]).toMatch(
      /^policy\.yaml:4:19: from: aliases/,
    );
  });

  it('empty text, non-mapping root, and text too large', () => {
    expect(errorsOf('')).toEqual(['policy.yaml:1:1: the policy is empty: it needs at least "version: 1" and "rules:"']);
    expect(errorsOf('- a\n')).toEqual(['policy.yaml:1:1: the policy must be a mapping (key: value)']);
    expect(errorsOf('#'.repeat((1 << 20) + 1))[0]).toMatch(/^policy\.yaml:1:1: policy is \d+ characters/);
  });

  it('reports every error, in position order, and uses the file name given', () => {
    const errs = errorsOf(`${head}  - {id: a, action: nope, ports: [x]}\n  - {id: b, action: allow, toNetworks: [1.2.3]}\n`, 'site/p.yaml');
    expect(errs.map((e) => e.replace(/: .*/, ''))).toEqual(['site/p.yaml:3:21', 'site/p.yaml:3:35', 'site/p.yaml:4:41']);
  });

  it('error objects are structured', () => {
    const r = compilePolicy(`${head}  - id: a\n    acton: allow\n`, { file: 'x.yaml' });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]).toMatchObject({ severity: 'error', code: 'unknown-key', file: 'x.yaml', line: 4, column: 5 });
  });

  it('loadPolicy throws TESSERA_ERR_POLICY with every error text', () => {
    try {
      loadPolicy('version: 1\nruls: []\n', { file: 'bad.yaml' });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(TesseraError);
      expect((err as TesseraError).code).toBe('TESSERA_ERR_POLICY');
      expect((err as TesseraError).message).toContain('bad.yaml:2:1: unknown key "ruls"');
    }
  });
});
