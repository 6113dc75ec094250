import { describe, expect, it } from 'vitest';
import { buildRuleset, type Ruleset, type RulesetSpec } from '../../../src/rules/ruleset.js';
import { nftModel, renderNftDelta, renderNftTable } from '../../../src/rules/nft.js';
import { classidFor } from '../../../src/rules/cgroups.js';
import { TesseraError } from '../../../src/errors.js';
import {
  CTMARK_MASK,
  CT_AUTHORIZED,
  CT_CLIENT_PENDING,
  CT_SERVER_PENDING,
  NFMARK_MASK,
  OP_CLEAR_CLIENT_PENDING,
  OP_CLEAR_SERVER_PENDING,
  OP_MASK,
  OP_PRESENT,
  OP_SET_CLIENT_PENDING,
  OP_SET_SERVER_PENDING,
  HOST_SOCK,
  PORT_GUARD,
  PORT_SERVER,
  PU_DEST,
  PU_INDEX_MASK,
  REJECT_BIT,
  markForPuIndex,
  hex,
} from '../../../src/marks.js';

const base: RulesetSpec = { queue: { num: 0, count: 1, bypass: false }, pus: [], serverPorts: [] };
const threePus = [1, 2, 3].map((index) => ({ index, classid: classidFor(index) }));

// Snapshots show each rule as one line, as iptables-save would print it: easier to review.
const compact = (rs: Ruleset) => ({
  nft: rs.nft,
  ...Object.fromEntries(
    (['ipv4', 'ipv6'] as const).map((fam) => [rs[fam], fam] as const).map(([tables, fam]) => [
      fam,
      Object.fromEntries(
        Object.entries(tables).map(([t, tr]) => [
          t,
          { jumps: tr!.jumps, chains: Object.fromEntries(Object.entries(tr!.chains).map(([c, rules]) => [c, rules.map((r) => r.join(' '))])) },
        ]),
      ),
    ]),
  ),
});

const queueArgs = (rules: readonly (readonly string[])[]) => rules.map((r) => r.slice(r.indexOf('NFQUEUE') - 1)).filter((r) => r[1] === 'NFQUEUE');

