// Regenerates test/fixtures/packets/linux-capture.json: real packets captured from the Linux
// stack of this machine, so the packet tests use the option layouts Linux really sends
// (SYN: MSS, SACK_PERM, TS, NOP, WS; ACK: NOP, NOP, TS; ...). Needs root; run rarely:
//   npx tsx scripts/packet-fixtures.ts
// IPv4 runs between two namespace hosts (veth, MTU 1500); IPv6 runs on ::1 inside one of them.
// Needs tshark and ethtool (checksum offload is turned off so the captured checksums are real).
// Everything is created in namespaces made here and removed at the end.

import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { createTopology, uniquePrefix, isRoot, killAndWait } from './lib/netns.js';
import { parseTcp, formatFlow, tcpChecksum, verifyChecksums } from '../src/packet/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'test/fixtures/packets/linux-capture.json');

interface Fixture {
  name: string;
  note: string;
  hex: string;
}

/** Packets of a pcap file whose link type is Ethernet, as IP packets (Ethernet header removed). */
function readPcap(file: string): Uint8Array[] {
  const b = readFileSync(file);
  if (b.readUInt32LE(0) !== 0xa1b2c3d4) throw new Error(`${file}: not a little-endian microsecond pcap`);
  if (b.readUInt32LE(20) !== 1) throw new Error(`${file}: link type ${b.readUInt32LE(20)}, expected Ethernet`);
  const pkts: Uint8Array[] = [];
  for (let o = 24; o + 16 <= b.length; ) {
    const incl = b.readUInt32LE(o + 8);
    const frame = b.subarray(o + 16, o + 16 + incl);
    const type = frame.readUInt16BE(12);
    if (type === 0x0800 || type === 0x86dd) pkts.push(new Uint8Array(frame.subarray(14)));
    o += 16 + incl;
  }
  return pkts;
}

const CLIENT = (host: string, port: number, family: number) => `
const net = require('node:net');
const s = net.connect({ host: '${host}', port: ${port}, family: ${family} }, () => s.write('ping'));
s.on('data', () => {}); s.on('end', () => s.end()); s.on('error', (e) => { console.error(e.message); process.exitCode = 1; });
setTimeout(() => process.exit(2), 5000).unref();`;
const REFUSED = (host: string, port: number) => `
const s = require('node:net').connect({ host: '${host}', port: ${port} });
s.on('error', () => process.exit(0)); setTimeout(() => process.exit(2), 5000).unref();`;
const SERVER = (host: string, port: number) => `
require('node:net').createServer((s) => { s.on('data', () => s.end('pong')); s.on('error', () => {}); })
  .listen(${port}, '${host}', () => console.log('listening'));
setTimeout(() => process.exit(0), 20000).unref();`;

async function waitFor(child: import('node:child_process').ChildProcess, text: string, stream: 'stdout' | 'stderr'): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for "${text}"; got: ${seen}`)), 10_000);
    child[stream]!.on('data', (d: Buffer) => {
      seen += d.toString();
      if (seen.includes(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

async function main(): Promise<void> {
  if (!isRoot) throw new Error('scripts/packet-fixtures.ts needs root (network namespaces)');
  const dir = mkdtempSync(join(tmpdir(), 'tessera-pcap-'));
  const topo = await createTopology({ prefix: uniquePrefix('pf'), hosts: ['a', 'b'], subnet: 231 });
  try {
    const a = topo.host('a');
    const b = topo.host('b');
    // Without this the capture holds the partial checksums of TX checksum offload, not real ones.
    // (lo cannot turn it off: its IPv6 packets get their TCP checksum filled in below.)
    for (const [h, dev] of [[a, 'eth0'], [b, 'eth0']] as const) {
      const r = await h.exec(['ethtool', '-K', dev, 'tx', 'off']);
      if (r.code !== 0) throw new Error(`ethtool -K ${dev} tx off failed (apt-get install ethtool): ${r.stderr.trim()}`);
    }
    const fixtures: Fixture[] = [];
    const capture = async (name: string, iface: string, run: () => Promise<void>): Promise<Uint8Array[]> => {
      const file = join(dir, `${name}.pcap`);
      const cap = a.spawn(['tshark', '-q', '-i', iface, '-F', 'pcap', '-w', file, '-f', 'tcp']);
      await waitFor(cap, 'Capturing on', 'stderr');
      try {
        await run();
        await new Promise((r) => setTimeout(r, 500));
      } finally {
        await killAndWait(cap);
      }
      return readPcap(file);
    };

    const server4 = b.spawn(['node', '-e', SERVER(b.addr, 8080)]);
    await waitFor(server4, 'listening', 'stdout');
    const v4 = await capture('v4', 'eth0', async () => {
      const r = await a.exec(['node', '-e', CLIENT(b.addr, 8080, 4)], { timeoutMs: 10_000 });
      if (r.code !== 0) throw new Error(`IPv4 client failed: ${r.stderr}`);
      const x = await a.exec(['node', '-e', REFUSED(b.addr, 8081)], { timeoutMs: 10_000 });
      if (x.code !== 0) throw new Error(`refused client failed: ${x.stderr}`);
    });
    await killAndWait(server4);

    const server6 = a.spawn(['node', '-e', SERVER('::1', 8080)]);
    await waitFor(server6, 'listening', 'stdout');
    const v6 = await capture('v6', 'lo', async () => {
      const r = await a.exec(['node', '-e', CLIENT('::1', 8080, 6)], { timeoutMs: 10_000 });
      if (r.code !== 0) throw new Error(`IPv6 client failed: ${r.stderr}`);
    });
    await killAndWait(server6);

    const describe = (family: string, p: Uint8Array, i: number, where: string, fillChecksum: boolean): Fixture => {
      const pkt = parseTcp(p);
      if (!pkt.ok) throw new Error(`captured packet ${i} does not parse: ${pkt.reason}`);
      if (fillChecksum) {
        const c = tcpChecksum(p, pkt);
        p[pkt.tcpOffset + 16] = c >> 8;
        p[pkt.tcpOffset + 17] = c & 0xff;
      }
      const bad = verifyChecksums(p, pkt);
      if (bad) throw new Error(`captured packet ${i} (${family}) has a ${bad}: is TX checksum offload still on?`);
      const f = pkt.flags;
      const flags = ['fin', 'syn', 'rst', 'psh', 'ack', 'urg', 'ece', 'cwr'].filter((_, bit) => f & (1 << bit)).join('-');
      const data = pkt.payloadLength > 0 ? `-data${pkt.payloadLength}` : '';
      return {
        name: `${family}-${String(i + 1).padStart(2, '0')}-${flags}${data}`,
        note: `${where}: ${formatFlow(p, pkt)}`,
        hex: Buffer.from(p).toString('hex'),
      };
    };
    v4.forEach((p, i) => fixtures.push(describe('v4', p, i, 'IPv4 over veth (MTU 1500), a ping/pong connection then one to a closed port', false)));
    v6.forEach((p, i) => fixtures.push(describe('v6', p, i, 'IPv6 on ::1 (lo, MTU 65536; TCP checksum filled in by the generator, lo offloads it), a ping/pong connection', true)));
    writeFileSync(out, JSON.stringify({ source: 'scripts/packet-fixtures.ts (Linux ' + (await a.exec(['uname', '-r'])).stdout.trim() + ')', packets: fixtures }, null, 2) + '\n');
    console.log(`wrote ${fixtures.length} packets (${v4.length} IPv4, ${v6.length} IPv6) to ${out}`);
  } finally {
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
