import { describe, expect, it } from 'vitest';
import {
  parseTcp,
  verifyChecksums,
  findOption,
  PACKET_ERROR_REASONS,
  TCP_SYN,
  TCP_ACK,
  TCP_RST,
  TCP_PSH,
  TCP_FIN,
  type TcpPacket,
  type PacketError,
} from '../../../src/packet/index.js';
import { build, fixture, fixIpChecksum, fixTcpChecksum, hex, loadFixtures, EXID, type Spec } from './helpers.js';

const V4 = { src: Uint8Array.of(10, 213, 1, 1), dst: Uint8Array.of(10, 213, 1, 2) };
const V6 = { src: hex('20010db8000000000000000000000001'), dst: hex('20010db8000000000000000000000002') };
const LINUX_SYN_OPTIONS = hex('020405b4 0402 080a 41481040 00000000 01 030307');

function spec(over: Partial<Spec> = {}): Spec {
  return {
    family: 4, ...V4, sport: 43468, dport: 8080, seq: 0x11223344, ack: 0, flags: TCP_SYN, window: 64240,
    options: LINUX_SYN_OPTIONS, payload: new Uint8Array(0), ...over,
  };
}

function ok(r: TcpPacket | PacketError): TcpPacket {
  if (!r.ok) throw new Error(`expected a packet, got ${r.reason}: ${r.detail}`);
  return r;
}

function reason(r: TcpPacket | PacketError): string {
  return r.ok ? 'ok' : r.reason;
}

describe('parseTcp on real Linux packets', () => {
  const fixtures = loadFixtures();

  it('has IPv4 and IPv6 handshakes in the fixtures', () => {
    expect(fixtures.filter((f) => f.name.startsWith('v4-')).length).toBeGreaterThanOrEqual(10);
    expect(fixtures.filter((f) => f.name.startsWith('v6-')).length).toBeGreaterThanOrEqual(8);
  });

  it.each(fixtures.map((f) => [f.name, f] as const))('%s parses and its checksums verify', (_name, f) => {
    const p = ok(parseTcp(f.bytes));
    expect(p.length).toBe(f.bytes.length);
    expect(p.family).toBe(f.name.startsWith('v4') ? 4 : 6);
    expect(p.payloadOffset + p.payloadLength).toBe(p.length);
    expect(verifyChecksums(f.bytes, p)).toBeNull();
  });

  it('reads every field of the IPv4 SYN', () => {
    const b = fixture('v4-01-syn');
    const p = ok(parseTcp(b));
    expect(p).toMatchObject({
      family: 4, length: 60, ipHeaderLength: 20, tcpOffset: 20, tcpHeaderLength: 40, payloadOffset: 60, payloadLength: 0,
      srcAddrOffset: 12, dstAddrOffset: 16, addrLength: 4, dstPort: 8080, ack: 0, flags: TCP_SYN,
    });
    expect([...b.subarray(12, 16)]).toEqual([10, 213, 231, 1]);
    expect(p.window).toBe(64240);
    // Linux SYN option layout: MSS, SACK_PERM, TS, NOP, WS.
    expect(findOption(b, p, 2)).toBe(40);
    expect(b[42]! * 256 + b[43]!).toBe(1460);
    expect(findOption(b, p, 4)).toBe(44);
    expect(findOption(b, p, 8)).toBe(46);
    expect(findOption(b, p, 1)).toBe(56);
    expect(findOption(b, p, 3)).toBe(57);
    expect(findOption(b, p, 253)).toBe(-1);
  });

  it('reads the IPv6 SYN-ACK and data packets', () => {
    const b = fixture('v6-02-syn-ack');
    const p = ok(parseTcp(b));
    expect(p).toMatchObject({ family: 6, ipHeaderLength: 40, tcpOffset: 40, srcAddrOffset: 8, dstAddrOffset: 24, addrLength: 16, srcPort: 8080, flags: TCP_SYN | TCP_ACK });
    expect(b[p.tcpOffset + 22]! * 256 + b[p.tcpOffset + 23]!).toBe(65476); // MSS on lo
    const syn = ok(parseTcp(fixture('v6-01-syn')));
    expect(p.ack).toBe((syn.seq + 1) >>> 0);
    const d = fixture('v6-04-psh-ack-data4');
    const pd = ok(parseTcp(d));
    expect(pd.flags).toBe(TCP_PSH | TCP_ACK);
    expect(Buffer.from(d.subarray(pd.payloadOffset, pd.payloadOffset + pd.payloadLength)).toString()).toBe('ping');
  });

  it('reads the RST|ACK Linux sent for a closed port and FIN flags', () => {
    expect(ok(parseTcp(fixture('v4-12-rst-ack'))).flags).toBe(TCP_RST | TCP_ACK);
    expect(ok(parseTcp(fixture('v4-08-fin-ack'))).flags).toBe(TCP_FIN | TCP_ACK);
  });

  it('ignores bytes past the IP total length and honours the length argument', () => {
    const b = fixture('v4-03-ack');
    const padded = new Uint8Array(b.length + 9);
    padded.set(b);
    padded.fill(0xee, b.length);
    const p = ok(parseTcp(padded));
    expect(p.length).toBe(b.length);
    expect(verifyChecksums(padded, p)).toBeNull();
    expect(reason(parseTcp(b, b.length - 1))).toBe('truncated-ip');
    expect(ok(parseTcp(padded, b.length)).length).toBe(b.length);
  });

  it('keeps seq and ack unsigned above 2^31', () => {
    const p = ok(parseTcp(build(spec({ seq: 0xfffffffe, ack: 0x80000000, flags: TCP_ACK }))));
    expect(p.seq).toBe(0xfffffffe);
    expect(p.ack).toBe(0x80000000);
  });

  it('parses IPv4 options (IHL > 5) and keeps the TCP offset after them', () => {
    const b = build(spec({ ipOptions: hex('94040000 01010100') })); // Router Alert, NOPs, EOL
    const p = ok(parseTcp(b));
    expect(p.ipHeaderLength).toBe(28);
    expect(p.tcpOffset).toBe(28);
    expect(p.dstPort).toBe(8080);
    expect(verifyChecksums(b, p)).toBeNull();
  });

  it('reuses the result object passed as into', () => {
    const into = ok(parseTcp(fixture('v4-01-syn')));
    const r = parseTcp(fixture('v6-01-syn'), undefined, into);
    expect(r).toBe(into);
    expect(into.family).toBe(6);
  });
});

