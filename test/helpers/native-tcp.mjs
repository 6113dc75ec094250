// Tiny TCP peer for the native queue tests, run inside a namespace.
//   node native-tcp.mjs serve PORT [PORT...]        answers "pong" and closes; prints "listening"
//   node native-tcp.mjs connect HOST PORT TIMEOUT_MS prints one JSON line { ok, ms, reply | error }
import net from 'node:net';

const [mode, ...args] = process.argv.slice(2);
if (mode === 'serve') {
  const servers = args.map((p) => {
    const s = net.createServer((c) => {
      c.on('error', () => {});
      c.end('pong');
    });
    return new Promise((resolve) => s.listen({ port: Number(p), host: '::', ipv6Only: false }, resolve));
  });
  await Promise.all(servers);
  process.stdout.write('listening\n');
  setTimeout(() => process.exit(0), 120_000).unref(); // bounded life
  setInterval(() => {}, 60_000);
} else if (mode === 'connect') {
  const [host, port, timeoutMs] = args;
  const t0 = process.hrtime.bigint();
  const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
  const sock = net.connect({ host, port: Number(port) });
  let reply = '';
  const timer = setTimeout(() => {
    process.stdout.write(JSON.stringify({ ok: false, error: 'timeout', ms: ms() }) + '\n');
    sock.destroy();
    process.exit(0);
  }, Number(timeoutMs));
  sock.on('data', (d) => (reply += d));
  sock.on('end', () => {
    clearTimeout(timer);
    process.stdout.write(JSON.stringify({ ok: true, ms: ms(), reply }) + '\n');
    process.exit(0);
  });
  sock.on('error', (e) => {
    clearTimeout(timer);
    process.stdout.write(JSON.stringify({ ok: false, error: e.code ?? e.message, ms: ms() }) + '\n');
    process.exit(0);
  });
} else {
  process.stderr.write('usage: native-tcp.mjs serve PORT... | connect HOST PORT TIMEOUT_MS\n');
  process.exit(2);
}
