// net_cls cgroups with real iptables: a process in a PU cgroup gets the PU index in the
// nfmark of its SYN (table inet tessera's classid map), an untagged process does not; cgroups are removed
// cleanly, and removeAll evicts (does not kill) stragglers.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { spawn, execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTopology, isRoot, killAndWait, uniquePrefix, type NsHost, type Topology } from '../../scripts/lib/netns.js';
import { buildRuleset, classidFor, createCommandRunner, createNetCls, createReconciler, type NetCls, type Reconciler } from '../../src/rules/index.js';
import { TesseraError } from '../../src/errors.js';
import { CT_CLIENT_PENDING, OP_MASK, OP_SET_CLIENT_PENDING, markForPuIndex, PU_INDEX_MASK, hex } from '../../src/marks.js';
import { skipBecause } from '../helpers/skip.js';

skipBecause(!isRoot, 'cgroups integration (needs root)', 'integration tests need root: run as root');

describe.runIf(isRoot)('net_cls cgroups mark a PU\'s SYN', () => {
  let topo: Topology;
  let a: NsHost;
  let b: NsHost;
  let netcls: NetCls;
  let rec: Reconciler;
  const root = `tessera-test-${randomBytes(4).toString('hex')}`;
  const PU = 3;
  const classid = classidFor(PU);
  const puMark = `${hex(markForPuIndex(PU))}/${hex(PU_INDEX_MASK)}`;

  beforeAll(async () => {
    topo = await createTopology({ prefix: uniquePrefix('rl'), hosts: ['a', 'b'], subnet: 31 });
    a = topo.host('a');
    b = topo.host('b');
    netcls = createNetCls({ root });
    rec = createReconciler({ runner: createCommandRunner({ prefix: ['ip', 'netns', 'exec', a.ns] }), families: ['ipv4'] });
    // Fail-open queue: with no worker bound, the queue rule counts the SYN and lets it through.
    await rec.apply(buildRuleset({ queue: { num: 0, count: 1, bypass: true }, pus: [{ index: PU, classid }], serverPorts: [] }));
    // Counting rules (no target) after mangle: nat POSTROUTING sees each connection's SYN once, with its final nfmark.
    for (const [port, mark] of [['7777', puMark], ['7778', puMark], ['7778', `0x0/${hex(PU_INDEX_MASK)}`]] as const) {
      const r = await a.exec(['iptables', '-t', 'nat', '-A', 'POSTROUTING', '-p', 'tcp', '--dport', port, '-m', 'mark', '--mark', mark]);
      expect(r.code, r.stderr).toBe(0);
    }
  });

  afterAll(async () => {
    try {
      await netcls?.removeAll();
    } finally {
      await rec?.removeAll().catch(() => {});
      await topo?.destroy();
    }
  });

  /** Packet counters of saved rules matching a pattern, from iptables-save -c. */
  async function counters(table: string, pattern: RegExp): Promise<number[]> {
    const r = await a.exec(['iptables-save', '-c', '-t', table]);
    expect(r.code).toBe(0);
    return r.stdout
      .split('\n')
      .filter((l) => pattern.test(l))
      .map((l) => Number(/^\[(\d+):\d+\]/.exec(l)?.[1] ?? NaN));
  }
  const queueRule = /-A TESSERA-POSTROUTING -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j NFQUEUE/;

  /** Run `busybox nc` to b:port from namespace a; if cgroup is given, the shell joins it before exec. */
  async function connect(port: number, cgroup?: string): Promise<void> {
    const child = a.spawn(['sh', '-c', `read go; exec busybox nc -w 1 ${b.addr} ${port} </dev/null`]);
    try {
      if (cgroup) {
        // `ip netns exec` execs (no fork), so the child's PID is the shell's, and then nc's.
        await netcls.addPid(cgroup, child.pid!);
        expect(await netcls.pids(cgroup)).toContain(child.pid);
      }
      const done = new Promise<number | null>((resolve) => child.once('exit', resolve));
      child.stdin!.write('go\n');
      const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5000).unref());
      expect(await Promise.race([done, timeout])).not.toBe('timeout');
    } finally {
      await killAndWait(child);
    }
  }

  it('finds the mounted net_cls hierarchy and creates a cgroup with our classid', async () => {
    const mount = await netcls.ensureMounted();
    expect((await readFile('/proc/self/mounts', 'utf8')).split('\n').some((l) => l.split(' ')[1] === mount && /\bnet_cls\b/.test(l))).toBe(true);
    const dir = await netcls.create('pu3', classid);
    expect(dir).toBe(`${mount}/${root}/pu3`);
    expect(Number((await readFile(`${dir}/net_cls.classid`, 'utf8')).trim())).toBe(0x7e550003);
    expect(await netcls.list()).toEqual([{ name: 'pu3', classid }]);
    expect(await netcls.pids('pu3')).toEqual([]);
  });

  it("marks the SYN of a process in the PU cgroup, and not an untagged process's", async () => {
    const q0 = (await counters('mangle', queueRule))[0]!;
    await connect(7777, 'pu3');
    const [tagged] = await counters('nat', new RegExp(`--dport 7777 -m mark --mark ${puMark}`));
    const q1 = (await counters('mangle', queueRule))[0]!;
    expect(tagged).toBe(1);
    expect(q1 - q0).toBe(1);

    await connect(7778);
    const [asPu, unmarked] = await counters('nat', /--dport 7778 -m mark --mark/);
    expect(asPu).toBe(0);
    expect(unmarked).toBe(1);
    expect((await counters('mangle', queueRule))[0]).toBe(q1);
    console.log(`tagged SYN: marked ${tagged}, queued ${q1 - q0}; untagged SYN: 0 and 0`);
  });

  it("saves the PU index in the connmark with the client's SYN and restores it on the SYN-ACK", async () => {
    // Stand in for the worker's REPEAT verdict on the SYN (op SET_CLIENT_PENDING + PU index):
    // mangle OUTPUT runs before POSTROUTING, where TESSERA-APPLY consumes the op bits.
    const repeatMark = `${hex(OP_SET_CLIENT_PENDING | markForPuIndex(PU))}/${hex(OP_MASK | PU_INDEX_MASK)}`;
    for (const argv of [
      ['-t', 'mangle', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '7779', '--tcp-flags', 'SYN,ACK,FIN,RST', 'SYN', '-j', 'MARK', '--set-xmark', repeatMark],
      // Counting rules in filter INPUT (after mangle INPUT): the SYN-ACK's nfmark.
      ['-t', 'filter', '-A', 'INPUT', '-p', 'tcp', '--sport', '7779', '--tcp-flags', 'SYN,ACK,FIN,RST', 'SYN,ACK', '-m', 'mark', '--mark', puMark],
      ['-t', 'filter', '-A', 'INPUT', '-p', 'tcp', '--sport', '7779', '--tcp-flags', 'SYN,ACK,FIN,RST', 'SYN,ACK'],
    ]) {
      const r = await a.exec(['iptables', ...argv]);
      expect(r.code, r.stderr).toBe(0);
    }
    const server = b.spawn(['busybox', 'nc', '-l', '-p', '7779']);
    try {
      await new Promise((r) => setTimeout(r, 300));
      await connect(7779);
    } finally {
      await killAndWait(server);
    }
    const [withPu, all] = await counters('filter', /--sport 7779 /);
    expect(all).toBeGreaterThanOrEqual(1);
    expect(withPu).toBe(all);
    const ct = await a.exec(['conntrack', '-L', '-p', 'tcp', '--dport', '7779']);
    expect(ct.code, ct.stderr).toBe(0);
    // TIME_WAIT keeps the entry: its connmark holds the pending bit and the PU index.
    const mark = Number(/mark=(\d+)/.exec(ct.stdout)?.[1]);
    expect(hex(mark & (PU_INDEX_MASK | CT_CLIENT_PENDING))).toBe(hex(markForPuIndex(PU) | CT_CLIENT_PENDING));
  });

  it('refuses to remove a cgroup with a process in it, and removes it once empty', async () => {
    await netcls.create('busy', classidFor(9));
    const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await netcls.addPid('busy', sleeper.pid!);
      const err = await netcls.remove('busy').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TesseraError);
      expect((err as TesseraError).code).toBe('TESSERA_ERR_CGROUP');
      expect((err as Error).message).toContain(`${root}/busy`);
      expect((err as Error).message).toContain(String(sleeper.pid));
      expect(sleeper.exitCode).toBeNull();
    } finally {
      await killAndWait(sleeper);
    }
    await netcls.remove('busy');
    expect((await netcls.list()).map((c) => c.name)).toEqual(['pu3']);
    await netcls.remove('busy'); // absent: no-op
  });

  it('removeAll moves stragglers out (alive) and removes the whole subtree', async () => {
    const mount = await netcls.ensureMounted();
    await netcls.create('straggler', classidFor(10));
    const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await netcls.addPid('straggler', sleeper.pid!);
      expect(await netcls.removeAll()).toBe(2);
      expect(sleeper.exitCode).toBeNull();
      const line = (await readFile(`/proc/${sleeper.pid}/cgroup`, 'utf8')).split('\n').find((l) => /:net_cls\b/.test(l));
      expect(line).toMatch(/:\/$/);
      expect(execFileSync('ls', [mount]).toString()).not.toContain(root);
    } finally {
      await killAndWait(sleeper);
    }
    expect(await netcls.removeAll()).toBe(0);
  });

  it('mounts net_cls itself where none is mounted (private mount namespace)', async () => {
    // Hide the machine's net_cls mount in a private mount namespace, then let ensureMounted()
    // find none and mount the hierarchy again at the default place.
    const script = `
      import { createNetCls } from ${JSON.stringify(new URL('../../src/rules/index.ts', import.meta.url).pathname)};
      const n = createNetCls({ root: ${JSON.stringify(root + '-m')} });
      const p = await n.ensureMounted();
      const d = await n.create('x', 0x7e550001);
      console.log(JSON.stringify({ p, d }));
      await n.removeAll();
    `;
    const mounts = await readFile('/proc/self/mounts', 'utf8');
    const existing = mounts.split('\n').filter((l) => l.split(' ')[2] === 'cgroup' && /\bnet_cls\b/.test(l.split(' ')[3] ?? '')).map((l) => l.split(' ')[1]!);
    const umounts = existing.map((m) => `umount ${m}`).join(' && ');
    const out = execFileSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `${umounts || 'true'} && grep -c net_cls /proc/self/mounts; exec npx tsx --input-type=module -e "$0"`, script], {
      timeout: 60_000,
      cwd: new URL('../..', import.meta.url).pathname,
    }).toString();
    const lines = out.trim().split('\n');
    expect(lines[0]).toBe('0');
    const { p, d } = JSON.parse(lines.at(-1)!) as { p: string; d: string };
    expect(['/sys/fs/cgroup/net_cls', '/run/tessera/net_cls']).toContain(p);
    expect(d).toBe(`${p}/${root}-m/x`);
  });
});