describe('parseTcp error reasons', () => {
  const syn = () => build(spec());
  const syn6 = () => build(spec({ family: 6, ...V6 }));

  it('truncated-ip', () => {
    expect(reason(parseTcp(new Uint8Array(0)))).toBe('truncated-ip');
    expect(reason(parseTcp(syn().subarray(0, 19)))).toBe('truncated-ip');
    expect(reason(parseTcp(syn().subarray(0, 59)))).toBe('truncated-ip'); // total length says 60
    expect(reason(parseTcp(syn6().subarray(0, 39)))).toBe('truncated-ip');
    expect(reason(parseTcp(syn6().subarray(0, 79)))).toBe('truncated-ip');
    const b = syn();
    b[0] = 0x4f; // IHL 60 > 24 bytes given
    expect(reason(parseTcp(b.subarray(0, 24)))).toBe('truncated-ip');
    expect(reason(parseTcp(syn(), 0))).toBe('truncated-ip');
    expect(reason(parseTcp(syn(), -5))).toBe('truncated-ip');
  });

  it('bad-ip-version', () => {
    for (const v of [0, 5, 15]) {
      const b = syn();
      b[0] = (v << 4) | 5;
      expect(reason(parseTcp(b))).toBe('bad-ip-version');
    }
  });

  it('bad-ip-header-length', () => {
    const b = syn();
    b[0] = 0x44;
    expect(reason(parseTcp(b))).toBe('bad-ip-header-length');
  });

  it('bad-total-length', () => {
    const b = syn();
    b[2] = 0;
    b[3] = 19;
    expect(reason(parseTcp(b))).toBe('bad-total-length');
  });

  it('not-tcp (IPv4 protocol and IPv6 next header that is no extension header)', () => {
    const b = syn();
    b[9] = 17;
    expect(reason(parseTcp(b))).toBe('not-tcp');
    for (const nh of [17, 58, 59]) {
      const c = syn6();
      c[6] = nh;
      expect(reason(parseTcp(c))).toBe('not-tcp');
    }
  });

  it('fragment: IPv4 MF flag or a non-zero offset', () => {
    const mf = syn();
    mf[6] = 0x20;
    expect(reason(parseTcp(mf))).toBe('fragment');
    const off = syn();
    off[6] = 0x00;
    off[7] = 0x01;
    expect(reason(parseTcp(off))).toBe('fragment');
    const highOff = syn();
    highOff[6] = 0x5f; // DF + offset bits
    expect(reason(parseTcp(highOff))).toBe('fragment');
    const df = syn();
    df[6] = 0x40;
    df[7] = 0;
    expect(parseTcp(df).ok).toBe(true);
  });

  it('ipv6-extension-header (hop-by-hop, routing, fragment, destination options)', () => {
    for (const nh of [0, 43, 44, 60]) {
      const b = syn6();
      b[6] = nh;
      const r = parseTcp(b);
      expect(reason(r)).toBe('ipv6-extension-header');
      expect(r.ok ? '' : r.detail).toContain(String(nh));
    }
  });

  it('truncated-tcp', () => {
    const b = build(spec({ options: new Uint8Array(0) }));
    const short = new Uint8Array(b.subarray(0, 30));
    short[3] = 30;
    expect(reason(parseTcp(short))).toBe('truncated-tcp');
    const v6 = new Uint8Array(syn6().subarray(0, 50));
    v6[5] = 10;
    expect(reason(parseTcp(v6))).toBe('truncated-tcp');
  });

  it('bad-tcp-offset: below 5 words or beyond the segment', () => {
    const lo = syn();
    lo[32] = 0x40;
    expect(reason(parseTcp(lo))).toBe('bad-tcp-offset');
    const hi = build(spec({ options: new Uint8Array(0), payload: new Uint8Array(8) }));
    hi[32] = 0x80; // 32-byte header in a 28-byte segment
    expect(reason(parseTcp(hi))).toBe('bad-tcp-offset');
  });

  it('bad-option-length: length 0, length 1, overrun, missing length byte', () => {
    const cases = [
      hex('02000000'), // MSS with length 0
      hex('08010000'), // TS with length 1
      hex('0101080c 00000000 00000000'), // TS claims 12 bytes, 10 left
      hex('01010102'), // kind 2 in the last byte: no length byte
      hex('fd030000'), // fine length 3 here...
    ];
    const expected = ['bad-option-length', 'bad-option-length', 'bad-option-length', 'bad-option-length', 'ok'];
    cases.forEach((options, i) => expect(reason(parseTcp(build(spec({ options }))))).toBe(expected[i]));
    // Bytes after EOL are padding and never rejected.
    expect(reason(parseTcp(build(spec({ options: hex('00ff0100') }))))).toBe('ok');
  });

  it('every reason has a detail for logs', () => {
    const b = syn();
    b[9] = 1;
    const r = parseTcp(b);
    expect(r.ok).toBe(false);
    expect(r.ok ? '' : r.detail).toMatch(/protocol 1/);
  });

  it('PACKET_ERROR_REASONS lists each reason once', () => {
    expect(new Set(PACKET_ERROR_REASONS).size).toBe(PACKET_ERROR_REASONS.length);
    expect(PACKET_ERROR_REASONS).toContain('no-option-space');
  });
});

