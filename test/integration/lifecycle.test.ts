// The daemon's lifecycle on the real kernel path (docs/architecture.md, "Lifecycle"): a stop
// keeps every rule (fail-closed) unless removal is asked for (--remove-rules-on-stop, or
// `tessera cleanup` once stopped); a crash leaves the rules and fails closed; a restart
// re-adopts running PUs; key files others can read stop the start before anything is
// installed; the CLI refuses to run a command unprotected when no daemon answers, or when the
// daemon could not install the PU's rules. (test/integration/restart.test.ts probes the
// restarts themselves from an unprotected client.)
//
// Hosts a and b run daemons (PSK mode) throughout; x's daemon is stopped by the first test, and
// x then serves as the daemon-less namespace for the start failures. Order matters: the crash
// test leaves b without a daemon, so it runs after the restart test.

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, copyFileSync, chmodSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createCluster, waitFor, TESSERA, type Cluster, type TesseraHost } from '../../scripts/lib/cluster.js';
import { isRoot, killAndWait, run, uniquePrefix } from '../../scripts/lib/netns.js';
import { nodePidOf, saveRules, tesseraLines } from '../helpers/attack.js';
import { skipBecause } from '../helpers/skip.js';

skipBecause(!isRoot, 'daemon lifecycle (needs root)', 'integration tests need root: run npm test as root');

