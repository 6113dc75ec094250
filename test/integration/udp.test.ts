// UDP between PUs on the real kernel path (issue 13): the seeds' DNS-on-the-host-network case.
// b runs a UDP echo server as a PU app=dns; a runs PU clients and unprotected ones; c is a
// host without Tessera with its own echo server. Each client sends a DNS-sized query and
// retries twice (as a resolver does); the test counts answers, never durations.
// Both address families: every host also gets an IPv6 ULA address on the shared segment.

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { createCluster, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, killAndWait, uniquePrefix } from '../../scripts/lib/netns.js';
import { skipBecause } from '../helpers/skip.js';
import { udpEcho, udpProbe, udpQuery } from './udp-apps.js';

skipBecause(!isRoot, 'UDP between PUs (needs root)', 'integration tests need root: run npm test as root');

const SUBNET = 130;
const v6 = (i: number): string => `fd00:213:${SUBNET}::${i}`;

describe.runIf(isRoot)('UDP between PUs on the real kernel path', () => {
  let cluster: Cluster;
  let a: TesseraHost, b: TesseraHost, c: TesseraHost;
  const children: ChildProcess[] = [];

  const answered = (r: { stdout: string }): boolean => r.stdout.trim() === 'echo:';

  beforeAll(async () => {
    cluster = await createCluster({ prefix: uniquePrefix('udp'), hosts: ['a', 'b', 'c'], subnet: SUBNET, trust: 'psk', start: false });
    [a, b, c] = [cluster.host('a'), cluster.host('b'), cluster.host('c')];
    for (const [i, h] of [a, b, c].entries()) {
      const r = await h.exec(['ip', 'addr', 'add', `${v6(i + 1)}/64`, 'dev', 'eth0', 'nodad']);
      expect(r.code, r.stderr).toBe(0);
    }
    await Promise.all([a.startDaemon(), b.startDaemon(['--metrics-listen', '127.0.0.1:9713'])]); // c has no daemon
    children.push(b.spawnPu(['app=dns'], udpEcho(4, 5353)));
    children.push(b.spawnPu(['app=dns'], udpEcho(6, 5363)));
    children.push(b.spawn(udpEcho(4, 5355))); // the host's own service on b
    children.push(c.spawn(udpEcho(4, 5354)));
    children.push(c.spawn(udpEcho(6, 5364)));
    // The servers bind within a second; the host's own client on c proves it (c has no daemon).
    for (let i = 0; i < 50; i++) {
      if (answered(await c.exec(udpQuery(b.addr, 5355, 1)))) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 500));
  }, 120_000);

  afterAll(async () => {
    for (const ch of children) await killAndWait(ch).catch(() => undefined);
    await cluster?.destroy();
  });

  it('answers a same-label PU client (IPv4 and IPv6)', async () => {
    const r4 = await a.runPu(['app=dns'], udpQuery(b.addr, 5353));
    const r6 = await a.runPu(['app=dns'], udpQuery(v6(2), 5363));
    console.log(`same label: v4 ${r4.stdout.trim()} v6 ${r6.stdout.trim()}`);
    expect(answered(r4), r4.stderr).toBe(true);
    expect(answered(r6), r6.stderr).toBe(true);
  });

  it('refuses a PU client with another label (IPv4 and IPv6)', async () => {
    const r4 = await a.runPu(['app=other'], udpQuery(b.addr, 5353));
    const r6 = await a.runPu(['app=other'], udpQuery(v6(2), 5363));
    console.log(`app=other: v4 ${r4.stdout.trim()} v6 ${r6.stdout.trim()}`);
    expect(r4.stdout.trim()).toBe('none');
    expect(r6.stdout.trim()).toBe('none');
  });

  it('refuses an unprotected client, on a host with Tessera and on one without', async () => {
    const fromA = await a.exec(udpQuery(b.addr, 5353));
    const fromC = await c.exec(udpQuery(b.addr, 5353));
    const fromC6 = await c.exec(udpQuery(v6(2), 5363));
    console.log(`unprotected: from a ${fromA.stdout.trim()}, from c ${fromC.stdout.trim()}, from c v6 ${fromC6.stdout.trim()}`);
    expect(fromA.stdout.trim()).toBe('none');
    expect(fromC.stdout.trim()).toBe('none');
    expect(fromC6.stdout.trim()).toBe('none');
  });

  it('refuses a PU client calling an unprotected server (no network rule allows it)', async () => {
    const r4 = await a.runPu(['app=dns'], udpQuery(c.addr, 5354));
    const r6 = await a.runPu(['app=dns'], udpQuery(v6(3), 5364));
    console.log(`PU to unprotected server: v4 ${r4.stdout.trim()} v6 ${r6.stdout.trim()}`);
    expect(r4.stdout.trim()).toBe('none');
    expect(r6.stdout.trim()).toBe('none');
  });

  it("leaves the host's own UDP alone (no PU on either end)", async () => {
    const ab = await a.exec(udpQuery(b.addr, 5355));
    const ac = await a.exec(udpQuery(c.addr, 5354));
    console.log(`host to host: a->b ${ab.stdout.trim()}, a->c ${ac.stdout.trim()}`);
    expect(answered(ab)).toBe(true);
    expect(answered(ac)).toBe(true);
  });

  it('records UDP flows with their protocol and reason', async () => {
    const flows = await b.flows();
    const udp = flows.filter((f) => (f as { protocol?: string }).protocol === 'udp');
    console.log(`b's UDP flow records: ${udp.length} (${[...new Set(udp.map((f) => `${f.verdict}/${f.reason}`))].join(', ')})`);
    expect(udp.some((f) => f.verdict === 'accept' && f.remoteLabels?.includes('app=dns'))).toBe(true);
    expect(udp.some((f) => f.verdict === 'reject' && f.remoteLabels?.includes('app=other'))).toBe(true);
  });

  it('hostile third host: forged, truncated and oversized control packets, 3,000 flows of them, authorize nothing, state stays bounded, legit flows still work', async () => {
    // c (no Tessera) crafts control packets to b's PU port: the magic, a Hello with junk for a
    // token, truncated ones, an oversized one, a Confirm nobody asked for; then 3,000 Hellos
    // from as many source ports (each a new flow), and every query of c goes unanswered.
    const attack = [
      'import socket,os,struct',
      'M=bytes.fromhex("7e557501")',
      `dst=("${'B'}",5353)`,
      'pk=[M+bytes([1,0])+struct.pack(">H",64)+os.urandom(16)+os.urandom(64),',
      '    M+bytes([1,0,0,200])+os.urandom(20),',
      '    M+bytes([2,0]),',
      '    M+bytes([1,0])+struct.pack(">H",3000)+os.urandom(16)+os.urandom(1400),',
      '    M+bytes([3,0,0,40])+os.urandom(16)+b"q"*40]',
      'n=0',
      'for i in range(3000):',
      '  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(0)',
      '  s.sendto(pk[i%len(pk)],dst); n+=1',
      '  try:',
      '    d=s.recv(4096); print("answered"); n=-100000',
      '  except OSError: pass',
      '  s.close()',
      'print("sent",n)',
    ].join('\n').replace('"B"', `"${b.addr}"`);
    const r = await c.exec(['python3', '-c', attack], { timeoutMs: 60_000 });
    console.log(`hostile c -> b: ${r.stdout.trim().split('\n').join(', ')}`);
    expect(r.stdout).toContain('sent 3000');
    expect(r.stdout).not.toContain('answered');
    // b's exchange state is bounded and the legit client still gets through.
    // Worker statistics reach the daemon every 250 ms: read until the flood shows.
    let m = { stdout: '' };
    for (let i = 0; i < 40 && !/tessera_udp_reasons_total\{[^}]*reason="malformed"\} [1-9]/.test(m.stdout); i++) {
      await new Promise((res) => setTimeout(res, 250));
      m = await b.exec(['curl', '-s', 'http://127.0.0.1:9713/metrics']);
    }
    const state = m.stdout.split('\n').filter((l) => l.startsWith('tessera_udp_state')).map((l) => Number(l.split(' ').pop()));
    const reasons = m.stdout.split('\n').filter((l) => l.startsWith('tessera_udp_reasons_total')).map((l) => l.replace(/.*reason="([^"]+)"\} /, '$1=')).join(' ');
    console.log(`b after the flood: UDP state entries ${JSON.stringify(state)}; reasons ${reasons}`);
    expect(state.length).toBeGreaterThan(0);
    for (const n of state) expect(n).toBeLessThanOrEqual(16_384);
    expect(reasons).toMatch(/malformed=\d+/);
    const ok = await a.runPu(['app=dns'], udpQuery(b.addr, 5353));
    expect(answered(ok)).toBe(true);
  });

  it('refusals are silent by default; with --udp-refusal icmp a refused datagram gets a port unreachable, and same labels are still served', async () => {
    const quiet = await c.exec(udpProbe(b.addr, 5353));
    await b.stopDaemon();
    await b.startDaemon(['--metrics-listen', '127.0.0.1:9713', '--udp-refusal', 'icmp']);
    let same = '';
    for (let i = 0; i < 20 && same !== 'echo:'; i++) same = (await a.runPu(['app=dns'], udpQuery(b.addr, 5353))).stdout.trim();
    const loud = await c.exec(udpProbe(b.addr, 5353));
    const loud6 = await c.exec(udpProbe(v6(2), 5363));
    // The host's own closed port answers the same way: to the client, a refusal looks like no service.
    const closed = await c.exec(udpProbe(b.addr, 5999));
    console.log(`unprotected client from c: default ${quiet.stdout.trim()}, --udp-refusal icmp ${loud.stdout.trim()} (v6 ${loud6.stdout.trim()}), closed port ${closed.stdout.trim()}; same label ${same}`);
    expect(quiet.stdout.trim()).toBe('none');
    expect(loud.stdout.trim()).toBe('refused');
    expect(loud6.stdout.trim()).toBe('refused');
    expect(closed.stdout.trim()).toBe('refused');
    expect(same).toBe('echo:');
  }, 90_000);

  it('no window at a crash or restart: with the daemon killed, a PU server refuses every new UDP flow; restarted, it serves again', async () => {
    const d = b.daemon!;
    const gone = new Promise((res) => d.once('exit', res));
    d.kill('SIGKILL'); // a crash: rules stay, no queue reader
    await gone;
    const same = await a.runPu(['app=dns'], udpQuery(b.addr, 5353));
    const unprotected = await c.exec(udpQuery(b.addr, 5353));
    console.log(`b crashed: same-label PU ${same.stdout.trim()}, unprotected ${unprotected.stdout.trim()}`);
    expect(same.stdout.trim()).toBe('none');
    expect(unprotected.stdout.trim()).toBe('none');
    await b.startDaemon(['--metrics-listen', '127.0.0.1:9713']);
    let back = '';
    for (let i = 0; i < 20 && back !== 'echo:'; i++) back = (await a.runPu(['app=dns'], udpQuery(b.addr, 5353))).stdout.trim();
    const after = await c.exec(udpQuery(b.addr, 5353));
    console.log(`b restarted: same-label PU ${back}, unprotected ${after.stdout.trim()}`);
    expect(back).toBe('echo:');
    expect(after.stdout.trim()).toBe('none');
  });
});
