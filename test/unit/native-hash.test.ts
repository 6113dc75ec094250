// The addon's SHA-256 and HMAC-SHA256 (native/src/hash.c), which the datapath workers use in
// place of node:crypto: the same bytes for every key and message length that matters (keys
// shorter than, equal to and longer than a block; empty and multi-block messages), and a
// TypeError for arguments that are not byte arrays or an output that is too short.
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadNative } from '../../src/datapath/native.js';
import { NODE_DIGESTS } from '../../src/identity/index.js';

const native = loadNative();

describe('native digests', () => {
  it('hmacSha256 equals node:crypto for keys and messages of every relevant size', () => {
    const out = new Uint8Array(32);
    let checked = 0;
    for (const keyLen of [0, 1, 16, 32, 63, 64, 65, 100, 200]) {
      for (const msgLen of [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000]) {
        const key = randomBytes(keyLen);
        const msg = randomBytes(msgLen);
        native.hmacSha256(key, msg, out);
        expect(Buffer.from(out).toString('hex')).toBe(createHmac('sha256', key).update(msg).digest('hex'));
        checked++;
      }
    }
    expect(checked).toBe(90);
  });
  it('sha256 equals node:crypto, and the RFC 4231 test case 2 HMAC matches', () => {
    const out = new Uint8Array(40);
    for (const n of [0, 3, 64, 900, 5000]) {
      const m = randomBytes(n);
      native.sha256(m, out);
      expect(Buffer.from(out.subarray(0, 32)).toString('hex')).toBe(createHash('sha256').update(m).digest('hex'));
    }
    native.hmacSha256(Buffer.from('Jefe'), Buffer.from('what do ya want for nothing?'), out);
    expect(Buffer.from(out.subarray(0, 32)).toString('hex')).toBe('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  });
  it('writes into views at an offset and agrees with the reference Digests', () => {
    const big = new Uint8Array(100);
    const view = big.subarray(10, 42);
    const key = randomBytes(32);
    const msg = randomBytes(70).subarray(3, 60);
    native.hmacSha256(key, msg, view);
    const ref = new Uint8Array(32);
    NODE_DIGESTS.hmacSha256(key, msg, ref);
    expect(Buffer.from(view).equals(Buffer.from(ref))).toBe(true);
    expect(big.subarray(0, 10).every((b) => b === 0) && big.subarray(42).every((b) => b === 0)).toBe(true);
  });
  it('refuses non-byte arguments and short outputs with a TypeError', () => {
    const out = new Uint8Array(32);
    expect(() => native.hmacSha256('key' as unknown as Uint8Array, out, out)).toThrow(TypeError);
    expect(() => native.hmacSha256(out, new Uint16Array(4) as unknown as Uint8Array, out)).toThrow(/data must be a Uint8Array/);
    expect(() => native.sha256(out, new Uint8Array(31))).toThrow(/at least 32 bytes/);
    expect(() => (native.sha256 as unknown as (a: Uint8Array) => void)(out)).toThrow(TypeError);
  });
});