describe.runIf(isRoot)('daemon lifecycle on the real kernel path', () => {
  let cluster: Cluster;
  let a: TesseraHost, b: TesseraHost, x: TesseraHost;
  let www: string;
  let keys: string;
  const servers: ChildProcess[] = [];
  const PAGE = 'hello from web\n';
  const node = process.execPath;
  const wget = (addr: string, port: number, seconds = 5) => ['timeout', String(seconds), 'busybox', 'wget', '-q', '-O', '-', `http://${addr}:${port}/`];

  async function ensureDaemon(h: TesseraHost): Promise<void> {
    if (!h.daemon) await h.startDaemon();
  }

  async function startServer(port: number, label: string): Promise<ChildProcess> {
    const child = b.spawnPu([label], ['busybox', 'httpd', '-f', '-p', String(port), '-h', www]);
    servers.push(child);
    let output = '';
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    await b.waitForListener(port).catch((err: unknown) => {
      const log = readFileSync(b.logFile, 'utf8').split('\n').slice(-15).join('\n');
      throw new Error(`${String(err)}; server exit ${child.exitCode}, output: ${output}\ndaemon log (tail):\n${log}`);
    });
    return child;
  }

  async function expectNoTesseraRules(h: TesseraHost): Promise<void> {
    const { v4, v6 } = await saveRules(h);
    expect(tesseraLines(v4), `iptables-save in ${h.name}`).toEqual([]);
    expect(tesseraLines(v6), `ip6tables-save in ${h.name}`).toEqual([]);
  }

  beforeAll(async () => {
    cluster = await createCluster({ prefix: uniquePrefix('lc'), hosts: ['a', 'b', 'x'], subnet: 61, trust: 'psk', start: false });
    [a, b, x] = [cluster.host('a'), cluster.host('b'), cluster.host('x')];
    await Promise.all([a.startDaemon(), b.startDaemon(), x.startDaemon()]);
    www = mkdtempSync(join(tmpdir(), 'tessera-lc-www-'));
    writeFileSync(join(www, 'index.html'), PAGE);
    keys = mkdtempSync(join(tmpdir(), 'tessera-lc-keys-'));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(servers.map((s) => killAndWait(s, 2000)));
    await cluster?.destroy();
    for (const dir of [www, keys]) if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('SIGTERM keeps every rule (fail-closed); removal is explicit: tessera cleanup, or --remove-rules-on-stop', async () => {
    // Breaks if a plain stop removes rules again (a restart or an upgrade would open a
    // window), or if either explicit removal leaves a TESSERA line in either family.
    await ensureDaemon(x);
    const before = await saveRules(x);
    // Both families are installed, so the emptiness below is not vacuous.
    expect(tesseraLines(before.v4).length).toBeGreaterThan(0);
    expect(tesseraLines(before.v6).length).toBeGreaterThan(0);
    expect(await x.stopDaemon()).toBe(0);
    const kept = await saveRules(x);
    expect(tesseraLines(kept.v4)).toEqual(tesseraLines(before.v4));
    expect(tesseraLines(kept.v6)).toEqual(tesseraLines(before.v6));
    const clean = await x.exec([node, TESSERA, 'cleanup', '--cgroup-root', x.cgroupRoot], { timeoutMs: 30_000 });
    expect(clean.code, clean.stderr).toBe(0);
    await expectNoTesseraRules(x);

    await x.startDaemon(['--remove-rules-on-stop']);
    expect(tesseraLines((await saveRules(x)).v4).length).toBeGreaterThan(0);
    expect(await x.stopDaemon()).toBe(0);
    await expectNoTesseraRules(x);
  });

  it('tessera run against a stopped daemon exits 1, names --socket/TESSERA_SOCKET and does not run the command', async () => {
    // Breaks if run started the command unprotected (the marker file would exist), or the
    // error stopped pointing at how to reach the daemon.
    await x.stopDaemon();
    const marker = join(keys, 'ran-unprotected');
    const r = await x.runPu(['app=web'], ['touch', marker], 15_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--socket');
    expect(r.stderr).toContain('TESSERA_SOCKET');
    expect(r.stderr).toContain(x.socket);
    expect(existsSync(marker)).toBe(false);
  });

  it('restart while a server PU runs: the PU is re-adopted with its labels and port, and still protected', async () => {
    // Breaks if a restart forgets running PUs (no PU listed, or a new id; the unprotected
    // client would get the page because no rule protects port 8081 any more).
    await Promise.all([ensureDaemon(a), ensureDaemon(b)]);
    await startServer(8081, 'app=web');
    const before = (await b.status()).pus.find((p) => p.ports.includes(8081));
    expect(before?.labels).toContain('app=web');

    expect(await b.stopDaemon()).toBe(0);
    await b.startDaemon();
    const after = await waitFor('the re-adopted PU with its port', async () => (await b.status()).pus.find((p) => p.ports.includes(8081)));
    expect(after.id).toBe(before!.id);
    expect(after.labels).toContain('app=web');
    expect(after.pids.length).toBeGreaterThan(0);

    const plain = await a.exec(wget(b.addr, 8081), { timeoutMs: 15_000 });
    expect(plain.stdout).not.toContain('hello');
    expect(plain.stderr).toMatch(/refused/i);
    const labelled = await a.runPu(['app=web'], wget(b.addr, 8081));
    expect(labelled.stdout).toBe(PAGE);
  });

  it('a killed daemon leaves its rules and fails closed; tessera cleanup removes them', async () => {
    // Breaks if a dead daemon's queue rules let handshakes through (fail-open without
    // --fail-open: the wgets would get the page), or if cleanup leaves a TESSERA line.
    await Promise.all([ensureDaemon(a), ensureDaemon(b)]);
    const server = await startServer(8080, 'app=web');
    const control = await a.runPu(['app=web'], wget(b.addr, 8080));
    expect(control.stdout).toBe(PAGE);

    const wrapper = b.daemon!;
    const pid = nodePidOf(wrapper);
    const gone = new Promise<void>((res) => (wrapper.exitCode !== null || wrapper.signalCode !== null ? res() : wrapper.once('exit', () => res())));
    process.kill(pid, 'SIGKILL');
    await gone;
    // The harness's stopDaemon() waits for an 'exit' event that has already fired.
    b.daemon = null;

    const left = await saveRules(b);
    expect(tesseraLines(left.v4).length).toBeGreaterThan(0);
    expect(tesseraLines(left.v6).length).toBeGreaterThan(0);

    // No queue reader: the handshake packets are dropped, so both clients time out (a reset
    // would say "refused" at once; the page would say fail-open).
    // timeout(1) exits 124 only when it had to end wget: still waiting, i.e. dropped.
    const [labelled, plain] = await Promise.all([a.runPu(['app=web'], wget(b.addr, 8080, 3)), a.exec(wget(b.addr, 8080, 3), { timeoutMs: 15_000 })]);
    for (const [who, r] of [['labelled', labelled], ['plain', plain]] as const) {
      expect(r.stdout, who).not.toContain('hello');
      expect(r.stderr, who).not.toMatch(/refused/i);
      expect(r.code, `${who}: ${r.stderr}`).toBe(124);
    }

    const clean = await b.exec([node, TESSERA, 'cleanup', '--cgroup-root', b.cgroupRoot], { timeoutMs: 30_000 });
    expect(clean.code, clean.stderr).toBe(0);
    await expectNoTesseraRules(b);
    // The server survived cleanup (moved out of its cgroup, not killed) and is reachable
    // again without rules: nothing of the dead daemon is left in the path.
    expect(server.exitCode).toBeNull();
    const open = await a.exec(wget(b.addr, 8080), { timeoutMs: 15_000 });
    expect(open.stdout).toBe(PAGE);
    await killAndWait(server, 2000);
  });

  it('refuses to start with a key file others can read: exit 1, "chmod 600", and no rules', async () => {
    // Breaks if the mode check goes (the daemon would run: no exit within the timeout, no
    // message) or moves after rule installation (TESSERA lines would be left behind).
    await x.stopDaemon();
    const clean = await x.exec([node, TESSERA, 'cleanup', '--cgroup-root', x.cgroupRoot], { timeoutMs: 30_000 });
    expect(clean.code, clean.stderr).toBe(0);
    const psk = join(keys, 'psk.json');
    copyFileSync(join(cluster.dir, 'psk.json'), psk);
    chmodSync(psk, 0o644);
    const ca = join(keys, 'ca');
    for (const argv of [
      [node, TESSERA, 'ca', 'init', '--out', ca, '--name', 'lc-ca'],
      [node, TESSERA, 'ca', 'issue', '--ca', join(ca, 'ca.json'), '--host', 'host-x', '--out', ca],
    ]) {
      const r = await run(argv, { timeoutMs: 30_000 });
      expect(r.code, r.stderr).toBe(0);
    }
    const hostKey = join(ca, 'host-x.key.json');
    chmodSync(hostKey, 0o644);
    const common = ['--socket', x.socket, '--state-dir', join(keys, 'state-x'), '--cgroup-root', x.cgroupRoot];
    for (const [file, trust] of [
      [psk, ['--psk-file', psk, '--host-id', 'host-x']],
      [hostKey, ['--ca', join(ca, 'ca.pub.json'), '--cert', join(ca, 'host-x.cert'), '--key', hostKey]],
    ] as const) {
      // The exec's timeout is the safety bound: a daemon that started would be killed by it.
      const r = await x.exec([node, TESSERA, 'daemon', ...trust, ...common], { timeoutMs: 20_000 });
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).not.toContain('killed by');
      expect(r.stderr).toContain('chmod 600');
      expect(r.stderr).toContain(file);
      await expectNoTesseraRules(x);
      expect(existsSync(x.socket)).toBe(false);
    }
  });

  it('a failed rule transaction refuses the PU: tessera run exits 1 without running its command, and status says so', async () => {
    // Breaks if createPu answers 201 after a failed transaction (the command would run
    // unprotected: the marker file would exist), or if a failing reconcile is only a log line.
    await x.stopDaemon();
    // An iptables-restore that fails while FAIL exists, found first on the daemon's PATH.
    const bin = join(keys, 'bin');
    const fail = join(keys, 'FAIL');
    const real = (await run(['sh', '-c', 'command -v iptables-restore'])).stdout.trim();
    expect(real).not.toBe('');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'iptables-restore'), `#!/bin/sh\nif [ -e ${fail} ]; then echo "iptables-restore: injected failure" >&2; exit 1; fi\nexec ${real} "$@"\n`, { mode: 0o755 });
    await x.startDaemon([], { PATH: `${bin}:${process.env.PATH ?? ''}` });
    expect((await x.status()).rules.ok).toBe(true);

    // A running PU starts listening while transactions fail: status says the rules are failing.
    const late = x.spawnPu(['app=late'], ['sh', '-c', `sleep 1; exec busybox httpd -f -p 8097 -h ${www}`]);
    servers.push(late);
    await waitFor('the PU of the late listener', async () => (await x.status()).pus.some((p) => p.labels.includes('app=late')));
    writeFileSync(fail, '');
    const failing = await waitFor('status rules.ok false', async () => {
      const r = (await x.status()).rules;
      return r.ok ? null : r;
    });
    expect(failing.error).toContain('injected failure');
    expect(Date.parse(failing.since)).not.toBeNaN();

    // A new PU while they fail is refused, and its command never runs.
    const marker = join(keys, 'ran-without-rules');
    const refused = await x.runPu(['app=web'], ['touch', marker]);
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr).toContain('TESSERA_ERR_RULES');
    expect(existsSync(marker)).toBe(false);
    expect((await x.status()).pus.filter((p) => p.labels.includes('app=web'))).toEqual([]);

    // Repaired: the next transaction (here the new PU's) succeeds and status says since when.
    rmSync(fail);
    const ok = await x.runPu(['app=web'], ['touch', marker]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(existsSync(marker)).toBe(true);
    const healed = (await x.status()).rules;
    expect(healed.ok).toBe(true);
    expect(healed.lastFailure?.error).toContain('injected failure');
    await killAndWait(late, 2000);
    await x.stopDaemon();
  });

  it('an IPv6 stack that ip6tables cannot manage is a failure, not a warning: no PU is created that IPv6 would leave open', async () => {
    // Before: the reconciler skipped IPv6 with one warning line, status said nothing, and PUs
    // were created — reachable over IPv6 without Tessera.
    const bin = join(keys, 'bin6');
    const real = (await run(['sh', '-c', 'command -v ip6tables-restore'])).stdout.trim();
    expect(real).not.toBe('');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'ip6tables-restore'), "#!/bin/sh\necho \"ip6tables-restore v1.8.9 (nf_tables): can't initialize ip6tables table \\`mangle': Table does not exist (do you need to insmod?)\" >&2\nexit 1\n", { mode: 0o755 });
    await x.startDaemon([], { PATH: `${bin}:${process.env.PATH ?? ''}` });
    const failing = await waitFor('status rules.ok false', async () => {
      const r = (await x.status()).rules;
      return r.ok ? null : r;
    });
    expect(failing.error).toContain('reachable over IPv6');
    const marker = join(keys, 'ran-without-ipv6-rules');
    const refused = await x.runPu(['app=web'], ['touch', marker]);
    expect(refused.code, refused.stderr).toBe(1);
    expect(existsSync(marker)).toBe(false);
    await x.stopDaemon();
  });
});
