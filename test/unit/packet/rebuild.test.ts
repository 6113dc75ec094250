import { describe, expect, it } from 'vitest';
import {
  parseTcp,
  verifyChecksums,
  findOption,
  rebuild,
  toReset,
  tcpChecksum,
  updateChecksum16,
  flowKey,
  flowHash,
  formatFlow,
  formatAddress,
  TCP_SYN,
  TCP_ACK,
  TCP_RST,
  type TcpPacket,
  type PacketError,
} from '../../../src/packet/index.js';
import { build, fixture, hex, toHex, refTcpChecksum, refChecksum, EXID, OUR_OPTION, type Spec } from './helpers.js';

function ok(r: TcpPacket | PacketError): TcpPacket {
  if (!r.ok) throw new Error(`expected a packet, got ${r.reason}: ${r.detail}`);
  return r;
}
function len(r: number | PacketError): number {
  if (typeof r !== 'number') throw new Error(`expected a length, got ${r.reason}: ${r.detail}`);
  return r;
}
function why(r: number | PacketError): string {
  return typeof r === 'number' ? 'ok' : r.reason;
}

const TOKEN = Uint8Array.from({ length: 600 }, (_, i) => (i * 7 + 3) & 0xff);
const V4 = { src: Uint8Array.of(10, 213, 1, 1), dst: Uint8Array.of(10, 213, 1, 2) };
function spec(over: Partial<Spec> = {}): Spec {
  return {
    family: 4, ...V4, sport: 40000, dport: 80, seq: 1, ack: 0, flags: TCP_SYN, window: 64240,
    options: hex('020405b4 0402 080a 01020304 00000000 01 030307'), payload: new Uint8Array(0), ...over,
  };
}

/** Attach our option + token to a packet, then strip both; returns the tagged packet too. */
function roundTrip(orig: Uint8Array, token = TOKEN) {
  const p = ok(parseTcp(orig));
  const tagged = new Uint8Array(2048);
  const n = len(rebuild(orig, p, { addOption: OUR_OPTION, append: token }, tagged));
  const tp = ok(parseTcp(tagged, n));
  expect(verifyChecksums(tagged, tp)).toBeNull();
  const at = findOption(tagged, tp, 253, EXID);
  expect(at).toBeGreaterThan(0);
  const back = new Uint8Array(2048);
  const m = len(rebuild(tagged, tp, { removeOptionAt: at, payloadLength: tp.payloadLength - token.length }, back));
  return { p, tp, tagged: tagged.subarray(0, n), back: back.subarray(0, m) };
}

describe('rebuild on real Linux handshakes', () => {
  for (const name of ['v4-01-syn', 'v4-02-syn-ack', 'v4-03-ack', 'v4-04-psh-ack-data4', 'v6-01-syn', 'v6-02-syn-ack', 'v6-03-ack', 'v6-04-psh-ack-data4']) {
    it(`${name}: adds our option and a token, strips them back to the identical packet`, () => {
      const orig = fixture(name);
      const { p, tp, tagged, back } = roundTrip(orig);
      expect(tp.tcpHeaderLength).toBe(p.tcpHeaderLength + 4);
      expect(tp.payloadLength).toBe(p.payloadLength + TOKEN.length);
      // The option goes after the last Linux option, with no padding (Linux fills 4-byte words).
      expect(findOption(tagged, tp, 253, EXID)).toBe(p.payloadOffset);
      expect(toHex(tagged.subarray(tp.payloadOffset + p.payloadLength))).toBe(toHex(TOKEN));
      expect(toHex(tagged.subarray(tp.payloadOffset, tp.payloadOffset + p.payloadLength))).toBe(toHex(orig.subarray(p.payloadOffset)));
      expect(toHex(back)).toBe(toHex(orig));
      // Everything but lengths, data offset and checksums is unchanged.
      expect({ ...tp, length: 0, tcpHeaderLength: 0, payloadOffset: 0, payloadLength: 0 }).toEqual({ ...p, length: 0, tcpHeaderLength: 0, payloadOffset: 0, payloadLength: 0 });
    });
  }

  it('a Linux SYN (20 option bytes) takes our option: 44 <= 60', () => {
    const { tp } = roundTrip(fixture('v4-01-syn'));
    expect(tp.tcpHeaderLength).toBe(44);
  });

  it('keeps IPv4 options and fixes the IPv4 header checksum and total length', () => {
    const orig = build(spec({ ipOptions: hex('94040000'), id: 0xbeef, ttl: 3 }));
    const { tagged, back } = roundTrip(orig);
    expect(toHex(tagged.subarray(20, 24))).toBe('94040000');
    expect(tagged[2]! * 256 + tagged[3]!).toBe(tagged.length);
    expect(refChecksum([...tagged.subarray(0, 24)])).toBe(0);
    expect(toHex(back)).toBe(toHex(orig));
  });

  it('sets the IPv6 payload length', () => {
    const { tagged } = roundTrip(fixture('v6-01-syn'));
    expect(tagged[4]! * 256 + tagged[5]!).toBe(tagged.length - 40);
  });
});

