// The refusal log budget: a flood of refusals cannot grow the log at packet rate, and what
// it holds back is reported, per reason, once.
import { describe, expect, it } from 'vitest';
import { createLogger, createRefusalLogBudget, prettyLine } from '../../../src/daemon/log.js';

describe('refusal log budget', () => {
  it('lets N lines per second per reason through and counts the rest', () => {
    let t = 10_000;
    const b = createRefusalLogBudget(3, () => t);
    const allowed = Array.from({ length: 10 }, () => b.allow('bad-signature')).filter(Boolean).length;
    expect(allowed).toBe(3);
    expect(b.allow('replay')).toBe(true); // reasons have separate budgets
    expect(b.drain()).toEqual({ 'bad-signature': 7 });
    expect(b.drain()).toBeNull(); // reported once
    t += 1000; // a new second: a fresh budget
    expect(b.allow('bad-signature')).toBe(true);
    expect(b.drain()).toBeNull();
  });
  it('a flood of a million refusals yields at most the budget in lines', () => {
    let t = 0;
    const b = createRefusalLogBudget(50, () => t);
    let lines = 0;
    for (let i = 0; i < 1_000_000; i++) {
      t = Math.floor(i / 100_000) * 1000; // 100 k refusals per second, for 10 s
      if (b.allow('missing-token')) lines++;
    }
    expect(lines).toBe(500);
    expect(b.drain()).toEqual({ 'missing-token': 999_500 });
  });
});

describe('log lines for people and for collectors', () => {
  const collect = (pretty: boolean, color = false) => {
    const lines: string[] = [];
    const log = createLogger('info', { pretty, color, write: (t) => lines.push(t) });
    return { log, lines };
  };

  it('NDJSON when not a terminal: one JSON object per line, secrets redacted', () => {
    const { log, lines } = collect(false);
    log.child({ component: 'flow' }).info({ psk: 'hunter2', port: 80 }, 'accepted');
    expect(lines).toHaveLength(1);
    expect(lines[0]!.endsWith('\n')).toBe(true);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 30, component: 'flow', msg: 'accepted', port: 80, psk: '[redacted]' });
  });

  it('readable in a terminal: time, level, component, message, then key=value', () => {
    const { log, lines } = collect(true);
    log.child({ component: 'rules' }).warn({ attempt: 2, error: 'iptables-restore: line 3 failed', flow: { port: 80 } }, 'reconcile failed');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^\d{2}:\d{2}:\d{2}\.\d{3} WARN  rules: reconcile failed attempt=2 error="iptables-restore: line 3 failed" flow=\{"port":80\}\n$/);
    expect(lines[0]).not.toMatch(/pid=|"level"/);
  });

  it('colours the level only when asked, and passes a line that is not JSON through', () => {
    const { log, lines } = collect(true, true);
    log.error('boom');
    expect(lines[0]).toContain('\x1b[31mERROR\x1b[0m boom');
    expect(prettyLine('not json\n')).toBe('not json');
    expect(prettyLine('{"level":30,"time":"2026-12-06T02:00:00.123Z","msg":"x","pid":1}')).toBe('02:00:00.123 INFO  x');
  });
});
