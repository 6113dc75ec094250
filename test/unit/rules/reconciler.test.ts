import { describe, expect, it } from 'vitest';
import { buildRuleset } from '../../../src/rules/ruleset.js';
import { createReconciler, type RulesLog } from '../../../src/rules/reconciler.js';
import { TesseraError } from '../../../src/errors.js';
import { FakeIptables } from './fake-iptables.js';

const spec = { queue: { num: 0, count: 4, bypass: false }, pus: [{ index: 1, classid: 0x7e550001 }], serverPorts: [80, 443] };

// Foreign state like Docker's: it must survive everything we do.
const FOREIGN = `*filter
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -j DOCKER
-A DOCKER-USER -j RETURN
-A DOCKER -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j ACCEPT
COMMIT
*nat
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
COMMIT
*mangle
-A PREROUTING -p udp -j MARK --set-xmark 0x4000/0x4000
COMMIT
`;

function setup() {
  const fake = new FakeIptables();
  fake.restore('ipv4', FOREIGN);
  fake.restore('ipv6', FOREIGN);
  const logs: Array<[string, object, string | undefined]> = [];
  const log: RulesLog = {
    debug: (o, m) => logs.push(['debug', o, m]),
    info: (o, m) => logs.push(['info', o, m]),
    warn: (o, m) => logs.push(['warn', o, m]),
  };
  return { fake, logs, rec: createReconciler({ runner: fake.runner, log, verifyMs: 0, cgroupExists: async () => true }) };
}

const withoutOurs = (d: Record<string, string[]>) =>
  Object.fromEntries(Object.entries(d).filter(([c]) => !c.startsWith('TESSERA-')).map(([c, rs]) => [c, rs.filter((r) => !/TESSERA-/.test(r))]));
const foreignSnapshot = (fake: FakeIptables) => (['ipv4', 'ipv6'] as const).map((f) => ['filter', 'nat', 'mangle', 'raw'].map((t) => withoutOurs(fake.dump(f, t))));

