// `tessera flows --revoke`: which remembered connections still exist (conntrack, ESTABLISHED
// only), which of them the current policy refuses, and the commands that cut them.
import { describe, expect, it } from 'vitest';
import { AuthorizedFlows, parseConntrack, revokeFlows } from '../../../src/daemon/revoke.js';
import { compilePolicy, createDefaultPolicy } from '../../../src/policy/index.js';
import type { CommandRunner } from '../../../src/rules/index.js';
import type { FlowRecord } from '../../../src/datapath/index.js';

// `conntrack -L -p tcp --mark 0x80000000/0x80000000` as conntrack 1.4.7 prints it.
const LISTING = [
  'tcp      6 431999 ESTABLISHED src=10.213.0.2 dst=10.213.0.1 sport=40001 dport=80 src=10.213.0.1 dst=10.213.0.2 sport=80 dport=40001 [ASSURED] mark=2147483649 use=1',
  'tcp      6 119 TIME_WAIT src=10.213.0.2 dst=10.213.0.1 sport=40002 dport=80 src=10.213.0.1 dst=10.213.0.2 sport=80 dport=40002 [ASSURED] mark=2147483649 use=1',
  'tcp      6 58 FIN_WAIT src=10.213.0.2 dst=10.213.0.1 sport=40003 dport=80 src=10.213.0.1 dst=10.213.0.2 sport=80 dport=40003 [ASSURED] mark=2147483649 use=1',
  'ipv6     10 tcp      6 431990 ESTABLISHED src=fd00::2 dst=fd00::1 sport=40004 dport=443 src=fd00::1 dst=fd00::2 sport=443 dport=40004 [ASSURED] mark=2147483649 use=1',
  'tcp      6 431000 ESTABLISHED src=10.213.0.1 dst=10.213.0.9 sport=50000 dport=5432 src=10.213.0.9 dst=10.213.0.1 sport=5432 dport=50000 [ASSURED] mark=2147483649 use=1',
  'conntrack v1.4.7 (conntrack-tools): 5 flow entries have been shown.',
].join('\n');

describe('parseConntrack', () => {
  it('keys ESTABLISHED entries in both orientations and skips TIME_WAIT, FIN_WAIT and the summary', () => {
    const live = parseConntrack(LISTING);
    expect(live.has('10.213.0.2|40001|80')).toBe(true); // we are the server
    expect(live.has('10.213.0.9|5432|50000')).toBe(true); // we are the client
    expect(live.has('fd00::2|40004|443')).toBe(true); // -o extended layout, IPv6
    expect(live.has('10.213.0.2|40002|80')).toBe(false); // TIME_WAIT: closed
    expect(live.has('10.213.0.2|40003|80')).toBe(false);
    expect(parseConntrack('')).toEqual(new Set());
  });
});

const flow = (remotePort: number, over: Partial<FlowRecord> = {}): FlowRecord => ({
  time: 0,
  direction: 'ingress',
  stage: 'ack',
  verdict: 'accept',
  reason: 'ok',
  ruleId: 'same-labels',
  localPu: 'proc-1',
  localLabels: ['app=web'],
  localPort: 80,
  remoteAddr: '10.213.0.2',
  remotePort,
  remoteHost: 'b',
  remotePu: 'proc-2',
  remoteLabels: ['app=web'],
  ...over,
});

function runner(listing: string) {
  const calls: string[][] = [];
  const r = {
    async run(argv: string[]) {
      calls.push(argv);
      return { stdout: argv[0] === 'conntrack' && argv[1] === '-L' ? listing : '', stderr: '', code: 0 };
    },
  } satisfies CommandRunner;
  return { r, calls };
}

describe('revokeFlows', () => {
  // A policy that allows nothing: every remembered live flow is refused now.
  const denyAll = (() => {
    const c = compilePolicy('version: 1\nname: none\nrules: []\n');
    if (!c.ok) throw new Error('test policy');
    return c.policy;
  })();

  function remembered(): AuthorizedFlows {
    const flows = new AuthorizedFlows();
    for (const p of [40001, 40002, 40003]) flows.note(flow(p));
    flows.note(flow(50000, { direction: 'egress', stage: 'syn-ack', localPort: 50000, remoteAddr: '10.213.0.9', remotePort: 5432 }));
    flows.note(flow(40009, { stage: 'syn' })); // not final for a tagged ingress flow: not remembered
    return flows;
  }

  it('a dry run lists only ESTABLISHED connections the policy refuses, cuts nothing, and forgets closed ones', async () => {
    const flows = remembered();
    const { r, calls } = runner(LISTING);
    const out = await revokeFlows(flows, denyAll, r, true);
    expect(out.map((f) => `${f.direction} ${f.remoteAddr}:${f.remotePort}`).sort()).toEqual(['egress 10.213.0.9:5432', 'ingress 10.213.0.2:40001']);
    expect(out.every((f) => !f.cut)).toBe(true);
    expect(calls).toHaveLength(1); // the listing only
    expect(flows.all().map((f) => f.remotePort).sort()).toEqual([40001, 5432]); // TIME_WAIT/FIN_WAIT ones forgotten
  });

  it('a policy that still allows them cuts nothing', async () => {
    const { r } = runner(LISTING);
    expect(await revokeFlows(remembered(), createDefaultPolicy(), r, false)).toEqual([]);
  });

  it('cuts each refused connection with ss -K and conntrack -D, oriented by direction', async () => {
    const flows = remembered();
    const { r, calls } = runner(LISTING);
    const out = await revokeFlows(flows, denyAll, r, false);
    expect(out.every((f) => f.cut)).toBe(true);
    const cuts = calls.slice(1).map((a) => a.join(' '));
    expect(cuts).toContain('ss -K -t dst 10.213.0.2 dport = :40001 sport = :80');
    expect(cuts.some((c) => c.startsWith('conntrack -D') && c.includes('--orig-src 10.213.0.2 --sport 40001 --dport 80'))).toBe(true);
    expect(cuts.some((c) => c.startsWith('conntrack -D') && c.includes('--orig-dst 10.213.0.9 --dport 5432 --sport 50000'))).toBe(true);
    expect(flows.all()).toEqual([]);
  });
});
