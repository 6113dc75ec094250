// Benchmark handler: Tessera's real datapath — the worker pool the daemon runs
// (dist/src/datapath, createDatapath) — in accept-all mode. Unlike tessera-addon.mjs this
// goes through everything the daemon's datapath does except the handshake itself: the pool's
// worker start-up, queue.worker.js's batch loop and verdict path, its stats timer and
// messages to the main thread.
// Usage: node tessera-datapath.mjs --queue N
// Prints "ready" once the pool owns the queue; on SIGTERM/SIGINT awaits stop() and exits 0.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
const i = argv.indexOf('--queue');
const queueBase = i >= 0 ? Number(argv[i + 1]) : NaN;
if (!Number.isInteger(queueBase) || queueBase < 0 || queueBase > 65535) {
  process.stderr.write('usage: node tessera-datapath.mjs --queue N\n');
  process.exit(2);
}

const built = new URL('../../dist/src/datapath/index.js', import.meta.url);
if (!existsSync(fileURLToPath(built))) {
  process.stderr.write(`tessera-datapath: ${fileURLToPath(built)} is missing: run npm run build\n`);
  process.exit(2);
}
const { createDatapath } = await import(built.href);

const datapath = createDatapath({
  queueBase,
  queues: 1,
  maxLen: 4096,
  failOpen: false,
  mode: 'accept',
  trust: { mode: 'psk', secret: new Uint8Array(randomBytes(32)) },
  hostSecret: new Uint8Array(randomBytes(32)),
  clockSkewSeconds: 30,
  handshake: {},
});
// A worker that dies mid-run is restarted by the pool; say so, the harness sees the failed connections.
datapath.on('error', (err) => process.stderr.write(`tessera-datapath: ${err.message}\n`));

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  // Do not outlive the harness's grace period if a worker is stuck.
  setTimeout(() => process.exit(1), 2500).unref();
  await datapath.stop();
  const s = datapath.stats()[0];
  process.stderr.write(`tessera-datapath: queue ${queueBase}, ${s ? s.queue.received : '?'} packets\n`);
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());

try {
  await datapath.start();
} catch (err) {
  process.stderr.write(`tessera-datapath: ${err && err.message ? err.message : err}\n`);
  process.exit(1);
}
process.stdout.write('ready\n');
