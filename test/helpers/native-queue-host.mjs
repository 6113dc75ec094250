// Test host process, run inside a network namespace (`ip netns exec NS node ...`), because
// an NFQUEUE belongs to the namespace of the socket that binds it. Starts queue workers on
// request and relays their messages. Protocol: JSON lines.
//   stdin:  { cmd: 'start', wid, queueNum, options?, plan?, throwOnBatch? }
//           { cmd: 'send', wid, msg }      forwards msg to the worker
//           { cmd: 'terminate', wid }      worker.terminate() (exercises the env cleanup hook)
//           { cmd: 'exit' }
//   stdout: { wid, ev: ..., ... } for every worker message, plus 'exit' and 'error' events.
import { Worker } from 'node:worker_threads';
import { createInterface } from 'node:readline';

const workers = new Map();
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const workerUrl = new URL('./native-queue-worker.mjs', import.meta.url);

// Bounded life: a test that forgets us must not leave a queue consumer behind.
const lifetime = setTimeout(() => process.exit(3), Number(process.env.NQ_HOST_MAX_MS ?? 120_000));
lifetime.unref();

createInterface({ input: process.stdin }).on('line', (line) => {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    return out({ ev: 'bad-input', line });
  }
  if (msg.cmd === 'start') {
    const w = new Worker(workerUrl, {
      workerData: { queueNum: msg.queueNum, options: msg.options, plan: msg.plan, throwOnBatch: msg.throwOnBatch },
    });
    workers.set(msg.wid, w);
    w.on('message', (m) => out({ wid: msg.wid, ...m }));
    w.on('error', (e) => out({ wid: msg.wid, ev: 'worker-error', message: e.message }));
    w.on('exit', (code) => {
      workers.delete(msg.wid);
      out({ wid: msg.wid, ev: 'exit', code });
    });
  } else if (msg.cmd === 'send') {
    workers.get(msg.wid)?.postMessage(msg.msg);
  } else if (msg.cmd === 'terminate') {
    void workers.get(msg.wid)?.terminate();
  } else if (msg.cmd === 'exit') {
    for (const w of workers.values()) void w.terminate();
    setTimeout(() => process.exit(0), 200).unref();
  }
});
process.stdin.on('end', () => {
  for (const w of workers.values()) void w.terminate();
});
out({ ev: 'host-ready', pid: process.pid });
