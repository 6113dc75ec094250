// A wire tap / tamperer on one NFQUEUE, run inside a namespace host (`ip netns exec NS node
// tap-queue.mjs QUEUE MODE`), because a queue belongs to the namespace that binds it. The test
// points a raw-table rule at the queue: raw runs before conntrack and before Tessera's mangle
// rules, so what this process does to a packet is what "the wire" did to it.
//
// Modes (switchable at run time with the stdin line {"cmd":"mode","mode":"..."}):
//   copy          report every packet (hex) and accept it unchanged
//   tamper-token  on a tagged SYN-ACK, change one base64url character in the middle of the
//                 token's signature part; recompute the TCP checksum; accept
//   tamper-mac    on a tagged SYN-ACK, swap the first and last byte of macS (xor if equal)
//   tamper-v2-syn     on a tagged protocol-v2 SYN, flip one byte of the client's proof (macC)
//   tamper-v2-synack  on a tagged protocol-v2 SYN-ACK, flip one byte of the server's MAC
//   drop-syn / drop-synack / drop-ack   drop the next SYN / SYN-ACK / bare ACK (one packet),
//                 then go on as 'copy' (a loss on the path, placed exactly)
//   pass          accept everything silently
// stdout: JSON lines {ev:'ready'} once bound, {ev:'packet', hex, tampered, what?} per packet.
// stdin: {"cmd":"mode",...} or {"cmd":"exit"}; end of stdin also ends the process.

import { createRequire } from 'node:module';
import { out, serveCommands } from './commands.mjs';
import { parseTcp, tcpChecksum } from '../../dist/src/packet/index.js';

const nfq = createRequire(import.meta.url)('../../native/index.cjs');
const queueNum = Number(process.argv[2]);
let mode = process.argv[3] ?? 'copy';

// Bounded life: a test that forgets us must not leave a queue consumer behind.
setTimeout(() => process.exit(3), Number(process.env.TAP_MAX_MS ?? 90_000)).unref();

const MARKER = [253, 4, 0x7e, 0x55];
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

function hasMarker(buf, pkt) {
  const start = pkt.tcpOffset + 20;
  const end = pkt.tcpOffset + pkt.tcpHeaderLength;
  for (let i = start; i < end; ) {
    const k = buf[i];
    if (k === 0) break;
    if (k === 1) {
      i++;
      continue;
    }
    const l = buf[i + 1];
    if (!l || l < 2) break;
    if (k === MARKER[0] && l === 4 && buf[i + 2] === MARKER[2] && buf[i + 3] === MARKER[3]) return true;
    i += l;
  }
  return false;
}

/** A protocol v2 block at the end of the payload: its start and type, or null. */
function block2(buf, pkt) {
  const end = pkt.payloadOffset + pkt.payloadLength;
  if (!hasMarker(buf, pkt) || pkt.payloadLength < 5 || buf[end - 4] !== 2) return null;
  const start = end - ((buf[end - 2] << 8) | buf[end - 1]);
  return start < pkt.payloadOffset ? null : { start, type: buf[end - 3] };
}

/** Edit a tagged SYN-ACK block in place; returns a description of the edit, or null. */
function tamper(buf, pkt) {
  if (mode === 'tamper-v2-syn' || mode === 'tamper-v2-synack') {
    const b = block2(buf, pkt);
    const wantSyn = mode === 'tamper-v2-syn';
    if (!b || (pkt.flags & 0x12) !== (wantSyn ? 0x02 : 0x12) || b.type !== (wantSyn ? 1 : 2)) return null;
    // SYN: flags 1 | keyId 4 | ts 8 | nonce 8 | peerRef 8 | macC 16; SYN-ACK: flags 1 | macS 16.
    const at = b.start + (wantSyn ? 29 : 1);
    buf[at] ^= 0x01;
    return { what: wantSyn ? 'macC' : 'macS', offset: at - pkt.payloadOffset };
  }
  if ((pkt.flags & 0x12) !== 0x12 || !hasMarker(buf, pkt)) return null;
  const end = pkt.payloadOffset + pkt.payloadLength;
  if (pkt.payloadLength < 4 + 34 || buf[end - 4] !== 1 || buf[end - 3] !== 2) return null;
  const blockLength = (buf[end - 2] << 8) | buf[end - 1];
  const block = end - blockLength;
  if (block < pkt.payloadOffset) return null;
  const macS = block + 16;
  const tokenLength = (buf[block + 32] << 8) | buf[block + 33];
  const token = block + 34;
  if (mode === 'tamper-mac') {
    const first = buf[macS];
    const last = buf[macS + 15];
    if (first === last) buf[macS] ^= 0xff;
    else {
      buf[macS] = last;
      buf[macS + 15] = first;
    }
    return { what: 'macS', offset: macS - pkt.payloadOffset };
  }
  if (mode === 'tamper-token') {
    // The signature is the part after the last '.'. A middle character: its 6 bits all land
    // in decoded bytes (the last character may carry only padding bits).
    let dot = -1;
    for (let i = token + tokenLength - 1; i >= token; i--) {
      if (buf[i] === 0x2e) {
        dot = i;
        break;
      }
    }
    if (dot < 0) return null;
    const at = dot + 1 + Math.floor((token + tokenLength - dot - 1) / 2);
    const old = String.fromCharCode(buf[at]);
    const idx = B64URL.indexOf(old);
    const neu = B64URL[(idx + 1) % 64];
    buf[at] = neu.charCodeAt(0);
    return { what: 'token-signature', offset: at - pkt.payloadOffset, from: old, to: neu };
  }
  return null;
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
      const pkt = parseTcp(buf);
      if (mode === 'pass' || !pkt.ok) {
        queue.verdict(id, nfq.VERDICT.ACCEPT, -1);
        continue;
      }
      const before = Buffer.from(buf).toString('hex');
      const drops = { 'drop-syn': [0x17, 0x02], 'drop-synack': [0x17, 0x12], 'drop-ack': [0x17, 0x10] }[mode];
      if (drops && (pkt.flags & drops[0]) === drops[1] && (drops[1] !== 0x10 || pkt.payloadLength === 0)) {
        queue.verdict(id, nfq.VERDICT.DROP, -1);
        out({ ev: 'packet', hex: before, dropped: true, tampered: false });
        mode = 'copy';
        continue;
      }
      const edit = mode === 'copy' ? null : tamper(buf, pkt);
      if (edit) {
        const c = tcpChecksum(buf, pkt);
        buf[pkt.tcpOffset + 16] = c >> 8;
        buf[pkt.tcpOffset + 17] = c & 0xff;
        queue.verdict(id, nfq.VERDICT.ACCEPT, -1, buf, len);
      } else {
        queue.verdict(id, nfq.VERDICT.ACCEPT, -1);
      }
      out({ ev: 'packet', hex: before, tampered: !!edit, ...(edit ? { ...edit, after: Buffer.from(buf).toString('hex') } : {}) });
    }
  });
} catch (err) {
  out({ ev: 'error', message: err.message, code: err.code });
  process.exit(1);
}

serveCommands(
  (msg) => {
    if (msg.cmd === 'mode') {
      mode = msg.mode;
      out({ ev: 'mode', mode });
    }
  },
  () => queue.close(),
);
out({ ev: 'ready', pid: process.pid, queueNum, mode });