describe('reconciler', () => {
  it('installs the ruleset with one transaction per family, jumps first', async () => {
    const { fake, rec } = setup();
    const before = foreignSnapshot(fake);
    expect(await rec.apply(buildRuleset(spec))).toEqual({ changed: true, skipped: [] });
    const restores = fake.restores();
    expect(restores.map((c) => c.argv[0])).toEqual(['iptables-restore', 'ip6tables-restore']);
    for (const fam of ['ipv4', 'ipv6'] as const) {
      const mangle = fake.dump(fam, 'mangle');
      expect(mangle['PREROUTING']![0]).toBe('-j TESSERA-PREROUTING');
      expect(mangle['POSTROUTING']![0]).toBe('-j TESSERA-POSTROUTING');
      // Ports and PUs are table inet tessera's: no per-port or per-PU rule here.
      expect(mangle['TESSERA-PU-IN']).toBeUndefined();
      expect(mangle['TESSERA-PU-OUT']).toBeUndefined();
      const filter = fake.dump(fam, 'filter');
      expect(filter['INPUT']![0]).toBe('-j TESSERA-REJECT');
      expect(filter['INPUT']![0]).toBe('-j TESSERA-REJECT');
      // Docker's FORWARD rules are still there, in their order; ingress verdicts need no FORWARD jump.
      expect(filter['FORWARD']!).toEqual(['-j DOCKER-USER', '-o docker0 -j DOCKER']);
    }
    expect(foreignSnapshot(fake)).toEqual(before);
  });

  it('is a no-op (no transaction) when the state already matches', async () => {
    const { fake, rec } = setup();
    await rec.apply(buildRuleset(spec));
    const n = fake.restores().length;
    expect(await rec.apply(buildRuleset(spec))).toEqual({ changed: false, skipped: [] });
    expect(fake.restores().length).toBe(n);
    // iptables-save was read, per family, and nft listed our table; nothing was written.
    expect(fake.calls.slice(-4).map((c) => c.argv.join(' '))).toEqual(['iptables-save', 'ip6tables-save', 'nft list chain inet tessera lookup_in', 'nft list chain inet tessera lookup_out']);
    expect(fake.calls.filter((c) => c.argv.join(' ') === 'nft -f -')).toHaveLength(1);
  });

  it('rewrites our chains in one transaction when the desired state changes', async () => {
    const { fake, rec } = setup();
    await rec.apply(buildRuleset(spec));
    const n = fake.restores().length;
    expect((await rec.apply(buildRuleset({ ...spec, queue: { num: 0, count: 1, bypass: false } }))).changed).toBe(true);
    expect(fake.restores().length).toBe(n + 2);
    expect(fake.dump('ipv4', 'mangle')['TESSERA-PU-PORT']![0]).toMatch(/--queue-num 0$/);
    // Jumps are still exactly once each.
    expect(fake.dump('ipv4', 'mangle')['PREROUTING']!.filter((r) => r.includes('TESSERA'))).toEqual(['-j TESSERA-PREROUTING']);
  });

  it('heals a deleted rule, a deleted jump and a jump pushed down', async () => {
    const { fake, rec } = setup();
    await rec.apply(buildRuleset(spec));
    const last = fake.dump('ipv4', 'mangle')['TESSERA-INPUT']!.at(-1)!;
    fake.restore('ipv4', `*mangle\n-D TESSERA-INPUT ${last}\n-D POSTROUTING -j TESSERA-POSTROUTING\nCOMMIT\n`);
    fake.restore('ipv4', '*filter\n-I INPUT 1 -p icmp -j ACCEPT\nCOMMIT\n');
    const { changed } = await rec.apply(buildRuleset(spec));
    expect(changed).toBe(true);
    // Only the broken family was rewritten.
    expect(fake.restores().at(-1)!.argv[0]).toBe('iptables-restore');
    const mangle = fake.dump('ipv4', 'mangle');
    expect(mangle['TESSERA-INPUT']!.at(-1)).toBe(last);
    expect(mangle['POSTROUTING']![0]).toBe('-j TESSERA-POSTROUTING');
    expect(fake.dump('ipv4', 'filter')['INPUT']).toEqual(['-j TESSERA-REJECT', '-p icmp -j ACCEPT']);
    expect((await rec.apply(buildRuleset(spec))).changed).toBe(false);
  });

  it('removeAll removes our chains and jumps in every table and touches nothing else', async () => {
    const { fake, rec } = setup();
    const pristine = (['ipv4', 'ipv6'] as const).map((f) => ['filter', 'nat', 'mangle', 'raw'].map((t) => fake.dump(f, t)));
    await rec.apply(buildRuleset(spec));
    // Stale leftovers of an older version, in raw and nat, with a conditional jump.
    fake.restore('ipv4', '*raw\n:TESSERA-RAW - [0:0]\n-A TESSERA-RAW -j RETURN\n-A PREROUTING -p tcp -j TESSERA-RAW\nCOMMIT\n*nat\n:TESSERA-NAT - [0:0]\n-A DOCKER -j TESSERA-NAT\nCOMMIT\n');
    const { removed, skipped } = await rec.removeAll();
    // ipv4: 10 chains (3 of them UDP's) + 5 jumps in mangle/filter, 2 stale chains + 2 references; ipv6: 10 + 5; table inet tessera.
    expect(removed).toBe(10 + 5 + 2 + 2 + 10 + 5 + 1);
    expect(fake.nftTable).toBeNull();
    expect(skipped).toEqual([]);
    const after = (['ipv4', 'ipv6'] as const).map((f) => ['filter', 'nat', 'mangle', 'raw'].map((t) => withoutOurs(fake.dump(f, t))));
    // raw was created by the stale-state seed; compare the others exactly.
    expect(after[0]!.slice(0, 3)).toEqual(pristine[0]!.slice(0, 3));
    expect(after[1]).toEqual(pristine[1]!.map(withoutOurs));
    expect(after[0]![3]).toEqual({ PREROUTING: [], OUTPUT: [] });
    expect(fake.save('ipv4') + fake.save('ipv6')).not.toMatch(/TESSERA/);
    expect(fake.save('ipv4')).toContain('-A DOCKER -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j ACCEPT');
    // Nothing left to remove: no transaction.
    const n = fake.restores().length;
    expect(await rec.removeAll()).toEqual({ removed: 0, skipped: [] });
    expect(fake.restores().length).toBe(n);
  });

  it('refuses to enforce IPv4 alone when ip6tables is missing but the kernel has IPv6 (PUs would be open over IPv6)', async () => {
    const { fake, rec } = setup();
    fake.missing.add('ipv6');
    await expect(rec.apply(buildRuleset(spec))).rejects.toMatchObject({ code: 'TESSERA_ERR_PREREQ', message: expect.stringMatching(/reachable over IPv6/) });
    // Removing is still possible: nothing of ours can be in a family we could not write.
    expect((await rec.removeAll()).skipped).toEqual(['ipv6']);
  });

  it('continues with IPv4 and says so once when the kernel has no IPv6 at all', async () => {
    const { fake, rec, logs } = setup();
    fake.noIpv6Kernel = true;
    expect(await rec.apply(buildRuleset(spec))).toEqual({ changed: true, skipped: ['ipv6'] });
    expect(await rec.apply(buildRuleset(spec))).toEqual({ changed: false, skipped: ['ipv6'] });
    const warns = logs.filter(([l]) => l === 'warn');
    expect(warns).toHaveLength(1);
    expect(warns[0]![2]).toMatch(/no IPv6/);
    expect(fake.dump('ipv4', 'mangle')['TESSERA-APPLY']).toBeDefined();
  });

  it('does not hide a missing iptables (IPv4)', async () => {
    const { fake, rec } = setup();
    fake.missing.add('ipv4');
    await expect(rec.apply(buildRuleset(spec))).rejects.toMatchObject({ code: 'TESSERA_ERR_PREREQ' });
  });

  it('reports a rejected transaction as TESSERA_ERR_RULES with the transaction text', async () => {
    const fake = new FakeIptables();
    let restores = 0;
    const runner = {
      run: async (argv: string[], opts?: { input?: string; timeoutMs?: number }) => {
        if (argv[0] === 'iptables-restore') restores++;
        if (argv[0] === 'iptables-restore') throw new TesseraError('TESSERA_ERR_RULES', 'iptables-restore failed (exit status 2): line 3 failed');
        return fake.runner.run(argv, opts);
      },
    };
    const rec = createReconciler({ runner, families: ['ipv4'] });
    await expect(rec.apply(buildRuleset(spec))).rejects.toThrow(/ipv4: iptables-restore failed .*line 3 failed\n.*input was:\n\*mangle\n:TESSERA-OUTPUT/s);
    // Tried twice (a concurrent change is worth one re-read), then gave up.
    expect(restores).toBe(2);
  });

  it('re-reads and retries once when the state changed under it', async () => {
    const { fake, rec } = setup();
    await rec.apply(buildRuleset(spec));
    // Someone removes our jump between our save and our restore: the planned -D fails.
    let raced = false;
    const runner = {
      run: async (argv: string[], opts?: { input?: string; timeoutMs?: number }) => {
        if (argv[0] === 'iptables-restore' && !raced) {
          raced = true;
          fake.restore('ipv4', '*filter\n-D INPUT -j TESSERA-REJECT\nCOMMIT\n');
        }
        return fake.runner.run(argv, opts);
      },
    };
    fake.restore('ipv4', '*mangle\n-D PREROUTING -j TESSERA-PREROUTING\nCOMMIT\n');
    const r2 = createReconciler({ runner, families: ['ipv4'] });
    expect(await r2.apply(buildRuleset(spec))).toEqual({ changed: true, skipped: [] });
    expect(fake.dump('ipv4', 'filter')['INPUT']![0]).toBe('-j TESSERA-REJECT');
    expect(fake.dump('ipv4', 'mangle')['PREROUTING']![0]).toBe('-j TESSERA-PREROUTING');
    expect(raced).toBe(true);
    void rec;
  });

  it('manages only the families asked for', async () => {
    const fake = new FakeIptables();
    const rec = createReconciler({ runner: fake.runner, families: ['ipv4'] });
    await rec.apply(buildRuleset(spec));
    expect(fake.calls.every((c) => !c.argv[0]!.startsWith('ip6'))).toBe(true);
    expect(() => createReconciler({ runner: fake.runner, families: ['ipx' as 'ipv4'] })).toThrow(/unknown family/);
  });

  it('serializes concurrent calls', async () => {
    const { fake, rec } = setup();
    await Promise.all([rec.apply(buildRuleset(spec)), rec.apply(buildRuleset(spec)), rec.removeAll(), rec.apply(buildRuleset(spec))]);
    expect(fake.dump('ipv4', 'mangle')['PREROUTING']!.filter((r) => r.includes('TESSERA'))).toEqual(['-j TESSERA-PREROUTING']);
    // apply, (no-op), removeAll, apply -> 3 transactions per family.
    expect(fake.restores()).toHaveLength(6);
  });

  it('a new PU is one nft element transaction: no iptables-save, no rewrite; the kernel is read again after verifyMs', async () => {
    const fake = new FakeIptables();
    let clock = 0;
    const exists = new Set(['unified/t/p1', 'unified/t/p2']);
    const rec = createReconciler({ runner: fake.runner, verifyMs: 5000, now: () => clock, cgroupExists: async (p) => exists.has(p) });
    const pu = (i: number) => ({ index: i, classid: 0x7e550000 + i, cgroup2: { path: `unified/t/p${i}`, cgroup: `t/p${i}`, level: 2 } });
    const base = { queue: { num: 0, count: 1, bypass: false }, serverPorts: [] };
    await rec.apply(buildRuleset({ ...base, pus: [pu(1)] }));
    const before = fake.calls.length;
    clock = 1000;
    expect((await rec.apply(buildRuleset({ ...base, pus: [pu(1), pu(2)] }))).changed).toBe(true);
    const calls = fake.calls.slice(before);
    expect(calls.map((c) => c.argv.join(' '))).toEqual(['nft -f -']);
    expect(calls[0]!.input).toContain('add element inet tessera in_l2 { "unified/t/p2" : goto in_2 }');
    expect(calls[0]!.input).not.toContain('p1');
    // PU 2's cgroup goes before the PU: its element cannot be named, so nothing is written for it.
    exists.delete('unified/t/p2');
    expect((await rec.apply(buildRuleset({ ...base, pus: [pu(1)] }))).changed).toBe(true);
    expect(fake.nftDeltas.at(-1)).not.toContain('p2');
    // After verifyMs the kernel is read again: a table someone removed is written whole.
    clock = 10_000;
    fake.nftTable = null;
    expect((await rec.apply(buildRuleset({ ...base, pus: [pu(1)] }))).changed).toBe(true);
    expect(fake.nftTable).toContain('"unified/t/p1" : goto in_1');
  });

  it('with a change signal, an idle pass reads nothing until the generation moves or the quiet backstop ends', async () => {
    const fake = new FakeIptables();
    let clock = 0;
    let gen: number | undefined = 7;
    const rec = createReconciler({ runner: fake.runner, verifyMs: 5000, quietMs: 600_000, generation: () => gen, now: () => clock, cgroupExists: async () => true });
    const pu = (i: number) => ({ index: i, classid: 0x7e550000 + i, cgroup2: { path: `unified/t/p${i}`, cgroup: `t/p${i}`, level: 2 } });
    const rules = buildRuleset({ queue: { num: 0, count: 1, bypass: false }, serverPorts: [], pus: [pu(1)] });
    await rec.apply(rules);
    gen = 9; // our own writes were seen
    clock = 1000;
    await rec.apply(rules); // within verifyMs: nothing read
    clock = 6000;
    let before = fake.calls.length;
    await rec.apply(rules); // generation moved since the read: read once (save both families, list the chains)
    expect(fake.calls.slice(before).map((c) => c.argv[0])).toEqual(['iptables-save', 'ip6tables-save', 'nft', 'nft']);
    // Idle: the generation stands still; many passes later, not one command.
    before = fake.calls.length;
    for (clock = 20_000; clock < 590_000; clock += 10_000) await rec.apply(rules);
    expect(fake.calls.length).toBe(before);
    // Someone removes a chain of ours: the monitor moves the generation, the next pass repairs it.
    fake.nftTable = null;
    gen = 10;
    expect((await rec.apply(rules)).changed).toBe(true);
    expect(fake.nftTable).toContain('"unified/t/p1" : goto in_1');
    // Unknown generation (the monitor is gone): reads on the verifyMs clock again.
    gen = undefined;
    clock += 10_000;
    before = fake.calls.length;
    await rec.apply(rules);
    expect(fake.calls.slice(before).map((c) => c.argv[0])).toContain('iptables-save');
    // The backstop: a generation that never moves still gets a read after quietMs.
    gen = 11;
    clock += 10_000;
    await rec.apply(rules);
    before = fake.calls.length;
    clock += 10_000;
    await rec.apply(rules);
    expect(fake.calls.length).toBe(before);
    clock += 600_000;
    await rec.apply(rules);
    expect(fake.calls.slice(before).map((c) => c.argv[0])).toContain('iptables-save');
  });
});