describe('verifyChecksums', () => {
  it('bad-ip-checksum when an IPv4 header byte changes', () => {
    const b = fixture('v4-01-syn');
    b[8] = b[8]! - 1; // TTL
    expect(verifyChecksums(b, ok(parseTcp(b)))).toBe('bad-ip-checksum');
    fixIpChecksum(b);
    expect(verifyChecksums(b, ok(parseTcp(b)))).toBeNull();
  });

  it('bad-tcp-checksum when a payload, header or pseudo-header byte changes', () => {
    for (const [name, at] of [['v4-04-psh-ack-data4', 53], ['v4-04-psh-ack-data4', 24], ['v6-04-psh-ack-data4', 75], ['v6-04-psh-ack-data4', 9]] as const) {
      const b = fixture(name);
      b[at] = b[at]! ^ 0x10;
      expect(verifyChecksums(b, ok(parseTcp(b))), `${name} byte ${at}`).toBe('bad-tcp-checksum');
      fixTcpChecksum(b, name.startsWith('v4') ? 4 : 6, name.startsWith('v4') ? 20 : 40);
      expect(verifyChecksums(b, ok(parseTcp(b)))).toBeNull();
    }
  });

  it('handles an odd-length segment', () => {
    const b = build(spec({ flags: TCP_ACK | TCP_PSH, payload: Uint8Array.of(1, 2, 3) }));
    expect(verifyChecksums(b, ok(parseTcp(b)))).toBeNull();
    b[b.length - 1] = 4;
    expect(verifyChecksums(b, ok(parseTcp(b)))).toBe('bad-tcp-checksum');
  });
});

describe('findOption', () => {
  const withOptions = (options: Uint8Array) => {
    const b = build(spec({ options }));
    return { b, p: ok(parseTcp(b)) };
  };

  it('finds an RFC 6994 option by kind and ExID', () => {
    const { b, p } = withOptions(hex('fd06beef 0102 fe047e55 fd047e55 01010101'));
    expect(findOption(b, p, 253)).toBe(40);
    expect(findOption(b, p, 253, 0xbeef)).toBe(40);
    expect(findOption(b, p, 253, EXID)).toBe(50);
    expect(findOption(b, p, 254, EXID)).toBe(46);
    expect(findOption(b, p, 254, 0xbeef)).toBe(-1);
    expect(findOption(b, p, 2, EXID)).toBe(-1); // only kinds 253/254 carry an ExID
  });

  it('skips an experimental option too short to hold an ExID', () => {
    const { b, p } = withOptions(hex('fd02 fd037e fd047e55 000000'));
    expect(findOption(b, p, 253, EXID)).toBe(45);
  });

  it('stops at EOL and finds EOL and NOP themselves', () => {
    const { b, p } = withOptions(hex('01 00 fd047e55 000000'));
    expect(findOption(b, p, 253, EXID)).toBe(-1);
    expect(findOption(b, p, 0)).toBe(41);
    expect(findOption(b, p, 1)).toBe(40);
  });

  it('returns -1 without reading past the buffer for a view that lies', () => {
    const { b, p } = withOptions(hex('02040000'));
    const lying = { ...p, tcpHeaderLength: 60 };
    expect(findOption(b.subarray(0, 44), lying, 8)).toBe(-1);
    expect(findOption(b, { ...p, tcpHeaderLength: 24 }, 2)).toBe(40);
  });
});
