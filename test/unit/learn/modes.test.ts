import { describe, expect, it } from 'vitest';
import { check, explain, loadPolicy } from '../../../src/policy/index.js';
import { puModes } from '../../../src/learn/modes-of.js';
import { parseSelectorArg, promoteText } from '../../../src/learn/promote.js';

const text = `# the shop
version: 1
mode: enforce
modes:
  - select: {app: api}
    mode: learn   # still learning
  - select: {app: db}
    mode: audit
rules:
  - id: web-api
    from: {app: web}
    to: {app: api}
    ports: 8080
    action: allow
`;
const web = { labels: ['app=web'] };
const api = { labels: ['app=api'] };
const db = { labels: ['app=db'] };

describe('modes', () => {
  const p = loadPolicy(text);

  it('learn lets a refusal through marked learn, audit marked audit, enforce refuses', () => {
    expect(p.ingress({ client: db, server: api, port: 1 })).toMatchObject({ allow: true, action: 'reject', audit: true, mode: 'learn', ruleId: 'default:reject' });
    expect(p.ingress({ client: api, server: db, port: 1 })).toMatchObject({ allow: true, audit: true, mode: 'audit' });
    expect(p.ingress({ client: api, server: web, port: 1 })).toMatchObject({ allow: false, audit: false });
    expect(p.ingress({ client: api, server: web, port: 1 }).mode).toBeUndefined();
    // An allow of a learning PU carries its mode (the flow record shows it).
    expect(p.ingress({ client: web, server: api, port: 8080 })).toMatchObject({ allow: true, action: 'allow', mode: 'learn' });
  });

  it('conflict rule: each end applies its own mode; the enforcing end still refuses', () => {
    // api (learn) calls web (enforce): the client's egress check lets it out, the server's ingress refuses.
    expect(p.egress({ client: api, server: web, port: 1 })).toMatchObject({ allow: true, mode: 'learn' });
    expect(p.ingress({ client: api, server: web, port: 1 }).allow).toBe(false);
    expect(explain(p, { from: ['app=api'], to: ['app=web'], port: 1 }).decision.allow).toBe(false);
  });

  it('learn is a valid mode for check, and a bad mode is refused with its position', () => {
    expect(check(text).ok).toBe(true);
    const bad = check('version: 1\nmode: learning\nrules: []\n');
    expect(bad.ok).toBe(false);
    expect(bad.errors[0]!.text).toMatch(/2:7:.*learn, audit, enforce|2:7:.*learn/);
  });

  it('status lists each PU’s mode', () => {
    expect(puModes(p, [{ id: 'a', labels: ['app=api'] }, { id: 'd', labels: ['app=db'] }, { id: 'w', labels: ['app=web'] }])).toEqual({ a: 'learn', d: 'audit', w: 'enforce' });
  });
});

describe('promote', () => {
  it('moves an entry learn → audit → enforce, keeping comments', () => {
    const a = promoteText(text, parseSelectorArg('app=api'));
    expect([a.from, a.to]).toEqual(['learn', 'audit']);
    expect(a.text).toContain('# the shop');
    expect(puModes(loadPolicy(a.text), [{ id: 'a', labels: ['app=api'] }])).toEqual({ a: 'audit' });
    const b = promoteText(a.text, { app: 'api' });
    expect([b.from, b.to]).toEqual(['audit', 'enforce']);
    expect(puModes(loadPolicy(b.text), [{ id: 'a', labels: ['app=api'] }])).toEqual({ a: 'enforce' });
  });

  it('adds a first entry when none has exactly the selector, and refuses a no-op', () => {
    const learnAll = 'version: 1\nmode: learn\nrules: []\n';
    const a = promoteText(learnAll, { app: 'web', env: 'prod' });
    expect([a.from, a.to]).toEqual(['learn', 'audit']);
    const p = loadPolicy(a.text);
    expect(puModes(p, [{ id: 'w', labels: ['app=web', 'env=prod'] }, { id: 'x', labels: ['app=web'] }])).toEqual({ w: 'audit', x: 'learn' });
    expect(() => promoteText('version: 1\nrules: []\n', { app: 'web' })).toThrow(/already run in enforce/);
    expect(() => parseSelectorArg('app')).toThrow(/key=value/);
  });
});