describe('rebuild option alignment', () => {
  const area = (b: Uint8Array, p: TcpPacket) => toHex(b.subarray(p.tcpOffset + 20, p.payloadOffset));
  const run = (options: string, edit: Parameters<typeof rebuild>[2]) => {
    const b = build(spec({ options: hex(options) }));
    const p = ok(parseTcp(b));
    const out = new Uint8Array(200);
    const n = len(rebuild(b, p, typeof edit.removeOptionAt === 'number' ? { ...edit, removeOptionAt: p.tcpOffset + 20 + edit.removeOptionAt } : edit, out));
    const q = ok(parseTcp(out, n));
    expect(verifyChecksums(out, q)).toBeNull();
    return area(out, q);
  };

  it('inserts before EOL padding and keeps the padding', () => {
    expect(run('02040101 030300 00', { addOption: OUR_OPTION })).toBe('02040101030300fd047e5500');
  });
  it('pads an odd-sized option with NOPs before it', () => {
    expect(run('', { addOption: hex('fd057e5501') })).toBe('010101fd057e5501');
    expect(run('020405b4', { addOption: hex('fd067e550102') })).toBe('020405b40101fd067e550102');
  });
  it('drops the NOPs before a removed option, or pads with EOL when there are none', () => {
    expect(run('010101fd057e5501', { removeOptionAt: 3 })).toBe('');
    expect(run('fd057e5501 030307', { removeOptionAt: 0 })).toBe('03030700');
    expect(run('020405b4 0402 080a 0102030400000000 01 030307', { removeOptionAt: 6 })).toBe('020405b40402010303070000');
  });
  it('removes and adds in one call', () => {
    expect(run('0101080a 01020304 05060708 fd047e55', { removeOptionAt: 12, addOption: hex('fd087e55aabbccdd') })).toBe('0101080a0102030405060708fd087e55aabbccdd');
  });
  it('no-option-space when the TCP header would exceed 60 bytes', () => {
    const b = build(spec({ options: hex('0101080a 01020304 05060708'.repeat(3) + '01010101') }));
    const p = ok(parseTcp(b));
    expect(p.tcpHeaderLength).toBe(60);
    const out = new Uint8Array(200);
    const r = rebuild(b, p, { addOption: OUR_OPTION }, out);
    expect(why(r)).toBe('no-option-space');
    // Removing a NOP does not make room (it is replaced by EOL padding); removing a timestamp does.
    expect(why(rebuild(b, p, { removeOptionAt: p.tcpOffset + 20, addOption: OUR_OPTION }, out))).toBe('no-option-space');
    expect(why(rebuild(b, p, { removeOptionAt: p.tcpOffset + 22, addOption: OUR_OPTION }, out))).toBe('ok');
    // 36 used bytes + 4: exactly full.
    const b36 = build(spec({ options: hex('0101080a 01020304 05060708'.repeat(3)) }));
    expect(why(rebuild(b36, ok(parseTcp(b36)), { addOption: OUR_OPTION }, out))).toBe('ok');
  });
});

