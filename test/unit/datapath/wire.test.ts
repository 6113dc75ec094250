// The wire format's test vectors (docs/protocol.md, "Test vectors") and its decoder's
// refusal of anything malformed.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BlockType, decodeBlock, encodeBlock, blockLength, type Block } from '../../../src/datapath/handshake/wire.js';

const seq = (from: number, n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => from + i);
const tok = new TextEncoder().encode('tok');
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function encode(block: Block): Uint8Array {
  const out = new Uint8Array(4096);
  return out.slice(0, encodeBlock(block, out));
}

const VECTORS: Array<[string, Block, string]> = [
  ['SYN', { type: BlockType.Syn, nonceC: seq(0, 16), token: tok }, '000102030405060708090a0b0c0d0e0f' + '0003' + '746f6b' + '01010019'],
  ['SYN-ACK', { type: BlockType.SynAck, nonceS: seq(0x10, 16), macS: seq(0x20, 16), token: tok }, '101112131415161718191a1b1c1d1e1f' + '202122232425262728292a2b2c2d2e2f' + '0003' + '746f6b' + '01020029'],
  ['ACK', { type: BlockType.Ack, macC: seq(0x20, 16) }, '202122232425262728292a2b2c2d2e2f' + '01030014'],
];

describe('handshake block wire format', () => {
  for (const [name, block, expected] of VECTORS) {
    it(`encodes the ${name} vector of docs/protocol.md`, () => {
      const bytes = encode(block);
      expect(hex(bytes)).toBe(expected);
      expect(bytes.length).toBe(blockLength(block.type, tok.length));
      const decoded = decodeBlock(bytes);
      expect(decoded).not.toBeTypeOf('string');
      if (typeof decoded !== 'string') {
        expect(decoded.keptPayload).toBe(0);
        expect(decoded.block).toEqual(block);
      }
    });
  }

  it('finds the block behind application data in the same payload', () => {
    const data = new TextEncoder().encode('GET / HTTP/1.0\r\n\r\n');
    const block = encode(VECTORS[2]![1]);
    const payload = new Uint8Array([...data, ...block]);
    const d = decodeBlock(payload);
    expect(typeof d === 'string' ? d : d.keptPayload).toBe(data.length);
  });

  it('refuses truncated, oversized and inconsistent blocks', () => {
    const good = encode(VECTORS[0]![1]);
    expect(decodeBlock(good.slice(0, 3))).toBe('no-block');
    expect(decodeBlock(good.slice(1))).toBe('bad-block'); // length claims more than present
    const badVersion = good.slice();
    badVersion[badVersion.length - 4] = 2;
    expect(decodeBlock(badVersion)).toBe('bad-version');
    const badType = good.slice();
    badType[badType.length - 3] = 9;
    expect(decodeBlock(badType)).toBe('bad-block');
    const badTokenLength = good.slice();
    badTokenLength[17] = 200;
    expect(decodeBlock(badTokenLength)).toBe('bad-block');
  });

  it('never throws and never returns views outside the input, for any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const d = decodeBlock(bytes);
        if (typeof d === 'string') return;
        expect(d.keptPayload).toBeGreaterThanOrEqual(0);
        const tokenLength = d.block.type === BlockType.Ack ? 0 : d.block.token.length;
        if (d.block.type !== BlockType.Ack) expect(tokenLength).toBeGreaterThan(0);
        else expect(d.block.macC.length).toBe(16);
        expect(d.keptPayload + blockLength(d.block.type, tokenLength)).toBe(bytes.length);
      }),
      { numRuns: 20_000 },
    );
  });
});
