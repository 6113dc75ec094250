// Sequential request/response connections, for the loss test (test/integration/loss.test.ts).
//
//   node seq-conn.mjs serve PORT LIFE_MS
//       answers each connection's first data with "pong" and closes; prints {"ev":"listening"}
//   node seq-conn.mjs run ADDR PORT COUNT TIMEOUT_MS MAX_MS
//       COUNT connections one after the other: connect, send "ping", read "pong" to the end.
//       Each gets TIMEOUT_MS (TCP's own retransmissions work inside it); the whole run stops
//       after MAX_MS. Prints one line {"ev":"done", attempts, completed, failures: [...]}.
import net from 'node:net';

const [mode, ...args] = process.argv.slice(2);
const print = (o) => process.stdout.write(JSON.stringify(o) + '\n');

if (mode === 'serve') {
  const [port, lifeMs] = args.map(Number);
  const server = net.createServer((c) => {
    c.on('error', () => {});
    c.once('data', () => c.end('pong'));
  });
  server.listen({ port, host: '0.0.0.0' }, () => print({ ev: 'listening' }));
  setTimeout(() => process.exit(0), lifeMs); // bounded life
} else if (mode === 'run') {
  const [addr, portText, countText, timeoutText, maxText] = args;
  const [port, count, timeoutMs, maxMs] = [portText, countText, timeoutText, maxText].map(Number);
  const end = Date.now() + maxMs;
  const failures = [];
  let completed = 0;
  let attempts = 0;
  const once = () =>
    new Promise((resolve) => {
      const s = net.connect({ host: addr, port });
      let reply = '';
      let done = false;
      const finish = (error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        s.destroy();
        resolve(error);
      };
      const timer = setTimeout(() => finish('timeout'), timeoutMs);
      s.on('connect', () => s.write('ping'));
      s.on('data', (d) => (reply += d));
      s.on('end', () => finish(reply === 'pong' ? null : `reply ${JSON.stringify(reply)}`));
      s.on('error', (e) => finish(e.code ?? e.message));
    });
  while (attempts < count && Date.now() < end) {
    attempts++;
    const error = await once();
    if (error === null) completed++;
    else failures.push({ i: attempts, error, at: new Date().toISOString() });
  }
  print({ ev: 'done', attempts, completed, failures: failures.slice(0, 50) });
  process.exit(0);
} else {
  process.stderr.write('usage: seq-conn.mjs serve PORT LIFE_MS | run ADDR PORT COUNT TIMEOUT_MS MAX_MS\n');
  process.exit(2);
}
