// One worker of the shared strike register test (shared-register.test.ts): strikes the same
// keys as its sibling, after a barrier, and reports what it was answered. Runs the built
// register (dist/): worker threads cannot load TypeScript.
import { parentPort, workerData } from 'node:worker_threads';

const { buffer, barrier, holder, keys, registerUrl } = workerData;
const { StrikeRegister } = await import(registerUrl);
const register = new StrikeRegister(1, 10_000, { buffer, holder });
const b = new Int32Array(barrier);
Atomics.add(b, 0, 1);
while (Atomics.load(b, 0) < 2) Atomics.wait(b, 0, Atomics.load(b, 0), 10);
const answers = { new: 0, same: 0, seen: 0, full: 0 };
const fresh = [];
const mac = new Uint8Array(16);
const view = new DataView(mac.buffer);
for (let i = 0; i < keys; i++) {
  view.setUint32(0, Math.imul(i, 0x9e3779b1) >>> 0);
  view.setUint32(4, i);
  const a = register.strike(mac, holder, 1_000);
  answers[a]++;
  if (a === 'new') fresh.push(i);
}
parentPort.postMessage({ answers, fresh });
