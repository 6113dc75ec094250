// Default deny on the real kernel path (issue 10, docs/security-model.md "The invariant"):
// attacks that today's rules let through because no rule matched them. b runs a PU server
// app=web on :8080; a runs PU clients; c is a host without Tessera. Every probe counts
// outcomes (pages fetched, bytes received), never durations.
//
// - DNAT in front of a PU (firewalld forward-port, kube-proxy NodePort): judged after DNAT.
// - A process outside any PU that sets SO_MARK to a PU's index: cannot borrow that identity.
// - A PU client's TCP Fast Open SYN carrying data to a peer its policy refuses: no byte leaves.
// - The host's own traffic (no PU on either end) is untouched.

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createCluster, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, killAndWait, uniquePrefix } from '../../scripts/lib/netns.js';
import { insertRule } from '../helpers/attack.js';
import { markForPuIndex } from '../../src/marks.js';
import { skipBecause } from '../helpers/skip.js';

skipBecause(!isRoot, 'default deny (needs root)', 'integration tests need root: run npm test as root');

describe.runIf(isRoot)('default deny on the real kernel path', () => {
  let cluster: Cluster;
  let a: TesseraHost, b: TesseraHost, c: TesseraHost;
  let www: string;
  const PAGE = 'hello from web\n';
  const children: ChildProcess[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  const wget = (addr: string, port: number) => ['timeout', '3', 'busybox', 'wget', '-q', '-O', '-', `http://${addr}:${port}/`];

  /** Pages fetched by `n` sequential attempts of `argv` on host h. */
  async function fetched(h: TesseraHost, argv: string[], n: number): Promise<number> {
    let ok = 0;
    for (let i = 0; i < n; i++) if ((await h.exec(argv, { timeoutMs: 10_000 })).stdout === PAGE) ok++;
    return ok;
  }

  beforeAll(async () => {
    cluster = await createCluster({ prefix: uniquePrefix('dd'), hosts: ['a', 'b', 'c'], subnet: 91, trust: 'psk', start: false });
    [a, b, c] = [cluster.host('a'), cluster.host('b'), cluster.host('c')];
    await Promise.all([a.startDaemon(), b.startDaemon()]); // c has no daemon: a host without Tessera
    www = mkdtempSync(join(tmpdir(), 'tessera-dd-www-'));
    writeFileSync(join(www, 'index.html'), PAGE);
    children.push(b.spawnPu(['app=web'], ['busybox', 'httpd', '-f', '-p', '8080', '-h', www]));
    await b.waitForListener(8080);
  }, 120_000);

  afterAll(async () => {
    for (const f of cleanups.reverse()) await f().catch(() => undefined);
    for (const ch of children) await killAndWait(ch).catch(() => undefined);
    await cluster?.destroy();
    if (www) rmSync(www, { recursive: true, force: true });
  });

  it('judges ingress after DNAT: a REDIRECT in front of a PU port does not let an unprotected client in', async () => {
    cleanups.push(await insertRule(b, 'nat', 'PREROUTING', ['-p', 'tcp', '--dport', '9090', '-j', 'REDIRECT', '--to-ports', '8080']));
    const unprotected = await fetched(c, wget(b.addr, 9090), 5);
    const sameLabel = (await a.runPu(['app=web'], wget(b.addr, 9090))).stdout;
    console.log(`through REDIRECT 9090 -> 8080: unprotected client fetched ${unprotected}/5; same-label PU: ${sameLabel === PAGE ? 'page' : 'nothing'}`);
    expect(unprotected).toBe(0);
    expect(sameLabel).toBe(PAGE);
  });

  it("a process outside any PU cannot borrow a PU's index with SO_MARK", async () => {
    // A PU app=web on a holds an index; the forger outside any PU sets that index as its socket
    // mark (CAP_NET_ADMIN; Docker grants CAP_NET_RAW, which suffices on recent kernels).
    const holder = a.spawnPu(['app=web'], ['sleep', '60']);
    children.push(holder);
    const st = await (async () => {
      for (let i = 0; i < 50; i++) {
        const s = await a.status();
        const pu = s.pus.find((p) => p.labels.includes('app=web'));
        if (pu) return pu;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('the holder PU never appeared');
    })();
    const index = Number(BigInt(st.classid) & 0xffffn);
    const forge = [
      'python3', '-c',
      [
        'import socket,sys',
        's=socket.socket(); s.settimeout(3)',
        `s.setsockopt(socket.SOL_SOCKET, 36, ${markForPuIndex(index)})`, // SO_MARK
        `s.connect(("${b.addr}", 8080)); s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")`,
        'd=b""',
        'while True:',
        '  x=s.recv(4096)',
        '  if not x: break',
        '  d+=x',
        'sys.stdout.write(d.decode(errors="replace"))',
      ].join('\n'),
    ];
    let borrowed = 0;
    for (let i = 0; i < 3; i++) if ((await a.exec(forge, { timeoutMs: 10_000 })).stdout.includes(PAGE.trim())) borrowed++;
    console.log(`SO_MARK ${markForPuIndex(index).toString(16)} (PU index ${index}) from outside any PU: ${borrowed}/3 pages`);
    expect(borrowed).toBe(0);
    // The PU itself still gets in.
    expect((await a.runPu(['app=web'], wget(b.addr, 8080))).stdout).toBe(PAGE);
  });

  it("a PU client's TCP Fast Open SYN does not carry its data to a peer the policy refuses", async () => {
    // c listens without Tessera; a's PU may not talk to it (default policy). With
    // tcp_fastopen=5 the client puts its first bytes into the SYN without a cookie.
    const SECRET = 'fastopen-secret';
    const listener = c.spawn(['sh', '-c', 'timeout 20 busybox nc -l -p 7070 > /tmp/tessera-dd-tfo.$$; cat /tmp/tessera-dd-tfo.$$; rm -f /tmp/tessera-dd-tfo.$$']);
    children.push(listener);
    let got = '';
    listener.stdout?.on('data', (d: Buffer) => (got += d.toString()));
    const sysctl = await a.exec(['sysctl', '-qw', 'net.ipv4.tcp_fastopen=5']);
    expect(sysctl.code, sysctl.stderr).toBe(0);
    await new Promise((r) => setTimeout(r, 300));
    const tfo = [
      'python3', '-c',
      [
        'import socket',
        's=socket.socket(); s.settimeout(3)',
        'try:',
        `  s.sendto(b"${SECRET}", socket.MSG_FASTOPEN, ("${c.addr}", 7070))`,
        '  print("sent")',
        'except Exception as e:',
        '  print("error", e)',
      ].join('\n'),
    ];
    const r = await a.runPu(['app=web'], tfo);
    await new Promise((res) => setTimeout(res, 1500));
    await killAndWait(listener);
    console.log(`TFO client: ${r.stdout.trim()}; c received ${JSON.stringify(got)}`);
    expect(got).not.toContain(SECRET);
  });

  it("tells a PU's socket from another process's on the same port number (0.0.0.0:7443 PU, [::]:7443 v6only not)", async () => {
    const serve = (addr: string, family: 'AF_INET' | 'AF_INET6', reply: string) =>
      [
        'import socket',
        `s=socket.socket(socket.${family})`,
        's.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
        ...(family === 'AF_INET6' ? ['s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)'] : []),
        `s.bind(("${addr}", 7443)); s.listen(16)`,
        'while True:',
        '  c,_=s.accept()',
        `  c.sendall(b"${reply}\\n"); c.close()`,
      ].join('\n');
    const get = (host: string) => ['python3', '-c', `import socket\ns=socket.create_connection(("${host}", 7443), timeout=3)\nprint(s.recv(64).decode().strip())`];
    children.push(b.spawnPu(['app=web'], ['python3', '-c', serve('0.0.0.0', 'AF_INET', 'PU')]));
    children.push(b.spawn(['python3', '-c', serve('::', 'AF_INET6', 'HOST')]));
    await b.waitForListener(7443);
    const hostToHost = (await b.exec(get('::1'))).stdout.trim();
    const puToHost = (await b.runPu(['app=web'], get('::1'))).stdout.trim();
    const puToPu = (await b.runPu(['app=web'], get('127.0.0.1'))).stdout.trim();
    console.log(`shared port 7443: host client -> [::]:7443 got ${JSON.stringify(hostToHost)}; app=web PU -> [::]:7443 got ${JSON.stringify(puToHost)}; app=web PU -> 0.0.0.0:7443 got ${JSON.stringify(puToPu)}`);
    expect(hostToHost).toBe('HOST'); // the host's own connection is not judged as the PU's
    expect(puToHost).not.toBe('HOST'); // the PU's identity is not lent to another process's socket
    expect(puToPu).toBe('PU');
  });

  it("a process outside any PU that reuses a PU client's 4-tuple (the server's socket in TIME_WAIT) is judged, not let in", async () => {
    // The PU's connection ends with the server closing first: b keeps the 4-tuple in
    // TIME_WAIT, where the socket lookup names no owner, and TCP hands a new SYN on it to the
    // listener. The same source port from outside any PU must be refused like any other.
    // The client reads to the end before it closes, so the server is the first to close.
    const req = [
      'python3', '-c',
      [
        'import socket, sys',
        's = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.settimeout(3)',
        's.bind(("0.0.0.0", 45123))',
        'try:',
        `  s.connect(("${b.addr}", 8080)); print("connected", flush=True); s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")`,
        '  d = b""',
        '  while True:',
        '    x = s.recv(4096)',
        '    if not x: break',
        '    d += x',
        '  sys.stdout.write(d.decode(errors="replace"))',
        'except Exception as e:',
        '  print("error", e)',
      ].join('\n'),
    ];
    const pu = await a.runPu(['app=web'], req);
    expect(pu.stdout).toContain(PAGE.trim());
    const tw = (await b.exec(['ss', '-tanH', 'state', 'time-wait'])).stdout.split('\n').filter((l) => l.includes(':8080') && l.includes(':45123')).join('\n');
    if (!tw) console.log('ss on b:', (await b.exec(['ss', '-tanH'])).stdout, 'on a:', (await a.exec(['ss', '-tanH'])).stdout);
    expect(tw, 'b holds the 4-tuple in TIME_WAIT').not.toBe('');
    const reuse = await a.exec(req, { timeoutMs: 10_000 });
    console.log(`4-tuple reused from outside any PU while b holds it in TIME_WAIT: ${JSON.stringify(reuse.stdout.trim())}`);
    expect(reuse.stdout).not.toContain('connected');
    expect(reuse.stdout).not.toContain(PAGE.trim());
  });

  it("leaves the host's own traffic alone: processes outside PUs reach each other both ways", async () => {
    const server = b.spawn(['busybox', 'httpd', '-f', '-p', '7000', '-h', www]);
    const server2 = c.spawn(['busybox', 'httpd', '-f', '-p', '7001', '-h', www]);
    children.push(server, server2);
    await new Promise((r) => setTimeout(r, 300));
    expect(await fetched(c, wget(b.addr, 7000), 3)).toBe(3);
    expect(await fetched(b, wget(c.addr, 7001), 3)).toBe(3);
    expect(await fetched(a, wget(b.addr, 7000), 3)).toBe(3);
  });
});
