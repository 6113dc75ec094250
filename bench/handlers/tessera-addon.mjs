// Benchmark handler: our native addon (native/index.cjs) alone accepting every packet, from a
// worker_thread as the real datapath does (one worker per queue number), without the pool
// (tessera-datapath.mjs). The difference between the two rows is what the pool adds.
// Usage: node tessera-addon.mjs --queue N
// Prints "ready" once the worker owns the queue; exits 0 on SIGTERM/SIGINT.
import { createRequire } from 'node:module';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

if (isMainThread) {
  const argv = process.argv.slice(2);
  const i = argv.indexOf('--queue');
  const queueNum = i >= 0 ? Number(argv[i + 1]) : NaN;
  if (!Number.isInteger(queueNum) || queueNum < 0 || queueNum > 65535) {
    process.stderr.write('usage: node tessera-addon.mjs --queue N\n');
    process.exit(2);
  }
  const worker = new Worker(new URL(import.meta.url), { workerData: { queueNum } });
  let stopping = false;
  worker.on('message', (m) => {
    if (m.type === 'ready') process.stdout.write('ready\n');
    else if (m.type === 'closed') {
      process.stderr.write(`tessera-addon: queue ${queueNum}, ${m.packets} packets\n`);
      process.exit(0);
    }
  });
  worker.on('error', (err) => {
    process.stderr.write(`tessera-addon: worker failed: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  });
  worker.on('exit', (code) => {
    if (!stopping) {
      process.stderr.write(`tessera-addon: worker exited (${code})\n`);
      process.exit(1);
    }
  });
  const stop = () => {
    if (stopping) return;
    stopping = true;
    worker.postMessage({ type: 'close' });
    // The worker answers "closed"; if it is stuck, do not outlive the harness's grace period.
    setTimeout(() => process.exit(1), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  const { Queue, VERDICT } = createRequire(import.meta.url)('../../native/index.cjs');
  let packets = 0;
  const q = new Queue({ queueNum: workerData.queueNum }, (count) => {
    packets += count;
    const meta = q.meta;
    for (let i = 0; i < count; i++) q.verdict(meta[i * 8], VERDICT.ACCEPT);
  });
  parentPort.on('message', (m) => {
    if (m.type !== 'close') return;
    q.close();
    parentPort.postMessage({ type: 'closed', packets });
    parentPort.close();
  });
  parentPort.postMessage({ type: 'ready' });
}
