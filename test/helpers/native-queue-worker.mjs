// Test worker: owns one NFQUEUE through the native addon and applies a verdict plan.
// workerData: { queueNum, options, plan: { actions: Action[], default: Action }, throwOnBatch }
//   Action: { verdict: 'ACCEPT' | 'DROP' | 'REPEAT' | 'NONE', mark?: number, setTos?: number }
//   (setTos rewrites the IPv4 TOS byte, fixes the header checksum and sends the payload back)
// Posts { ev: 'ready' } | { ev: 'error', code, message } | { ev: 'packet', ... } to the parent.
// Messages in: { cmd: 'close' } closes twice and reports stats; { cmd: 'rebind' } binds the
// same queue number again after close and reports whether that worked.
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';

const require = createRequire(import.meta.url);
const { Queue, VERDICT, META_FIELDS } = require('../../native/index.cjs');

const { queueNum, options = {}, plan = {}, throwOnBatch = false } = workerData;
const actions = plan.actions ?? [];
const fallback = plan.default ?? { verdict: 'ACCEPT' };
let seen = 0;

function ipv4Checksum(hdr) {
  let sum = 0;
  for (let i = 0; i < hdr.length; i += 2) sum += (hdr[i] << 8) | hdr[i + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function apply(q, id, bytes, action) {
  const mark = action.mark ?? -1;
  if (action.verdict === 'NONE') return;
  if (action.setTos !== undefined) {
    // Edited in place inside the shared receive buffer: verdict() copies it into the
    // verdict message, so no other copy is needed.
    bytes[1] = action.setTos;
    const ihl = (bytes[0] & 0x0f) * 4;
    bytes[10] = 0;
    bytes[11] = 0;
    const sum = ipv4Checksum(bytes.subarray(0, ihl));
    bytes[10] = sum >>> 8;
    bytes[11] = sum & 0xff;
    q.verdict(id, VERDICT[action.verdict], mark, bytes, bytes.length);
    return;
  }
  q.verdict(id, VERDICT[action.verdict], mark);
}

function onBatch(count) {
  for (let i = 0; i < count; i++) {
    const m = q.meta.subarray(i * META_FIELDS, (i + 1) * META_FIELDS);
    const [id, off, len, mark, hook, indev, outdev, hwProtocol] = m;
    const bytes = q.data.subarray(off, off + len);
    const action = actions[seen] ?? fallback;
    seen++;
    parentPort.postMessage({
      ev: 'packet', id, length: len, mark, hook, indev, outdev, hwProtocol, batchCount: count,
      head: Buffer.from(bytes.subarray(0, 64)).toString('hex'),
    });
    apply(q, id, bytes, action);
  }
  if (throwOnBatch) throw new Error('onBatch failure on purpose');
}

process.on('uncaughtException', (err) => {
  parentPort.postMessage({ ev: 'uncaught', message: String(err && err.message) });
});

let q;
try {
  q = new Queue({ queueNum, ...options }, onBatch);
  parentPort.postMessage({ ev: 'ready', metaLength: q.meta.length, dataLength: q.data.length });
} catch (err) {
  parentPort.postMessage({ ev: 'error', code: err.code, message: err.message, errno: err.errno, name: err.name });
}

if (q) parentPort.on('message', (msg) => {
  if (msg.cmd === 'close') {
    const stats = q.stats();
    q.close();
    q.close();
    let verdictAfterClose = null;
    try {
      q.verdict(1, VERDICT.ACCEPT);
    } catch (err) {
      verdictAfterClose = err.code;
    }
    parentPort.postMessage({ ev: 'closed', stats, verdictAfterClose });
  } else if (msg.cmd === 'rebind') {
    try {
      const again = new Queue({ queueNum, ...options }, () => {});
      again.close();
      parentPort.postMessage({ ev: 'rebound', ok: true });
    } catch (err) {
      parentPort.postMessage({ ev: 'rebound', ok: false, message: err.message });
    }
  } else if (msg.cmd === 'stats') {
    parentPort.postMessage({ ev: 'stats', stats: q.stats() });
  }
});
