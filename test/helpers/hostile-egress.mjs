// The attacker's last-moment rewriter for test/integration/hostile.test.ts: an NFQUEUE consumer
// in the attacker's own namespace (`ip netns exec NS node hostile-egress.mjs QUEUE`), fed by a
// mangle POSTROUTING rule. It edits the two IPv4 header fields that IP_HDRINCL will not let a
// raw socket choose (raw(7): total length and header checksum are always filled in), after
// the kernel computed them and before the packet leaves: what is accepted here goes on the
// wire byte for byte.
//
// stdin:  {"cmd":"rule","sportFrom":A,"sportTo":B,"totalLength":"+N"|"-N"|N,"ipChecksumError":E}
//         edits every packet whose TCP source port is in [A, B]: total length set (N) or moved
//         (+N/-N) with a correct header checksum, and/or the header checksum made wrong by E.
//         {"cmd":"exit"}
// stdout: {ev:'ready'}, {ev:'rule'} per rule, {ev:'edited',sport,totalLength,checksum} per packet.

import { createRequire } from 'node:module';
import { out, serveCommands } from './commands.mjs';

const nfq = createRequire(import.meta.url)('../../native/index.cjs');
const queueNum = Number(process.argv[2]);
const rules = [];
let edited = 0;

setTimeout(() => process.exit(3), Number(process.env.HOSTILE_MAX_MS ?? 120_000)).unref();

function ipChecksum(buf, ihl) {
  let s = 0;
  for (let i = 0; i < ihl; i += 2) if (i !== 10) s += (buf[i] << 8) | buf[i + 1];
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

function edit(buf) {
  if (buf.length < 20 || buf[0] >> 4 !== 4 || buf[9] !== 6) return null;
  const ihl = (buf[0] & 0x0f) * 4;
  if (buf.length < ihl + 4) return null;
  const sport = (buf[ihl] << 8) | buf[ihl + 1];
  const rule = rules.find((r) => sport >= r.sportFrom && sport <= r.sportTo);
  if (!rule) return null;
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  if (rule.totalLength !== undefined) {
    const tl = String(rule.totalLength);
    const now = view.readUInt16BE(2);
    const next = tl.startsWith('+') || tl.startsWith('-') ? now + Number(tl) : Number(tl);
    view.writeUInt16BE(next & 0xffff, 2);
  }
  let ck = ipChecksum(view, ihl);
  if (rule.ipChecksumError) ck = (ck + Number(rule.ipChecksumError)) & 0xffff;
  view.writeUInt16BE(ck, 10);
  return { sport, totalLength: view.readUInt16BE(2), checksum: ck };
}

let queue;
try {
  queue = new nfq.Queue({ queueNum, batchSize: 16 }, (count) => {
    for (let i = 0; i < count; i++) {
      const m = i * nfq.META_FIELDS;
      const id = queue.meta[m];
      const off = queue.meta[m + 1];
      const len = queue.meta[m + 2];
      const buf = queue.data.subarray(off, off + len);
      const e = edit(buf);
      if (e) {
        edited++;
        queue.verdict(id, nfq.VERDICT.ACCEPT, -1, buf, len);
        if (edited <= 1000) out({ ev: 'edited', ...e });
      } else queue.verdict(id, nfq.VERDICT.ACCEPT, -1);
    }
  });
} catch (err) {
  out({ ev: 'error', message: err.message, code: err.code });
  process.exit(1);
}

serveCommands(
  (msg) => {
    if (msg.cmd === 'rule') {
      rules.push({ sportFrom: msg.sportFrom, sportTo: msg.sportTo, totalLength: msg.totalLength, ipChecksumError: msg.ipChecksumError });
      out({ ev: 'rule', n: rules.length });
    } else if (msg.cmd === 'count') out({ ev: 'count', edited });
  },
  () => queue.close(),
);
out({ ev: 'ready', pid: process.pid, queueNum });
