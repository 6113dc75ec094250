// Property-based tests (fast-check): round trip of attach/strip, checksums after any edit,
// and no exception on arbitrary or mutated bytes. Seeds are random per run; a failure prints
// the seed and the shrunk counterexample to replay.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseTcp, verifyChecksums, findOption, rebuild, toReset, tcpChecksum, flowKey, flowHash, type TcpPacket } from '../../../src/packet/index.js';
import { build, specArb, ourOptionArb, optionsArb, refTcpChecksum, toHex, EXID, OUR_OPTION, loadFixtures } from './helpers.js';

const out1 = new Uint8Array(70000);
const out2 = new Uint8Array(70000);

function mustParse(b: Uint8Array, n?: number): TcpPacket {
  const p = parseTcp(b, n);
  if (!p.ok) throw new Error(`${p.reason}: ${p.detail}`);
  return p;
}

describe('packet properties', () => {
  it('parseTcp reads back every field of a generated packet', () => {
    fc.assert(
      fc.property(specArb, (s) => {
        const b = build(s);
        const p = mustParse(b);
        const ipHL = s.family === 4 ? 20 + (s.ipOptions?.length ?? 0) : 40;
        expect(p).toEqual({
          ok: true, family: s.family, length: b.length, ipHeaderLength: ipHL, tcpOffset: ipHL,
          tcpHeaderLength: 20 + s.options.length, payloadOffset: ipHL + 20 + s.options.length, payloadLength: s.payload.length,
          srcAddrOffset: s.family === 4 ? 12 : 8, dstAddrOffset: s.family === 4 ? 16 : 24, addrLength: s.family === 4 ? 4 : 16,
          srcPort: s.sport, dstPort: s.dport, seq: s.seq, ack: s.ack, flags: s.flags, window: s.window,
        });
        expect(verifyChecksums(b, p)).toBeNull();
        expect(tcpChecksum(b, p)).toBe(refTcpChecksum(b, p.family, p.ipHeaderLength));
      }),
      { numRuns: 1000 },
    );
  });

  it('attach (option + appended token) then strip gives back the identical packet', () => {
    fc.assert(
      fc.property(specArb, ourOptionArb, fc.uint8Array({ maxLength: 700 }), (s, opt, token) => {
        const orig = build(s);
        const p = mustParse(orig);
        const r = rebuild(orig, p, { addOption: opt, append: token }, out1);
        // Space needed: used options (up to EOL) + NOP padding + option + the EOL tail kept.
        if (typeof r !== 'number') {
          expect(r.reason).toBe('no-option-space');
          expect(s.options.length + opt.length + ((4 - (opt.length % 4)) % 4)).toBeGreaterThan(40);
          return;
        }
        const tp = mustParse(out1, r);
        expect(verifyChecksums(out1, tp)).toBeNull();
        expect(tp.tcpHeaderLength % 4).toBe(0);
        expect(toHex(out1.subarray(r - token.length, r))).toBe(toHex(token));
        const at = findOption(out1, tp, 253, EXID);
        expect(at).toBeGreaterThan(0);
        expect(toHex(out1.subarray(at, at + opt.length))).toBe(toHex(opt));
        const n = rebuild(out1, tp, { removeOptionAt: at, payloadLength: tp.payloadLength - token.length }, out2);
        expect(typeof n).toBe('number');
        expect(toHex(out2.subarray(0, n as number))).toBe(toHex(orig));
      }),
      { numRuns: 1500 },
    );
  });

  it('every successful rebuild yields a packet that parses with valid checksums', () => {
    const editArb = fc.record(
      {
        removeIndex: fc.nat(20),
        addOption: fc.option(fc.oneof(ourOptionArb, optionsArb.filter((o) => o.length >= 2 && o[0]! >= 2 && o[1] === o.length)), { nil: undefined }),
        payload: fc.option(fc.option(fc.uint8Array({ maxLength: 300 }), { nil: null }), { nil: undefined }),
        payloadCut: fc.option(fc.nat(800), { nil: undefined }),
        append: fc.option(fc.uint8Array({ maxLength: 300 }), { nil: undefined }),
        maxLength: fc.option(fc.integer({ min: 0, max: 2000 }), { nil: undefined }),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(specArb, editArb, (s, e) => {
        const b = build(s);
        const p = mustParse(b);
        // Pick the n-th option start, if any, to remove.
        const starts: number[] = [];
        for (let i = p.tcpOffset + 20; i < p.payloadOffset && b[i] !== 0; i += b[i] === 1 ? 1 : b[i + 1]!) starts.push(i);
        const removeOptionAt = starts.length > 0 && e.removeIndex !== undefined ? starts[e.removeIndex % starts.length] : undefined;
        const payloadLength = e.payloadCut === undefined ? undefined : Math.min(e.payloadCut, p.payloadLength);
        const r = rebuild(b, p, { removeOptionAt, addOption: e.addOption, payload: e.payload, payloadLength, append: e.append, maxLength: e.maxLength }, out1);
        if (typeof r !== 'number') {
          expect(['no-option-space', 'too-large']).toContain(r.reason);
          return;
        }
        if (e.maxLength !== undefined) expect(r).toBeLessThanOrEqual(e.maxLength);
        const q = mustParse(out1, r);
        expect(verifyChecksums(out1, q)).toBeNull();
        expect(tcpChecksum(out1, q)).toBe(refTcpChecksum(out1, q.family, q.ipHeaderLength, r));
        expect([q.srcPort, q.dstPort, q.seq, q.ack, q.flags]).toEqual([p.srcPort, p.dstPort, p.seq, p.ack, p.flags]);
        const reset = toReset(out1, q, out2);
        expect(verifyChecksums(out2, mustParse(out2, reset as number))).toBeNull();
      }),
      { numRuns: 1500 },
    );
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.option(fc.integer({ min: -2, max: 250 }), { nil: undefined }), (bytes, n) => {
        exercise(bytes, n);
      }),
      { numRuns: 5000 },
    );
  });

  it('never throws on mutated valid packets (and on real ones)', () => {
    const bases = [...loadFixtures().map((f) => f.bytes)];
    const baseArb = fc.oneof(fc.constantFrom(...bases), specArb.map(build));
    const mutation = fc.record({ at: fc.nat(), value: fc.nat(255), mode: fc.constantFrom('set', 'xor', 'inc') });
    let parsedOk = 0;
    fc.assert(
      fc.property(baseArb, fc.array(mutation, { minLength: 1, maxLength: 4 }), fc.option(fc.nat(), { nil: undefined }), (base, muts, cut) => {
        const b = new Uint8Array(base);
        // Bias mutations to the headers, where the parser decides.
        for (const m of muts) {
          const i = m.at % Math.min(b.length, m.at % 3 === 0 ? b.length : 80);
          b[i] = m.mode === 'set' ? m.value : m.mode === 'xor' ? b[i]! ^ (1 << (m.value & 7)) : (b[i]! + 1) & 0xff;
        }
        const view = cut === undefined ? b : b.subarray(0, cut % (b.length + 1));
        if (exercise(view)) parsedOk++;
      }),
      { numRuns: 20000 },
    );
    // The mutations must leave many packets parseable, or the rewrite paths go untested.
    expect(parsedOk).toBeGreaterThan(2000);
  });
});

/** Run the whole API on untrusted bytes; returns whether they parsed. Any throw fails the property. */
function exercise(bytes: Uint8Array, n?: number): boolean {
  const p = parseTcp(bytes, n);
  if (!p.ok) {
    expect(typeof p.reason).toBe('string');
    return false;
  }
  expect(p.length).toBeLessThanOrEqual(bytes.length);
  expect(p.payloadOffset + p.payloadLength).toBe(p.length);
  verifyChecksums(bytes, p);
  for (const k of [0, 1, 2, 8, 253]) {
    const at = findOption(bytes, p, k, k === 253 ? EXID : undefined);
    expect(at === -1 || (at >= p.tcpOffset + 20 && at < p.payloadOffset)).toBe(true);
  }
  const first = p.tcpOffset + 20 < p.payloadOffset ? p.tcpOffset + 20 : undefined;
  const r = rebuild(bytes, p, { removeOptionAt: first, addOption: OUR_OPTION, append: bytes.subarray(0, 16) }, out1);
  if (typeof r === 'number') expect(verifyChecksums(out1, mustParse(out1, r))).toBeNull();
  toReset(bytes, p, out2);
  flowKey(bytes, p, true);
  flowHash(bytes, p);
  return true;
}
