// Cross-check against an independent decoder: every fixture, every rebuilt packet (our option
// added, token appended, then stripped), resets and random packets go into a pcap that tshark
// decodes with checksum validation on. tshark must agree with parseTcp on every field and call
// every checksum good. scripts/setup.sh installs tshark; without it this test fails loudly.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseTcp, findOption, rebuild, toReset, formatAddress, type TcpPacket } from '../../../src/packet/index.js';
import { loadFixtures, pcap, specArb, ourOptionArb, build, OUR_OPTION, EXID, toHex } from './helpers.js';


function tsharkPath(): string | null {
  try {
    return execFileSync('sh', ['-c', 'command -v tshark'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

const FIELDS = [
  'frame.number', 'ip.src', 'ip.dst', 'ipv6.src', 'ipv6.dst', 'ip.checksum.status', 'tcp.srcport', 'tcp.dstport',
  'tcp.seq_raw', 'tcp.ack_raw', 'tcp.flags', 'tcp.hdr_len', 'tcp.len', 'tcp.window_size_value', 'tcp.checksum.status',
  'tcp.options', 'tcp.options.experimental.exid',
] as const;
type Row = Record<(typeof FIELDS)[number], string>;

function mustParse(b: Uint8Array): TcpPacket {
  const p = parseTcp(b);
  if (!p.ok) throw new Error(`${p.reason}: ${p.detail}`);
  return p;
}

function rebuilt(b: Uint8Array, edit: Parameters<typeof rebuild>[2]): Uint8Array {
  const out = new Uint8Array(70000);
  const n = rebuild(b, mustParse(b), edit, out);
  if (typeof n !== 'number') throw new Error(`rebuild: ${n.reason}`);
  return out.slice(0, n);
}

describe('tshark agrees with parseTcp, our checksums and our option encoding', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-packet-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('tshark is installed (scripts/setup.sh installs it)', () => {
    expect(tsharkPath(), 'tshark not found: install it with `apt-get install -y tshark` (scripts/setup.sh does) — this cross-check must not be skipped').not.toBeNull();
  });

  it('decodes fixtures, tagged/stripped handshakes, resets and random packets identically', () => {
    const tshark = tsharkPath();
    if (!tshark) throw new Error('tshark not found: install it with `apt-get install -y tshark` (scripts/setup.sh does)');
    const packets: { label: string; bytes: Uint8Array; tagged: boolean; corrupt?: boolean }[] = [];
    const token = Uint8Array.from({ length: 600 }, (_, i) => (i * 31 + 7) & 0xff);
    for (const f of loadFixtures()) {
      packets.push({ label: f.name, bytes: f.bytes, tagged: false });
      const tagged = rebuilt(f.bytes, { addOption: OUR_OPTION, append: token });
      packets.push({ label: `${f.name} tagged`, bytes: tagged, tagged: true });
      const tp = mustParse(tagged);
      const stripped = rebuilt(tagged, { removeOptionAt: findOption(tagged, tp, 253, EXID), payloadLength: tp.payloadLength - token.length });
      expect(toHex(stripped), `${f.name} strip`).toBe(toHex(f.bytes));
      if (f.name.includes('syn-ack')) {
        const out = new Uint8Array(f.bytes.length);
        const n = toReset(f.bytes, mustParse(f.bytes), out);
        packets.push({ label: `${f.name} reset`, bytes: out.slice(0, n as number), tagged: false });
      }
    }
    // Control: a payload byte flipped after rebuild, so tshark's checksum verdict is shown to matter.
    const corrupt = rebuilt(loadFixtures()[0]!.bytes, { addOption: OUR_OPTION, append: token });
    corrupt[corrupt.length - 1] = corrupt[corrupt.length - 1]! ^ 1;
    packets.push({ label: 'corrupted control', bytes: corrupt, tagged: true, corrupt: true });
    // Option kinds tshark has special dissectors for (MPTCP, TFO, ...) with random contents make
    // it stop decoding the options; keep the random ones to kinds whose layout is simple.
    const simpleKinds = (o: Uint8Array): boolean => {
      for (let i = 0; i < o.length && o[i] !== 0; i += o[i] === 1 ? 1 : o[i + 1]!) if (![1, 2, 3, 4, 5, 8, 253, 254].includes(o[i]!)) return false;
      return true;
    };
    const randoms = fc.sample(fc.tuple(specArb.filter((s) => simpleKinds(s.options)), ourOptionArb, fc.uint8Array({ maxLength: 300 })), { numRuns: 150 });
    for (const [i, [s, opt, tok]] of randoms.entries()) {
      // Random IPv4 option bytes are fine for parseTcp (it skips them) but make tshark stop
      // before TCP; NOPs keep the varying header length without that.
      const b = build({ ...s, ipOptions: s.ipOptions?.map(() => 1) });
      packets.push({ label: `random ${i}`, bytes: b, tagged: false });
      const out = new Uint8Array(70000);
      const n = rebuild(b, mustParse(b), { addOption: opt, append: tok }, out);
      if (typeof n === 'number') packets.push({ label: `random ${i} tagged`, bytes: out.slice(0, n), tagged: true });
    }

    const file = join(dir, 'packets.pcap');
    writeFileSync(file, pcap(packets.map((p) => p.bytes)));
    const args = ['-r', file, '-n', '-o', 'tcp.check_checksum:TRUE', '-o', 'ip.check_checksum:TRUE', '-o', 'tcp.desegment_tcp_streams:FALSE',
      '-T', 'fields', '-E', 'separator=\t', '-E', 'occurrence=a', '-E', 'aggregator=,', ...FIELDS.flatMap((f) => ['-e', f])];
    const text = execFileSync(tshark, args, { encoding: 'utf8', timeout: 60_000, maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
    const rows: Row[] = text.trimEnd().split('\n').map((line) => {
      const cols = line.split('\t');
      return Object.fromEntries(FIELDS.map((f, i) => [f, cols[i] ?? ''])) as Row;
    });
    expect(rows.length).toBe(packets.length);

    let taggedSeen = 0;
    packets.forEach((pk, i) => {
      const row = rows[i]!;
      const b = pk.bytes;
      const p = mustParse(b);
      const t = p.tcpOffset;
      const where = `${pk.label} (frame ${i + 1}, ${toHex(b)})`;
      const addr = (off: number) => formatAddress(b, off, p.addrLength);
      const actual = {
        src: p.family === 4 ? row['ip.src'] : row['ipv6.src'],
        dst: p.family === 4 ? row['ip.dst'] : row['ipv6.dst'],
        ports: [Number(row['tcp.srcport']), Number(row['tcp.dstport'])],
        seqAck: [Number(row['tcp.seq_raw']), Number(row['tcp.ack_raw'])],
        flags: parseInt(row['tcp.flags'], 16),
        hdrLen: Number(row['tcp.hdr_len']),
        len: Number(row['tcp.len']),
        window: Number(row['tcp.window_size_value']),
        tcpChecksum: row['tcp.checksum.status'],
        ipChecksum: p.family === 4 ? row['ip.checksum.status'] : 'n/a',
        options: row['tcp.options'].replace(/:/g, ''),
      };
      expect(actual, where).toEqual({
        src: addr(p.srcAddrOffset),
        dst: addr(p.dstAddrOffset),
        ports: [p.srcPort, p.dstPort],
        seqAck: [p.seq, p.ack],
        flags: ((b[t + 12]! & 0x0f) << 8) | p.flags,
        hdrLen: p.tcpHeaderLength,
        len: p.payloadLength,
        window: p.window,
        // wireshark's PROTO_CHECKSUM_E_GOOD is 1, E_BAD 0: the corrupted control packet must be bad.
        tcpChecksum: pk.corrupt ? '0' : '1',
        ipChecksum: p.family === 4 ? '1' : 'n/a',
        options: toHex(b.subarray(t + 20, p.payloadOffset)),
      });
      if (pk.tagged) {
        taggedSeen++;
        const exids = row['tcp.options.experimental.exid'].split(',').map(Number);
        expect(exids, `${where}: tshark sees our RFC 6994 ExID`).toContain(EXID);
      }
    });
    expect(taggedSeen).toBeGreaterThan(100);
  });
});
