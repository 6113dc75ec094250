// Output for people and for programs: tables with headers and colour in a terminal, plain
// stable lines when piped, colour never when NO_COLOR is set or the stream is no terminal,
// --json for scripts; status grouped and readable, health and policy shown when the daemon
// sends them and tolerated when it does not; flows filtered like `hubble observe`.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../../../src/cli/main.js';
import { colorFor, fixedRow, table } from '../../../src/cli/output.js';
import { groupCounters, renderStatus, type StatusView } from '../../../src/cli/status.js';
import { matchFlow } from '../../../src/cli/flows.js';
import { capture, flow, startFakeDaemon, STATUS, type FakeDaemon } from './fake-daemon.js';

const ESC = '\x1b[';

describe('colour', () => {
  it('only for a terminal, never with NO_COLOR or TERM=dumb', () => {
    expect(colorFor({ isTTY: true }, {})).toBe(true);
    expect(colorFor({ isTTY: false }, {})).toBe(false);
    expect(colorFor({}, {})).toBe(false);
    expect(colorFor({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
    expect(colorFor({ isTTY: true }, { NO_COLOR: '' })).toBe(true); // no-color.org: set and non-empty
    expect(colorFor({ isTTY: true }, { TERM: 'dumb' })).toBe(false);
  });

  it('tables align under their header, colour codes not counted as width', () => {
    const t = table(['A', 'BB'], [[`${ESC}31mx${ESC}0m`, 'y'], ['long', 'z']]);
    expect(t).toEqual(['A     BB', 'x     y'.replace('x', `${ESC}31mx${ESC}0m`), 'long  z']);
  });
});

describe('tessera status', () => {
  let d: FakeDaemon;
  afterEach(async () => d?.close());

  const withHealth: StatusView = {
    ...(STATUS as unknown as StatusView),
    health: { state: 'degraded', problems: [{ component: 'reconcile', message: 'iptables-restore: line 3 failed', since: '2026-12-06T01:59:00.000Z' }] },
    policy: { source: '/etc/tessera/policy.yaml', revision: 'sha256:abc', loadedAt: '2026-12-06T01:00:00.000Z', warnings: ['rule web-2 is shadowed by web-1'], lastError: { message: 'line 4: unknown key', at: '2026-12-06T01:30:00.000Z' } },
  };

  it('groups counters by their first word, one row per group', () => {
    expect(groupCounters({ flows_accepted: 1, flows_rejected: 2, pus_created: 3, packets: 4, uptime_seconds: 9 })).toEqual([
      ['flows', [['accepted', 1], ['rejected', 2]]],
      ['pus', [['created', 3]]],
      ['packets', [['', 4]]],
    ]);
    const text = renderStatus(STATUS as unknown as StatusView, {});
    expect(text).toContain('counters');
    expect(text.some((l) => /^ {2}flows +accepted 10 +rejected 2$/.test(l))).toBe(true);
    expect(text.some((l) => /flows_accepted=/.test(l))).toBe(false); // no longer one k=v line
    expect(text.join('\n')).toContain('up 1h 2m');
  });

  it('renders health problems and the policy revision, warnings and the refused reload', () => {
    const text = renderStatus(withHealth, {}).join('\n');
    expect(text).toMatch(/health +DEGRADED\n +reconcile: iptables-restore: line 3 failed \(since 2026-12-06T01:59:00.000Z\)/);
    expect(text).toMatch(/policy +\/etc\/tessera\/policy.yaml +revision sha256:abc +loaded 2026-12-06T01:00:00.000Z/);
    expect(text).toContain('warning: rule web-2 is shadowed by web-1');
    expect(text).toContain('reload refused 2026-12-06T01:30:00.000Z: line 4: unknown key (the policy above still runs)');
    expect(text).not.toContain(ESC);
  });

  it('tolerates an older daemon: policy a name, no health, no rules', () => {
    const { rules: _r, ...old } = STATUS;
    const text = renderStatus(old as unknown as StatusView, {}).join('\n');
    expect(text).toMatch(/policy +default \(same labels\)/);
    expect(text).not.toMatch(/health|rules/);
  });

  it('piped: PUs as indented blocks without colour; in a terminal: a table with a header, in colour', async () => {
    d = await startFakeDaemon({ status: withHealth });
    const piped = capture();
    expect(await runCli(['status', '--socket', d.socket], piped.io)).toBe(0);
    expect(piped.out.join('\n')).toMatch(/^pu-1 {2}container {2}nginx\n {2}labels: {2}app=web\n.*\n {2}risk: {4}host-network \(fix: drop --network host\)/m);
    expect(piped.out.join('\n')).not.toContain(ESC);
    const tty = capture({ tty: true, color: true });
    expect(await runCli(['status', '--socket', d.socket], tty.io)).toBe(0);
    const t = tty.out.join('\n');
    expect(t).toMatch(/ID +KIND +LABELS +PORTS +PIDS +CLASSID +NAME/);
    expect(t).toMatch(/pu-1 +container +app=web +80 +42 +0x00100001 +nginx/);
    expect(t).toContain(`${ESC}31mDEGRADED${ESC}0m`);
    const noColor = capture({ tty: true, color: false });
    await runCli(['status', '--socket', d.socket], noColor.io);
    expect(noColor.out.join('\n')).not.toContain(ESC);
  });

  it('--json prints the daemon\'s status as it came, health and policy included', async () => {
    d = await startFakeDaemon({ status: withHealth });
    const c = capture({ tty: true, color: true });
    expect(await runCli(['status', '--json', '--socket', d.socket], c.io)).toBe(0);
    expect(JSON.parse(c.out.join('\n'))).toEqual(withHealth);
  });
});

describe('tessera flows filters', () => {
  const client = ['app=client', 'env=prod'];
  const server = ['app=web'];
  // Recorded on the server (ingress) and on the client (egress): "from" is the client either way.
  const ingress = flow({ direction: 'ingress', localLabels: server, remoteLabels: client, localPort: 80, remotePort: 40_000 });
  const egress = flow({ direction: 'egress', localLabels: client, remoteLabels: server, localPort: 40_001, remotePort: 80 });
  const refused = flow({ verdict: 'reject', reason: 'missing-token', remotePu: null, remoteLabels: null, remoteHost: null, localPort: 443, time: '2026-12-06T02:10:00.000Z' });

  it('label filters name the client (from) and the server (to) whichever host recorded the flow', () => {
    for (const f of [ingress, egress]) {
      expect(matchFlow(f, { fromLabels: [['app=client']] })).toBe(true);
      expect(matchFlow(f, { fromLabels: [['app=client', 'env=prod']] })).toBe(true);
      expect(matchFlow(f, { fromLabels: [['env']] })).toBe(true); // a key alone: any value
      expect(matchFlow(f, { fromLabels: [['app=web']] })).toBe(false);
      expect(matchFlow(f, { toLabels: [['app=web']] })).toBe(true);
      expect(matchFlow(f, { toLabels: [['app=client']] })).toBe(false);
      expect(matchFlow(f, { fromLabels: [['app=nope'], ['env=prod']] })).toBe(true); // repeated: any
      expect(matchFlow(f, { ports: [80] })).toBe(true); // the server port
      expect(matchFlow(f, { ports: [40_000, 40_001] })).toBe(false);
    }
    expect(matchFlow(refused, { fromLabels: [['app=client']] })).toBe(false); // an unprotected peer has no labels
  });

  it('verdict, reason and since', () => {
    expect(matchFlow(refused, { verdicts: ['reject'], reasons: ['missing-token'] })).toBe(true);
    expect(matchFlow(refused, { reasons: ['policy'] })).toBe(false);
    expect(matchFlow(ingress, { verdicts: ['reject', 'drop'] })).toBe(false);
    expect(matchFlow(refused, { since: Date.parse('2026-12-06T02:05:00.000Z') })).toBe(true);
    expect(matchFlow(ingress, { since: Date.parse('2026-12-06T02:05:00.000Z') })).toBe(false);
  });

  describe('against the API', () => {
    let d: FakeDaemon;
    beforeEach(async () => {
      d = await startFakeDaemon({ flows: [ingress, egress, refused] });
    });
    afterEach(async () => d.close());

    it('filters recent decisions; with a filter it reads all the daemon keeps and keeps the last --limit', async () => {
      const c = capture();
      expect(await runCli(['flows', '--socket', d.socket, '--to-label', 'app=web', '--port', '80', '--limit', '1', '--json'], c.io)).toBe(0);
      expect(c.out.map((l) => JSON.parse(l))).toEqual([egress]);
      expect(d.flowQueries.at(-1)!.get('limit')).toBe('10000');
      const since = capture();
      await runCli(['flows', '--socket', d.socket, '--since', '2026-12-06T02:05:00Z'], since.io);
      expect(since.out).toHaveLength(1);
      expect(since.out[0]).toMatch(/REJECT missing-token +pu-1 \[app=web\]:443 <- 10.213.0.2:40000 unprotected peer rule=default/);
      const denied = capture();
      await runCli(['flows', '--socket', d.socket, '--denied', '--json'], denied.io);
      expect(denied.out.map((l) => JSON.parse(l).reason)).toEqual(['missing-token']);
      expect(d.flowQueries.at(-1)!.get('denied')).toBe('1');
    });

    it('in a terminal: a table with a header; nothing matching says so', async () => {
      const c = capture({ tty: true });
      await runCli(['flows', '--socket', d.socket, '--verdict', 'accept'], c.io);
      expect(c.out[0]).toMatch(/^TIME +VERDICT +REASON +LOCAL +DIR +PEER +PEER IDENTITY +RULE$/);
      expect(c.out).toHaveLength(3);
      const none = capture({ tty: true });
      await runCli(['flows', '--socket', d.socket, '--reason', 'replay'], none.io);
      expect(none.out).toEqual(['no decisions match']);
    });

    it('--follow applies the same filters to streamed decisions', async () => {
      const c = capture();
      let stop: () => void = () => {};
      const io = { ...c.io, onClosed: (fn: () => void) => (stop = fn) };
      const running = runCli(['flows', '-f', '--socket', d.socket, '--reason', 'policy', '--json'], io);
      await expect.poll(() => d.flowQueries.length).toBe(1);
      for (let i = 0; i < 4; i++) d.push(flow({ verdict: i % 2 ? 'reject' : 'accept', reason: i % 2 ? 'policy' : 'ok', remotePort: 50_000 + i }));
      await expect.poll(() => c.out.length).toBe(2);
      stop(); // as a closed stdout does
      expect(await running).toBe(0);
      expect(c.out.map((l) => JSON.parse(l).remotePort)).toEqual([50_001, 50_003]);
    });

    it('refuses filters with --revoke, and --dry-run without it', async () => {
      const c = capture();
      expect(await runCli(['flows', '--socket', d.socket, '--revoke', '--port', '80'], c.io)).toBe(2);
      expect(c.err[0]).toMatch(/--revoke takes no filters/);
      const e = capture();
      expect(await runCli(['flows', '--socket', d.socket, '--dry-run'], e.io)).toBe(2);
    });
  });
});

describe('fixed-width rows of a follower', () => {
  it('align under the header whatever the colour codes', () => {
    const widths = [4, 6, 0];
    const header = fixedRow(['A', 'BB', 'C'], widths);
    const row = fixedRow([`${ESC}31mx${ESC}0m`, 'yyyy', 'z'], widths);
    expect(header).toBe('A     BB      C');
    expect(row.replace(/\x1b\[[0-9;]*m/g, '')).toBe('x     yyyy    z');
    expect(fixedRow(['toolong', 'b', 'c'], widths)).toBe('toolong  b       c');
  });
});
