// Port-scan micro-benchmark: what one listeningSockets() call of the daemon's scan() costs,
// /proc/net/tcp{,6} reader against the addon's sock_diag dump, with ~30 000 TIME_WAIT sockets
// in the namespace (a busy server) and with none. As root: creates the network namespace
// tessera-diag-<random> (loopback only, IPv6 off: its one address is 127.0.0.1), runs the
// measurement inside it and deletes it at the end, also on failure or Ctrl-C.
// Run: npx tsx bench/port-scan.bench.ts [--count 30000] [--calls 25] [--rounds 11]
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { loadNative } from '../src/datapath/native.js';
import { listeningSockets } from '../src/monitors/process/listeners.js';

const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const COUNT = arg('count', 30_000); // TIME_WAIT sockets to make (bound)
const GEN_MS = 40_000; // bound on making them (TIME_WAIT lasts 60 s)
const CALLS = arg('calls', 25); // calls per method per round
const ROUNDS = arg('rounds', 11);

if (process.argv.includes('--inside')) await inside();
else await outside();

async function outside(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (it creates a network namespace)');
  const ns = `tessera-diag-${randomBytes(4).toString('hex')}`;
  const sh = (...argv: string[]) => execFileSync(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] });
  let child: ReturnType<typeof spawn> | undefined;
  const cleanup = () => {
    if (child?.pid && child.exitCode === null) child.kill('SIGKILL');
    try {
      sh('ip', 'netns', 'del', ns);
    } catch {
      /* not created */
    }
  };
  process.once('SIGINT', () => (cleanup(), process.exit(130)));
  process.once('SIGTERM', () => (cleanup(), process.exit(143)));
  try {
    sh('ip', 'netns', 'add', ns);
    sh('ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1');
    sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
    // Room for COUNT client ports in TIME_WAIT, and no reuse of them for new connections.
    sh('ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_local_port_range=1024 65535', 'net.ipv4.tcp_tw_reuse=0');
    const self = fileURLToPath(import.meta.url);
    child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', self, '--inside', ...process.argv.slice(2)], {
      stdio: 'inherit',
    });
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => child!.kill('SIGKILL'), 150_000);
      child!.once('exit', (c) => (clearTimeout(t), resolve(c)));
    });
    if (code !== 0) process.exitCode = 1;
  } finally {
    cleanup();
  }
}

async function inside(): Promise<void> {
  const native = loadNative();
  const methods: Array<[string, () => Map<string, number>]> = [
    ['/proc/net/tcp{,6} reader', () => listeningSockets(null)],
    ['addon sock_diag dump', () => listeningSockets(native.listeningSockets)],
  ];
  const tw = () => Number(/tw (\d+)/.exec(readFileSync('/proc/net/sockstat', 'utf8'))?.[1] ?? NaN);

  // The server answers the client's FIN with its own: the client side ends in TIME_WAIT.
  const server = createServer((s) => s.on('error', () => {}));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  function measure(label: string): void {
    const wall: Record<string, number[]> = {};
    const cpu: Record<string, Array<[number, number]>> = {};
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 ? [...methods].reverse() : methods;
      for (const [name, fn] of order) {
        const c0 = process.cpuUsage();
        for (let i = 0; i < CALLS; i++) {
          const t0 = process.hrtime.bigint();
          fn();
          (wall[name] ??= []).push(Number(process.hrtime.bigint() - t0) / 1e3);
        }
        const c = process.cpuUsage(c0);
        (cpu[name] ??= []).push([c.user / CALLS, c.system / CALLS]);
      }
    }
    const [a, b] = methods.map(([, fn]) => fn());
    const same = JSON.stringify([...a!].sort()) === JSON.stringify([...b!].sort());
    console.log(`\n${label}: TIME_WAIT ${tw()}, ${a!.size} listener(s), same result: ${same}, ${ROUNDS} rounds x ${CALLS} calls`);
    console.log(`${'method'.padEnd(28)} ${'wall p50 µs'.padStart(12)} ${'p90 µs'.padStart(9)} ${'CPU µs/call (user+sys)'.padStart(24)}`);
    for (const [name] of methods) {
      const w = wall[name]!.sort((x, y) => x - y);
      const byTotal = cpu[name]!.sort((x, y) => x[0] + x[1] - (y[0] + y[1]));
      const [u, s] = byTotal[Math.floor(byTotal.length / 2)]!;
      const fmt = (v: number) => v.toFixed(1);
      console.log(
        `${name.padEnd(28)} ${fmt(w[Math.floor(w.length / 2)]!).padStart(12)} ${fmt(w[Math.floor(w.length * 0.9)]!).padStart(9)} ${`${fmt(u + s)} (${fmt(u)}+${fmt(s)})`.padStart(24)}`,
      );
    }
    if (!same) process.exitCode = 1;
  }

  measure('empty namespace');

  const t0 = Date.now();
  let started = 0;
  let failed = 0;
  await new Promise<void>((resolve) => {
    let inFlight = 0;
    const next = (): void => {
      while (inFlight < 64 && started < COUNT && Date.now() - t0 < GEN_MS) {
        started++;
        inFlight++;
        const c = connect(port, '127.0.0.1', () => c.end());
        c.on('error', () => failed++);
        c.on('close', () => {
          inFlight--;
          next();
        });
      }
      if (inFlight === 0) resolve();
    };
    next();
  });
  console.log(`\nmade ${started - failed} connections (${failed} failed) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  measure(`with TIME_WAIT`);
  server.close();
}