describe('buildRuleset', () => {
  it('1 queue, no PUs, no ports', () => {
    expect(compact(buildRuleset(base))).toMatchSnapshot();
  });

  it('4 queues, bypass, 3 PUs, ports', () => {
    expect(compact(buildRuleset({ queue: { num: 8, count: 4, bypass: true }, pus: threePus, serverPorts: [8080, 80, 443, 80] }))).toMatchSnapshot();
  });

  it('1 queue with fail-open', () => {
    expect(compact(buildRuleset({ ...base, queue: { num: 3, count: 1, bypass: true }, serverPorts: [22] }))).toMatchSnapshot();
  });

  it('uses --queue-num for one queue and --queue-balance for several, --queue-bypass only when fail-open', () => {
    const one = buildRuleset(base).ipv4.mangle!.chains['TESSERA-INPUT']!;
    for (const q of queueArgs(one)) expect(q).toEqual(['-j', 'NFQUEUE', '--queue-num', '0']);
    const four = buildRuleset({ ...base, queue: { num: 8, count: 4, bypass: true } }).ipv6.mangle!.chains['TESSERA-POSTROUTING']!;
    const qs = queueArgs(four);
    expect(qs).toHaveLength(2);
    for (const q of qs) expect(q).toEqual(['-j', 'NFQUEUE', '--queue-balance', '8:11', '--queue-bypass']);
  });

  it('jumps first from every hook it needs: ingress after DNAT (INPUT), egress in POSTROUTING, our bits cleared on entry', () => {
    const rs = buildRuleset(base).ipv4;
    expect(rs.mangle!.jumps).toEqual({ OUTPUT: 'TESSERA-OUTPUT', PREROUTING: 'TESSERA-PREROUTING', INPUT: 'TESSERA-INPUT', POSTROUTING: 'TESSERA-POSTROUTING' });
    expect(rs.filter!.jumps).toEqual({ INPUT: 'TESSERA-REJECT' });
    for (const c of ['TESSERA-OUTPUT', 'TESSERA-PREROUTING']) {
      expect(rs.mangle!.chains[c]!.map((r) => r.join(' '))).toEqual([`-m mark ! --mark 0x0/${hex(NFMARK_MASK)} -j MARK --set-xmark 0x0/${hex(NFMARK_MASK)}`]);
    }
  });

  it('every queue rule matches only handshake packets: a SYN, a SYN-ACK of a pending flow, or our server\'s SYN-ACK', () => {
    const rs = buildRuleset({ ...base, pus: threePus, serverPorts: [80] }).ipv4.mangle!;
    // (UDP's chains queue datagrams of flows not authorized: test/unit/rules/default-deny.test.ts.)
    for (const [name, rules] of Object.entries(rs.chains)) {
      if (name.startsWith('TESSERA-UDP-')) continue;
      for (const r of rules) {
        if (!r.includes('NFQUEUE')) continue;
        const s = r.join(' ');
        const syn = s.includes('--tcp-flags FIN,SYN,RST,ACK SYN ');
        const clientSynAck = s.includes(`--tcp-flags FIN,SYN,RST,ACK SYN,ACK -m connmark --mark ${hex(CT_CLIENT_PENDING)}/${hex(CT_CLIENT_PENDING)} `);
        const serverSynAck = s.includes(`--tcp-flags FIN,SYN,RST,ACK SYN,ACK -m connmark ! --mark 0x0/${hex(CT_SERVER_PENDING | CT_AUTHORIZED)} `);
        expect(syn || clientSynAck || serverSynAck, s).toBe(true);
      }
    }
  });

  it('never queues a third packet (four passes): an ACK of a flow whose SYN-ACK has not left is dropped, whatever its FIN bit', () => {
    const m = buildRuleset(base).ipv4.mangle!;
    const acks = [...m.chains['TESSERA-INPUT']!, ...m.chains['TESSERA-POSTROUTING']!].map((r) => r.join(' ')).filter((r) => / ACK -m connmark/.test(r));
    expect(acks).toEqual([`-p tcp -m tcp --tcp-flags SYN,RST,ACK ACK -m connmark --mark ${hex(CT_SERVER_PENDING)}/${hex(CT_SERVER_PENDING)} -j DROP`]);
    // Our server's SYN-ACK is queued before the AUTHORIZED rule, so a retransmitted one gets its block again.
    const post = m.chains['TESSERA-POSTROUTING']!.map((r) => r.join(' '));
    expect(post.findIndex((r) => r.includes('SYN,ACK') && r.includes('NFQUEUE'))).toBeLessThan(post.findIndex((r) => r.endsWith('-j RETURN')));
  });

  it('with queue.ackPass (benchmark, --six-passes) queues the first ACK at both ends as protocol v1 did', () => {
    const m = buildRuleset({ ...base, queue: { ...base.queue, ackPass: true } }).ipv4.mangle!;
    const acks = [...m.chains['TESSERA-INPUT']!, ...m.chains['TESSERA-POSTROUTING']!].map((r) => r.join(' ')).filter((r) => / ACK -m connmark/.test(r));
    expect(acks).toHaveLength(2);
    for (const r of acks) expect(r).toMatch(/--tcp-flags SYN,RST,ACK ACK .* -j NFQUEUE/);
  });

  it('names no PU and no port in iptables: classification is table inet tessera\'s (one map lookup)', () => {
    const m = buildRuleset({ ...base, pus: [...threePus].reverse(), serverPorts: [22, 80] }).ipv4.mangle!;
    expect(m).toEqual(buildRuleset(base).ipv4.mangle!);
    expect(Object.keys(m.chains)).not.toContain('TESSERA-PU-OUT');
    const text = renderNftTable(nftModel(buildRuleset({ ...base, pus: [...threePus].reverse() }).nft!));
    expect(text).toContain(`map out_classid { typeof meta cgroup : verdict; elements = { ${threePus.map((p) => `${hex(p.classid)} : goto out_${p.index}`).join(', ')} }; }`);
    for (const p of threePus) expect(text).toContain(`chain out_${p.index} { meta mark set meta mark & ${hex(~PU_INDEX_MASK)} | ${hex(markForPuIndex(p.index))}; }`);
  });

  it('TESSERA-APPLY is entered only with an op code, first in both judging hooks, and ends with ACCEPT', () => {
    const m = buildRuleset(base).ipv4.mangle!;
    // (After the one rule that takes UDP to its own chains.)
    for (const c of ['TESSERA-INPUT', 'TESSERA-POSTROUTING']) expect(m.chains[c]!.filter((r) => r[1] !== 'udp')[0]!.join(' ')).toBe(`-m mark --mark ${hex(OP_PRESENT)}/${hex(OP_PRESENT)} -j TESSERA-APPLY`);
    expect(m.chains['TESSERA-APPLY']!.at(-1)).toEqual(['-j', 'ACCEPT']);
    for (const op of [OP_SET_CLIENT_PENDING, OP_CLEAR_CLIENT_PENDING, OP_SET_SERVER_PENDING, OP_CLEAR_SERVER_PENDING]) expect(op & OP_PRESENT).toBe(OP_PRESENT);
  });

  it('no connmark of ours read as an nfmark is an op code or a reject (a foreign CONNMARK --restore-mark cannot forge a verdict)', () => {
    for (const ct of [CT_CLIENT_PENDING, CT_SERVER_PENDING, CT_AUTHORIZED, CTMARK_MASK]) {
      expect(ct & OP_PRESENT).toBe(0);
      expect(ct & REJECT_BIT).toBe(0);
    }
  });

  it("restores the client PU's index from the connmark before its SYN-ACK is queued, and saves it with its SYN", () => {
    const m = buildRuleset({ ...base, pus: threePus }).ipv4.mangle!.chains;
    const pre = m['TESSERA-INPUT']!.map((r) => r.join(' '));
    const restore = pre.findIndex((r) => r.includes('--restore-mark'));
    const queue = pre.findIndex((r) => r.includes('SYN,ACK') && r.includes('NFQUEUE'));
    expect(restore).toBeGreaterThan(0);
    expect(restore).toBeLessThan(queue);
    expect(pre[restore]).toBe(`-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN,ACK -m connmark --mark ${hex(CT_CLIENT_PENDING)}/${hex(CT_CLIENT_PENDING)} -j CONNMARK --restore-mark --nfmask ${hex(PU_INDEX_MASK)} --ctmask ${hex(PU_INDEX_MASK)}`);
    const apply = m['TESSERA-APPLY']!.map((r) => r.join(' '));
    const save = apply.findIndex((r) => r.includes('--save-mark'));
    expect(apply[save]).toBe(`-m mark --mark ${hex(OP_SET_CLIENT_PENDING)}/${hex(OP_MASK)} -j CONNMARK --save-mark --nfmask ${hex(PU_INDEX_MASK)} --ctmask ${hex(PU_INDEX_MASK)}`);
    expect(save).toBeLessThan(apply.findIndex((r) => r.startsWith('-j MARK')));
  });

  it('finds PU sockets by cgroup v2 in table inet tessera: one lookup per level, one small chain per PU, other mark bits kept', () => {
    const pus = [
      { index: 2, classid: classidFor(2), cgroup2: { path: 'unified/tessera/proc-b', cgroup: 'tessera/proc-b', level: 2 } },
      { index: 1, classid: classidFor(1), cgroup2: { path: 'unified/docker/abc', cgroup: 'docker/abc', level: 2 } },
      { index: 5, classid: classidFor(5), cgroup2: { path: 'unified/a/b/c', cgroup: 'a/b/c', level: 3 } },
      { index: 6, classid: classidFor(6) },
    ];
    const text = renderNftTable(nftModel(buildRuleset({ ...base, pus, serverPorts: [22], guardPorts: [22, 80] }).nft!));
    expect(text).toMatchSnapshot();
    expect(text.startsWith('table inet tessera\ndelete table inet tessera\ntable inet tessera {\n')).toBe(true);
    expect(text.match(/tcp socket cgroupv2 level \d+ vmap @\w+/g)!.map((x) => x.slice(4))).toEqual(['socket cgroupv2 level 2 vmap @in_l2', 'socket cgroupv2 level 3 vmap @in_l3', 'socket cgroupv2 level 2 vmap @out_l2', 'socket cgroupv2 level 3 vmap @out_l3']);
    // UDP (issue 13): the same lookups, one per level and direction.
    expect(text.match(/udp socket cgroupv2 level \d+ vmap @\w+/g)).toHaveLength(4);
    expect(text).toContain(`chain in_1 { meta mark set meta mark & ${hex(~(PU_INDEX_MASK | PU_DEST | HOST_SOCK | PORT_GUARD | PORT_SERVER) >>> 0)} | ${hex(markForPuIndex(1) | PU_DEST)}; }`);
    expect(text).toContain('"unified/docker/abc" : goto in_1');
    expect(text).not.toMatch(/"[^"]*" : goto in_6/);
    expect(text).toContain('set server_ports { type inet_service; elements = { 22 }; }');
    expect(() => buildRuleset({ ...base, pus: [{ index: 1, classid: 1, cgroup2: { path: 'x', cgroup: 'a b', level: 1 } }] })).toThrow(/PU cgroup/);
    expect(buildRuleset({ ...base, namespacePu: 3 }).nft).toBeUndefined();
    expect(() => buildRuleset({ ...base, pus: [{ index: 1, classid: 1, cgroup2: { path: '../x', cgroup: 'x', level: 1 } }] })).toThrow(/cgroup path/);
  });

  it('has the same rules for IPv4 and IPv6', () => {
    const rs = buildRuleset({ ...base, pus: threePus, serverPorts: [22] });
    // Except where UDP's magic sits (after a 20- or 40-byte header) and the ICMP type of a refusal.
    const same = (t: object): string => JSON.stringify(t).replace(/"--u32","[^,]*"/g, '').replace(/icmp6?-port-unreachable/g, '');
    expect(same(rs.ipv6)).toEqual(same(rs.ipv4));
  });

  it.each([
    [{ ...base, queue: { num: -1, count: 1, bypass: false } }, /queue.num/],
    [{ ...base, queue: { num: 65535, count: 2, bypass: false } }, /queue.count/],
    [{ ...base, queue: { num: 0, count: 0, bypass: false } }, /queue.count/],
    [{ ...base, pus: [{ index: 0, classid: 5 }] }, /PU index/],
    [{ ...base, pus: [{ index: 8192, classid: 5 }] }, /PU index/],
    [{ ...base, pus: [{ index: 1, classid: 0 }] }, /classid/],
    [{ ...base, pus: [{ index: 1, classid: 5 }, { index: 1, classid: 6 }] }, /used twice/],
    [{ ...base, pus: [{ index: 1, classid: 5 }, { index: 2, classid: 5 }] }, /used twice/],
    [{ ...base, serverPorts: [0] }, /server port/],
    [{ ...base, serverPorts: [1.5] }, /server port/],
  ])('rejects an invalid spec %#', (spec, re) => {
    expect(() => buildRuleset(spec as RulesetSpec)).toThrow(re);
    try {
      buildRuleset(spec as RulesetSpec);
    } catch (err) {
      expect(err).toBeInstanceOf(TesseraError);
      expect((err as TesseraError).code).toBe('TESSERA_ERR_INVALID_ARGUMENT');
    }
  });

  it('adds a PU with element adds only (no rewrite), and rewrites the table only when a cgroup depth appears', () => {
    const ref = (i: number, level = 2) => ({ path: `unified/t/p${i}`, cgroup: `t/p${i}`, level });
    const pus = (n: number) => Array.from({ length: n }, (_, k) => ({ index: k + 1, classid: classidFor(k + 1), cgroup2: ref(k + 1) }));
    const a = nftModel({ pus: pus(4000), serverPorts: [], guardPorts: [8000] });
    const b = nftModel({ pus: pus(4001), serverPorts: [], guardPorts: [8000, 8001] });
    const d = renderNftDelta({ model: a, chains: a.indexes }, b)!;
    expect(d.text.split('\n').filter(Boolean)).toEqual([
      'add chain inet tessera in_4001',
      `add rule inet tessera in_4001 meta mark set meta mark & ${hex(~(PU_INDEX_MASK | PU_DEST | HOST_SOCK | PORT_GUARD | PORT_SERVER) >>> 0)} | ${hex(4001 | PU_DEST)}`,
      'add chain inet tessera out_4001',
      `add rule inet tessera out_4001 meta mark set meta mark & ${hex(~PU_INDEX_MASK)} | ${hex(4001)}`,
      'add element inet tessera in_l2 { "unified/t/p4001" : goto in_4001 }',
      'add element inet tessera out_l2 { "unified/t/p4001" : goto out_4001 }',
      `add element inet tessera out_classid { ${hex(classidFor(4001))} : goto out_4001 }`,
      'add element inet tessera guard_ports { 8001 }',
    ]);
    // Removing it again deletes its elements but keeps its chains (an index is reused as it is).
    const back = renderNftDelta({ model: b, chains: d.chains }, a)!;
    expect(back.text).toContain('delete element inet tessera in_l2 { "unified/t/p4001" }');
    expect(back.text).not.toContain('chain');
    expect(back.chains.has(4001)).toBe(true);
    // A cgroup gone before its PU cannot be named by nft: left as a stale element, not deleted.
    expect(renderNftDelta({ model: b, chains: d.chains }, a, new Set(['2 unified/t/p4001']))!.text).not.toContain('p4001');
    expect(renderNftDelta({ model: a, chains: a.indexes }, nftModel({ pus: [...pus(1), { index: 9, classid: 9, cgroup2: ref(9, 3) }], serverPorts: [], guardPorts: [] }))).toBeUndefined();
    expect(renderNftDelta({ model: a, chains: a.indexes }, a)!.text).toBe('');
  });
});
