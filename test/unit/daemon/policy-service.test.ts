// Policy reload: a refused file is logged, kept in status.policy.lastError and degrades health
// until a later load succeeds; the running policy stays. Warnings are logged and shown.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPolicyService } from '../../../src/daemon/policy-service.js';
import { createHealth } from '../../../src/daemon/health.js';
import { DEFAULT_POLICY_TEXT } from '../../../src/policy/index.js';
import { capturingLogger } from './fakes.js';

// The same rule twice: the second can never decide (a `tessera policy check` warning).
const REDUNDANT = `version: 1
name: warned
rules:
  - id: same-labels
    sameLabels: true
    action: allow
  - id: again
    sameLabels: true
    action: allow
`;

describe('policy service', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-policysvc-'));
    file = join(dir, 'policy.yaml');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function setup(withFile = true) {
    let clock = Date.parse('2026-01-01T00:00:00Z');
    const health = createHealth(() => new Date(clock));
    const l = capturingLogger();
    const applied: Array<string | null> = [];
    const counted: string[] = [];
    const svc = createPolicyService({ ...(withFile ? { file } : {}), apply: (t) => void applied.push(t), log: l.log, health, count: (n) => void counted.push(n), now: () => new Date(clock) });
    return { svc, health, l, applied, counted, tick: (ms: number) => (clock += ms) };
  }

  it('the built-in default: no file, nothing to reload, policy ready', () => {
    const t = setup(false);
    expect(t.svc.status()).toMatchObject({ source: 'built-in', revision: 'default', warnings: [] });
    expect(t.svc.reload('SIGHUP')).toBe(false);
    expect(t.health.readiness().reasons).not.toContain('no policy loaded');
  });

  it('refuses a file that does not compile at start (the daemon does not start)', () => {
    writeFileSync(file, 'rules: [nonsense');
    expect(() => setup()).toThrow(/policy file refused/);
  });

  it('a refused reload keeps the running policy, is logged, shown as lastError and degrades health until a good load', () => {
    writeFileSync(file, DEFAULT_POLICY_TEXT);
    const t = setup();
    const first = t.svc.status();
    expect(first).toMatchObject({ source: file, loadedAt: '2026-01-01T00:00:00.000Z' });
    expect(first.revision).toMatch(/^[0-9a-f]{12}$/);

    writeFileSync(file, 'rules: [nonsense');
    t.tick(1000);
    expect(t.svc.reload('file changed')).toBe(false);
    expect(t.applied).toEqual([]);
    expect(t.counted).toEqual(['policy_reload_errors']);
    const s = t.svc.status();
    expect(s.revision).toBe(first.revision); // still the running one
    expect(s.lastError).toMatchObject({ at: '2026-01-01T00:00:01.000Z', message: expect.stringContaining('policy file refused') });
    expect(t.health.health()).toMatchObject({ state: 'degraded', problems: [{ component: 'policy' }] });
    expect(t.l.at('error').map((l) => l.msg)).toEqual(['policy reload refused; the running policy stays']);

    writeFileSync(file, REDUNDANT);
    t.tick(1000);
    expect(t.svc.reload('SIGHUP')).toBe(true);
    expect(t.applied).toHaveLength(1);
    expect(t.counted).toEqual(['policy_reload_errors', 'policy_reloads']);
    expect(t.health.health().state).toBe('ok');
    expect(t.svc.status()).toMatchObject({ loadedAt: '2026-01-01T00:00:02.000Z', lastError: { at: '2026-01-01T00:00:01.000Z' } });
    expect(t.svc.status().revision).not.toBe(first.revision);
    // Loaded, with its warning logged and shown.
    expect(t.svc.status().warnings).toEqual([expect.stringMatching(/policy\.yaml:7:5: warning: rule "again" is redundant/)]);
    expect(t.l.at('warn').map((l) => l.msg)).toEqual(['policy loaded with 1 warning(s) (tessera policy check shows them)']);
  });

  it('an unchanged file is not applied again', () => {
    writeFileSync(file, DEFAULT_POLICY_TEXT);
    const t = setup();
    expect(t.svc.reload('SIGHUP')).toBe(true);
    expect(t.applied).toEqual([]);
    expect(t.counted).toEqual([]);
  });
});
