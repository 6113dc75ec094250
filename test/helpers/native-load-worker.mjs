// Worker for test/unit/native-load.test.ts: loads the addon in this thread, checks its
// exports, and makes sure argument errors are TypeErrors, without binding any queue.
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';

const require = createRequire(import.meta.url);
const native = require('../../native/index.cjs');

const errors = [];
for (const [options, onBatch] of [
  [{}, () => {}],
  [{ queueNum: 70000 }, () => {}],
  [{ queueNum: 1.5 }, () => {}],
  [{ queueNum: 1, batchSize: 0 }, () => {}],
  [{ queueNum: 1, failOpen: 'yes' }, () => {}],
  [{ queueNum: 1 }, 'not a function'],
]) {
  try {
    new native.Queue(options, onBatch);
    errors.push({ name: 'none' });
  } catch (err) {
    errors.push({ name: err.name, code: err.code, message: err.message });
  }
}

// Hold every worker here until all have loaded, so the loads really overlap.
if (workerData?.barrier) {
  const flag = new Int32Array(workerData.barrier);
  Atomics.add(flag, 0, 1);
  Atomics.notify(flag, 0);
  const deadline = Date.now() + 5000;
  while (Atomics.load(flag, 0) < workerData.parties && Date.now() < deadline) Atomics.wait(flag, 0, Atomics.load(flag, 0), 100);
}

parentPort.postMessage({
  exports: Object.keys(native).sort(),
  verdict: { ...native.VERDICT },
  metaFields: native.META_FIELDS,
  listeningWords: native.listeningSockets().length,
  errors,
});