describe('rebuild payload edits and limits', () => {
  const data = () => build(spec({ flags: TCP_ACK, options: hex('0101080a0102030405060708'), payload: Uint8Array.from([...'hello world'].map((c) => c.charCodeAt(0))) }));

  it('replaces, removes, truncates and appends payload', () => {
    const b = data();
    const p = ok(parseTcp(b));
    const out = new Uint8Array(300);
    const payloadOf = (n: number) => {
      const q = ok(parseTcp(out, n));
      expect(verifyChecksums(out, q)).toBeNull();
      return Buffer.from(out.subarray(q.payloadOffset, q.length)).toString();
    };
    expect(payloadOf(len(rebuild(b, p, { payload: Uint8Array.of(0x41, 0x42) }, out)))).toBe('AB');
    expect(payloadOf(len(rebuild(b, p, { payload: null }, out)))).toBe('');
    expect(payloadOf(len(rebuild(b, p, { payloadLength: 5 }, out)))).toBe('hello');
    expect(payloadOf(len(rebuild(b, p, { payloadLength: 5, append: Uint8Array.of(0x21) }, out)))).toBe('hello!');
    expect(payloadOf(len(rebuild(b, p, { payload: null, append: Uint8Array.of(0x21) }, out)))).toBe('!');
    expect(payloadOf(len(rebuild(b, p, {}, out)))).toBe('hello world');
  });

  it('too-large above maxLength or out.length, and writes nothing then', () => {
    const b = fixture('v4-01-syn');
    const p = ok(parseTcp(b));
    const out = new Uint8Array(2000).fill(0xaa);
    const token = new Uint8Array(1500 - 64); // the MTU budget of a Linux SYN + our option
    expect(why(rebuild(b, p, { addOption: OUR_OPTION, append: token, maxLength: 1500 }, out))).toBe('ok');
    out.fill(0xaa);
    const big = rebuild(b, p, { addOption: OUR_OPTION, append: new Uint8Array(1500 - 64 + 1), maxLength: 1500 }, out);
    expect(why(big)).toBe('too-large');
    expect(out.every((x) => x === 0xaa)).toBe(true);
    expect(why(rebuild(b, p, { append: token }, new Uint8Array(100)))).toBe('too-large');
    expect(why(rebuild(b, p, { append: new Uint8Array(65535 - 60 + 1) }, new Uint8Array(70000)))).toBe('too-large');
    expect(why(rebuild(b, p, { append: new Uint8Array(65535 - 60) }, new Uint8Array(70000)))).toBe('ok');
    expect(why(rebuild(b, p, {}, out))).toBe('ok');
    for (const maxLength of [NaN, -1, 59]) expect(why(rebuild(b, p, { maxLength }, out)), String(maxLength)).toBe('too-large');
    expect(why(rebuild(b, p, { maxLength: 60 }, out))).toBe('ok');
  });

  it('bad-edit for misuse instead of throwing', () => {
    const b = data();
    const p = ok(parseTcp(b));
    const out = new Uint8Array(300);
    expect(why(rebuild(b, p, { removeOptionAt: p.tcpOffset + 23 }, out))).toBe('bad-edit'); // inside the timestamp
    expect(why(rebuild(b, p, { removeOptionAt: 3 }, out))).toBe('bad-edit');
    expect(why(rebuild(b, p, { payloadLength: 12 }, out))).toBe('bad-edit');
    expect(why(rebuild(b, p, { payloadLength: -1 }, out))).toBe('bad-edit');
    expect(why(rebuild(b, p, { payloadLength: 1.5 }, out))).toBe('bad-edit');
    expect(why(rebuild(b, p, { addOption: hex('fd057e55') }, out))).toBe('bad-edit'); // length byte lies
    expect(why(rebuild(b, p, { addOption: hex('0101') }, out))).toBe('bad-edit');
    expect(why(rebuild(b, p, {}, b))).toBe('bad-edit'); // in place is not supported
    expect(why(rebuild(b, p, { append: out }, out))).toBe('bad-edit');
    expect(why(rebuild(b, p, { payload: out }, out))).toBe('bad-edit');
    // Adjacent views over one buffer are fine.
    const shared = new Uint8Array(600);
    shared.set(b);
    expect(why(rebuild(shared.subarray(0, b.length), p, {}, shared.subarray(b.length)))).toBe('ok');
    expect(toHex(shared.subarray(b.length, 2 * b.length))).toBe(toHex(b));
    expect(why(rebuild(b, { ...p, length: p.length + 1 }, {}, out))).toBe('bad-edit'); // stale view
  });
});

describe('toReset', () => {
  it('turns a real SYN-ACK into RST|ACK with the same addresses, ports, seq and ack', () => {
    for (const name of ['v4-02-syn-ack', 'v6-02-syn-ack']) {
      const b = fixture(name);
      const p = ok(parseTcp(b));
      const out = new Uint8Array(100);
      const n = toReset(b, p, out);
      expect(n).toBe(p.tcpOffset + 20);
      const r = ok(parseTcp(out, n as number));
      expect(verifyChecksums(out, r)).toBeNull();
      expect(r).toMatchObject({ family: p.family, srcPort: p.srcPort, dstPort: p.dstPort, seq: p.seq, ack: p.ack, flags: TCP_RST | TCP_ACK, window: 0, tcpHeaderLength: 20, payloadLength: 0 });
      expect(toHex(out.subarray(r.srcAddrOffset, r.srcAddrOffset + 2 * r.addrLength))).toBe(toHex(b.subarray(p.srcAddrOffset, p.srcAddrOffset + 2 * p.addrLength)));
    }
  });

  it('works in place and keeps IPv4 options, clears ECN', () => {
    const b = build(spec({ flags: TCP_SYN | TCP_ACK, ipOptions: hex('01010100'), payload: new Uint8Array(33) }));
    b[1] = 0x03; // ECN CE
    const p = ok(parseTcp(b));
    const n = toReset(b, p, b);
    expect(n).toBe(44);
    const r = ok(parseTcp(b, n as number));
    expect(verifyChecksums(b, r)).toBeNull();
    expect(b[1]).toBe(0);
    expect(toHex(b.subarray(20, 24))).toBe('01010100');
    expect(r.flags).toBe(TCP_RST | TCP_ACK);
  });

  it('is the same packet Linux sends for a closed port, up to the IP id', () => {
    // v4-12 is Linux's own RST|ACK for a SYN to a closed port: no options, window 0.
    const linux = ok(parseTcp(fixture('v4-12-rst-ack')));
    expect(linux).toMatchObject({ tcpHeaderLength: 20, window: 0, payloadLength: 0, flags: TCP_RST | TCP_ACK });
  });

  it('too-large when out cannot hold it', () => {
    const b = fixture('v4-02-syn-ack');
    const r = toReset(b, ok(parseTcp(b)), new Uint8Array(39));
    expect(typeof r === 'number' ? 'ok' : r.reason).toBe('too-large');
  });
});

