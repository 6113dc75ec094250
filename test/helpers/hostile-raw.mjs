// The attacker's raw socket for test/integration/hostile.test.ts, run inside a namespace host
// (`ip netns exec NS node hostile-raw.mjs FAMILY PEER`). Like tap-raw.mjs it sends complete
// packets given as hex (IP_HDRINCL / IPV6_HDRINCL), and it adds what a flood needs: sending
// thousands of packets from templates at a bounded rate, each with its own source port (or
// IPv4 fragment id) so that every packet is a new connection attempt, without the test
// process shipping each one over stdin.
//
// Note (raw(7)): with IP_HDRINCL the kernel always fills in the IPv4 total length and header
// checksum, so lies in those two fields cannot be sent from here (the test rewrites them on
// the way out with an NFQUEUE in the same namespace, hostile-egress.mjs).
//
// stdin:
//   {"cmd":"send","id":N,"packets":["45..",..]}   send in order; reply {ev:'sent',id,results:[bytes|"error"]}
//   {"cmd":"flood","id":N,"count":C,"rate":R,"templates":[{"packets":[hex..],"vary":"tcp"|"ipid","sportBase":P,"sportSpan":S}]}
//        send C packet groups round-robin over the templates, at most R groups per second;
//        reply {ev:'flooded',id,groups,packets,errors,firstError,ms}
//   {"cmd":"exit"}                                    (end of stdin also ends it)
// stdout: {ev:'ready'} then the replies above, and {ev:'recv',sport,dport,flags,seq,len,hex} for every
//   TCP packet from PEER (its ports as seen on the wire: sport is PEER's port), unless a flood
//   is running (then only counted, in {ev:'flooded'}.received).

import { createRequire } from 'node:module';
import { out, serveCommands } from './commands.mjs';

const raw = createRequire(import.meta.url)('raw-socket');
const family = process.argv[2] === '6' ? 6 : 4;
const peer = process.argv[3] && process.argv[3] !== '-' ? process.argv[3] : null;

// Bounded life: a test that forgets us must not leave a sender behind.
setTimeout(() => process.exit(3), Number(process.env.HOSTILE_MAX_MS ?? 120_000)).unref();

const socket = raw.createSocket({
  protocol: raw.Protocol.TCP,
  addressFamily: family === 6 ? raw.AddressFamily.IPv6 : raw.AddressFamily.IPv4,
  bufferSize: 65_536,
});
// IPV6_HDRINCL is 36 (linux/in6.h); raw-socket's constant table lacks it on some builds.
if (family === 6) socket.setOption(raw.SocketLevel.IPPROTO_IPV6, raw.SocketOption.IPV6_HDRINCL ?? 36, Buffer.from([1, 0, 0, 0]), 4);
else socket.setOption(raw.SocketLevel.IPPROTO_IP, raw.SocketOption.IP_HDRINCL, Buffer.from([0, 0, 0, 1]), 4);
socket.on('error', (err) => out({ ev: 'error', message: String(err) }));

let flooding = false;
let received = 0;
socket.on('message', (buf, source) => {
  if (!peer || source !== peer) return;
  // IPv4 raw sockets deliver the IP header, IPv6 ones do not.
  const t = family === 4 ? (buf[0] & 0x0f) * 4 : 0;
  if (buf.length < t + 20) return;
  received++;
  if (flooding) return;
  out({ ev: 'recv', sport: buf.readUInt16BE(t), dport: buf.readUInt16BE(t + 2), flags: buf[t + 13], seq: buf.readUInt32BE(t + 4), len: buf.length - t, hex: buf.toString('hex') });
});

function destination(buf) {
  if (family === 4) return `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}`;
  const g = [];
  for (let i = 24; i < 40; i += 2) g.push(buf.readUInt16BE(i).toString(16));
  return g.join(':');
}

function sendOne(buf) {
  return new Promise((resolve) => {
    socket.send(buf, 0, buf.length, destination(buf), (err, bytes) => resolve(err ? `error: ${err.message}` : bytes));
  });
}

/** RFC 1624 incremental checksum update: keeps a deliberately wrong checksum exactly as wrong. */
function updateChecksum(ck, oldWord, newWord) {
  let s = (~ck & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** Template k-th variant: a new source port and sequence number (TCP checksum updated), or a new fragment id. */
function variant(tpl, k) {
  if (tpl.vary === 'ipid') {
    const id = ((tpl.sportBase + k) % 0xfffe) + 1;
    return tpl.bufs.map((b) => {
      const c = Buffer.from(b);
      c.writeUInt16BE(id, 4); // the kernel recomputes the IPv4 header checksum (IP_HDRINCL)
      return c;
    });
  }
  const c = Buffer.from(tpl.bufs[0]);
  const t = family === 4 ? (c[0] & 0x0f) * 4 : 40;
  let ck = c.readUInt16BE(t + 16);
  const sport = tpl.sportBase + (k % tpl.sportSpan);
  ck = updateChecksum(ck, c.readUInt16BE(t), sport);
  c.writeUInt16BE(sport, t);
  const seq = (Math.random() * 0x1_0000_0000) >>> 0;
  ck = updateChecksum(ck, c.readUInt16BE(t + 4), seq >>> 16);
  ck = updateChecksum(ck, c.readUInt16BE(t + 6), seq & 0xffff);
  c.writeUInt32BE(seq, t + 4);
  c.writeUInt16BE(ck, t + 16);
  return [c];
}

async function flood(msg) {
  const templates = msg.templates.map((t) => ({ ...t, bufs: t.packets.map((h) => Buffer.from(h, 'hex')) }));
  const count = Math.min(Number(msg.count), 200_000);
  const rate = Math.max(1, Math.min(Number(msg.rate), 50_000));
  const started = Date.now();
  const deadline = started + Number(msg.maxMs ?? 60_000);
  let groups = 0;
  let packets = 0;
  let errors = 0;
  let firstError = null;
  const before = received;
  flooding = true;
  // Synchronous sendto (raw-socket's own send queue does one send per poll wakeup, far too
  // slow for a flood): bursts of up to 1 ms worth of packets, paced against the clock.
  for (let g = 0; g < count && Date.now() < deadline; g++) {
    const tpl = templates[g % templates.length];
    for (const b of variant(tpl, Math.floor(g / templates.length))) {
      try {
        socket.wrap.send(b, 0, b.length, destination(b), () => {});
        packets++;
      } catch (err) {
        errors++;
        firstError ??= String(err);
      }
    }
    groups++;
    const ahead = groups / rate - (Date.now() - started) / 1000;
    if (ahead > 0.001) await new Promise((r) => setTimeout(r, ahead * 1000));
  }
  flooding = false;
  out({ ev: 'flooded', id: msg.id, groups, packets, errors, firstError, ms: Date.now() - started, received: received - before });
}

serveCommands(
  async (msg) => {
    // Commands run one after the other, in the order given.
    if (msg.cmd === 'send') {
      const results = [];
      for (const h of msg.packets) results.push(await sendOne(Buffer.from(h, 'hex')));
      out({ ev: 'sent', id: msg.id, results });
    } else if (msg.cmd === 'flood') await flood(msg);
  },
  () => socket.close(),
  { sequential: true },
);
out({ ev: 'ready', pid: process.pid, family });
