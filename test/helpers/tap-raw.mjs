// An attacker's raw socket inside a namespace host (`ip netns exec NS node tap-raw.mjs PEER`):
// sends complete IPv4 packets given as hex (IP_HDRINCL, so the test chooses every byte,
// including a source address the kernel would never put there), and reports every TCP packet
// that arrives from PEER. The kernel's own TCP stack still sees those packets too; the test
// keeps it from answering with resets by an iptables rule in this namespace.
//
// stdin:  {"cmd":"send","hex":"45..."}  {"cmd":"exit"}   (end of stdin also ends it)
// stdout: {ev:'ready'}  {ev:'sent', bytes}  {ev:'recv', hex}  {ev:'error', message}

import { createRequire } from 'node:module';
import { out, serveCommands } from './commands.mjs';

const raw = createRequire(import.meta.url)('raw-socket');
const peer = process.argv[2];

setTimeout(() => process.exit(3), Number(process.env.TAP_MAX_MS ?? 90_000)).unref();

const socket = raw.createSocket({ protocol: raw.Protocol.TCP, bufferSize: 65_536 });
socket.setOption(raw.SocketLevel.IPPROTO_IP, raw.SocketOption.IP_HDRINCL, Buffer.from([0, 0, 0, 1]), 4);
socket.on('error', (err) => out({ ev: 'error', message: String(err) }));
socket.on('message', (buf, source) => {
  if (source !== peer) return;
  out({ ev: 'recv', hex: buf.toString('hex') });
});

serveCommands(
  (msg) => {
    if (msg.cmd === 'send') {
      const buf = Buffer.from(msg.hex, 'hex');
      const dst = `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}`;
      socket.send(buf, 0, buf.length, dst, (err, bytes) => out(err ? { ev: 'error', message: String(err) } : { ev: 'sent', bytes }));
    }
  },
  () => socket.close(),
);
out({ ev: 'ready', pid: process.pid });