describe('checksum helpers', () => {
  it('tcpChecksum equals the reference implementation and the captured value', () => {
    for (const name of ['v4-01-syn', 'v4-04-psh-ack-data4', 'v6-04-psh-ack-data4']) {
      const b = fixture(name);
      const p = ok(parseTcp(b));
      const onWire = b[p.tcpOffset + 16]! * 256 + b[p.tcpOffset + 17]!;
      expect(tcpChecksum(b, p)).toBe(onWire);
      expect(tcpChecksum(b, p)).toBe(refTcpChecksum(b, p.family, p.ipHeaderLength));
    }
  });

  it('updateChecksum16 (RFC 1624) matches a full recomputation', () => {
    const b = fixture('v4-02-syn-ack');
    const p = ok(parseTcp(b));
    const t = p.tcpOffset;
    const old = tcpChecksum(b, p);
    const oldWin = b[t + 14]! * 256 + b[t + 15]!;
    for (const win of [0, 1, 0xffff, 0x1234, oldWin]) {
      b[t + 14] = win >> 8;
      b[t + 15] = win & 0xff;
      expect(updateChecksum16(old, oldWin, win)).toBe(tcpChecksum(b, p));
    }
  });
});

describe('flow keys', () => {
  it('the SYN-ACK reversed has the key of the SYN; directions differ', () => {
    for (const fam of ['v4', 'v6']) {
      const syn = fixture(`${fam}-01-syn`);
      const synAck = fixture(`${fam}-02-syn-ack`);
      const ps = ok(parseTcp(syn));
      const pa = ok(parseTcp(synAck));
      expect(flowKey(synAck, pa, true)).toBe(flowKey(syn, ps));
      expect(flowKey(synAck, pa)).not.toBe(flowKey(syn, ps));
      expect(flowHash(synAck, pa, true)).toBe(flowHash(syn, ps));
      expect(flowHash(synAck, pa)).not.toBe(flowHash(syn, ps));
      expect(flowKey(syn, ps).length).toBe(fam === 'v4' ? 12 : 36);
      expect(flowHash(syn, ps)).toBeGreaterThanOrEqual(0);
    }
  });

  it('keys differ when only a port differs', () => {
    const a = build(spec({ sport: 1000 }));
    const b = build(spec({ sport: 1001 }));
    expect(flowKey(a, ok(parseTcp(a)))).not.toBe(flowKey(b, ok(parseTcp(b))));
  });

  it('formats flows and RFC 5952 addresses', () => {
    const s = fixture('v4-01-syn');
    expect(formatFlow(s, ok(parseTcp(s)))).toMatch(/^10\.213\.231\.1:\d+ > 10\.213\.231\.2:8080$/);
    const s6 = fixture('v6-01-syn');
    expect(formatFlow(s6, ok(parseTcp(s6)))).toMatch(/^\[::1\]:\d+ > \[::1\]:8080$/);
    expect(formatAddress(hex('20010db8000000000001000000000001'), 0, 16)).toBe('2001:db8::1:0:0:1');
    expect(formatAddress(hex('20010db8000100000000000000000000'), 0, 16)).toBe('2001:db8:1::');
    expect(formatAddress(hex('00000000000000000000000000000000'), 0, 16)).toBe('::');
    expect(formatAddress(hex('20010db8000100010001000100010001'), 0, 16)).toBe('2001:db8:1:1:1:1:1:1');
    expect(formatAddress(hex('20010000000000010000000000000001'), 0, 16)).toBe('2001:0:0:1::1');
  });
});
