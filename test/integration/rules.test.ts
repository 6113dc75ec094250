// Real iptables / ip6tables inside a network namespace we create: the reconciler installs
// exactly our ruleset, is idempotent, heals, and removes only what is ours.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTopology, isRoot, uniquePrefix, type NsHost, type Topology } from '../../scripts/lib/netns.js';
import { buildRuleset, createCommandRunner, createReconciler, type Ruleset } from '../../src/rules/index.js';
import { parseSave } from '../../src/rules/restore.js';
import { TesseraError } from '../../src/errors.js';
import { skipBecause } from '../helpers/skip.js';

const spec = { queue: { num: 0, count: 2, bypass: false }, pus: [{ index: 1, classid: 0x7e550001 }, { index: 2, classid: 0x7e550002 }], serverPorts: [80, 8443] };

skipBecause(!isRoot, 'rules integration (needs root)', 'integration tests need root: run as root');

describe.runIf(isRoot)('rules reconciler on real iptables', () => {
  let topo: Topology;
  let host: NsHost;

  const save = async (bin: 'iptables-save' | 'ip6tables-save'): Promise<string> => {
    const r = await host.exec([bin]);
    expect(r.code).toBe(0);
    return r.stdout;
  };
  const sh = async (argv: string[]) => {
    const r = await host.exec(argv);
    if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  };

  /** The saved state contains exactly the ruleset's chains and rules, each jump once and first. */
  function expectExactly(text: string, rs: Ruleset['ipv4']): void {
    const saved = parseSave(text);
    for (const table of ['mangle', 'filter', 'raw', 'nat']) {
      const want = rs[table as 'mangle'];
      const t = saved.get(table);
      const ours = (t?.chains ?? []).filter((c) => c.startsWith('TESSERA-')).sort();
      expect(ours, table).toEqual(Object.keys(want?.chains ?? {}).sort());
      for (const [chain, rules] of Object.entries(want?.chains ?? {})) {
        expect(t!.rules.get(chain), `${table} ${chain}`).toEqual(rules.map((r) => r.join(' ')));
      }
      for (const [from, to] of Object.entries(want?.jumps ?? {})) {
        const rules = t!.rules.get(from)!;
        expect(rules[0], `${table} ${from}`).toBe(`-j ${to}`);
        expect(rules.filter((r) => r.includes('TESSERA-')), `${table} ${from}`).toEqual([`-j ${to}`]);
      }
    }
  }

  beforeAll(async () => {
    topo = await createTopology({ prefix: uniquePrefix('rl'), hosts: ['a'], subnet: 30 });
    host = topo.host('a');
    // Foreign state, like Docker's, installed before us.
    await sh(['iptables', '-t', 'filter', '-N', 'DOCKER']);
    await sh(['iptables', '-t', 'filter', '-A', 'DOCKER', '-d', '10.213.30.99/32', '-p', 'tcp', '--dport', '80', '-j', 'ACCEPT']);
    await sh(['iptables', '-t', 'filter', '-A', 'FORWARD', '-j', 'DOCKER']);
    await sh(['iptables', '-t', 'mangle', '-A', 'PREROUTING', '-p', 'udp', '-j', 'MARK', '--set-xmark', '0x4000/0x4000']);
    await sh(['iptables', '-t', 'nat', '-A', 'POSTROUTING', '-s', '10.213.30.0/24', '!', '-o', 'eth0', '-j', 'MASQUERADE']);
    await sh(['ip6tables', '-t', 'mangle', '-A', 'PREROUTING', '-p', 'udp', '-j', 'MARK', '--set-xmark', '0x4000/0x4000']);
  });

  afterAll(async () => {
    await topo?.destroy();
  });

  const runner = () => createCommandRunner({ prefix: ['ip', 'netns', 'exec', host.ns] });
  const foreign = (text: string) =>
    text
      .split('\n')
      .filter((l) => l.startsWith('-A') && !l.includes('TESSERA-'))
      .sort();

  it('installs exactly our rules with the jumps at position 1, then does nothing on a second apply', async () => {
    const rec = createReconciler({ verifyMs: 0, runner: runner() });
    const foreign4 = foreign(await save('iptables-save'));
    const foreign6 = foreign(await save('ip6tables-save'));
    expect(foreign4).toHaveLength(4);
    const rs = buildRuleset(spec);
    expect(await rec.apply(rs)).toEqual({ changed: true, skipped: [] });
    expectExactly(await save('iptables-save'), rs.ipv4);
    expectExactly(await save('ip6tables-save'), rs.ipv6);
    expect(await rec.apply(rs)).toEqual({ changed: false, skipped: [] });
    expect(foreign(await save('iptables-save'))).toEqual(foreign4);
    expect(foreign(await save('ip6tables-save'))).toEqual(foreign6);
  });

  it('heals a rule and a jump deleted by someone else, and a jump pushed down', async () => {
    const rec = createReconciler({ verifyMs: 0, runner: runner() });
    const rs = buildRuleset(spec);
    await rec.apply(rs);
    const portRule = rs.ipv4.mangle!.chains['TESSERA-INPUT']!.at(-1)!;
    await sh(['iptables', '-t', 'mangle', '-D', 'TESSERA-INPUT', ...portRule]);
    await sh(['iptables', '-t', 'mangle', '-D', 'PREROUTING', '-j', 'TESSERA-PREROUTING']);
    await sh(['ip6tables', '-t', 'filter', '-I', 'INPUT', '1', '-p', 'ipv6-icmp', '-j', 'ACCEPT']);
    const broken = await save('iptables-save');
    expect(broken).not.toContain('-A PREROUTING -j TESSERA-PREROUTING');
    expect(broken).not.toContain(`-A TESSERA-INPUT ${portRule.join(' ')}`);
    expect(await rec.apply(rs)).toEqual({ changed: true, skipped: [] });
    expectExactly(await save('iptables-save'), rs.ipv4);
    const six = await save('ip6tables-save');
    expectExactly(six, rs.ipv6);
    expect(parseSave(six).get('filter')!.rules.get('INPUT')).toEqual(['-j TESSERA-REJECT', '-p ipv6-icmp -j ACCEPT']);
    expect((await rec.apply(rs)).changed).toBe(false);
  });

  it('follows a changed desired state', async () => {
    const rec = createReconciler({ verifyMs: 0, runner: runner() });
    const rs = buildRuleset({ ...spec, queue: { num: 4, count: 1, bypass: true }, pus: [], serverPorts: [22] });
    expect((await rec.apply(rs)).changed).toBe(true);
    expectExactly(await save('iptables-save'), rs.ipv4);
    expectExactly(await save('ip6tables-save'), rs.ipv6);
  });

  it('rejects a bad table transaction as a whole: TESSERA_ERR_RULES and the old rules stay', async () => {
    const rec = createReconciler({ verifyMs: 0, runner: runner(), families: ['ipv4'] });
    const good = buildRuleset(spec);
    await rec.apply(good);
    const bad: Ruleset = {
      ...good,
      ipv4: { ...good.ipv4, mangle: { ...good.ipv4.mangle!, chains: { ...good.ipv4.mangle!.chains, 'TESSERA-PU-IN': [['-p', 'tcp', '-j', 'NO-SUCH-TARGET-X']] } } },
    };
    const err = await rec.apply(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TesseraError);
    expect((err as TesseraError).code).toBe('TESSERA_ERR_RULES');
    expect((err as TesseraError).message).toMatch(/iptables-restore .*failed/);
    expectExactly(await save('iptables-save'), good.ipv4);
  });

  it('names the package when a binary is missing inside the namespace', async () => {
    const err = await runner()
      .run(['iptables-nonexistent-x'])
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'TESSERA_ERR_PREREQ' });
    expect((err as Error).message).toContain('apt-get install iptables');
  });

  it('removeAll removes every TESSERA chain and jump, stale ones in raw and nat too, and nothing else', async () => {
    const rec = createReconciler({ verifyMs: 0, runner: runner() });
    await rec.apply(buildRuleset(spec));
    // Leftovers of a crashed older daemon.
    await sh(['iptables', '-t', 'raw', '-N', 'TESSERA-OLD-RAW']);
    await sh(['iptables', '-t', 'raw', '-A', 'TESSERA-OLD-RAW', '-j', 'RETURN']);
    await sh(['iptables', '-t', 'raw', '-A', 'PREROUTING', '-p', 'tcp', '-j', 'TESSERA-OLD-RAW']);
    await sh(['iptables', '-t', 'nat', '-N', 'TESSERA-OLD-NAT']);
    await sh(['iptables', '-t', 'filter', '-A', 'DOCKER', '-j', 'TESSERA-REJECT']);
    const before4 = foreign(await save('iptables-save'));
    const before6 = foreign(await save('ip6tables-save'));
    const { removed, skipped } = await rec.removeAll();
    expect(skipped).toEqual([]);
    // ipv4: 7 chains + 5 jumps + 2 stale chains + 1 raw jump + 1 DOCKER reference; ipv6: 7 + 5; table inet tessera.
    expect(removed).toBe(10 + 5 + 2 + 1 + 1 + 10 + 5 + 1); // 10 chains a family: 3 of them UDP's (issue 13)
    const after4 = await save('iptables-save');
    const after6 = await save('ip6tables-save');
    expect(after4).not.toMatch(/TESSERA/);
    expect(after6).not.toMatch(/TESSERA/);
    expect(foreign(after4)).toEqual(before4);
    expect(foreign(after6)).toEqual(before6);
    expect(after4).toContain('-A DOCKER -d 10.213.30.99/32 -p tcp -m tcp --dport 80 -j ACCEPT');
    expect(after4).toContain('-A FORWARD -j DOCKER');
    expect(await rec.removeAll()).toEqual({ removed: 0, skipped: [] });
  });
});
