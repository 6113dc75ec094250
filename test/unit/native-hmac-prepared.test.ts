// The addon's prepared HMAC keys (native/src/hash.c hmacPrepare/hmacPrepared), which protocol
// v2 uses for its pair keys: the same bytes as node:crypto for every key and message length
// that matters, whatever state bytes it is handed (a forged state gives a wrong MAC, never a
// crash), and preparedMac()'s fallback when the digests have no prepared keys.
import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadNative } from '../../src/datapath/native.js';
import { NODE_DIGESTS } from '../../src/identity/index.js';
import { preparedMac } from '../../src/identity/session.js';

const native = loadNative();

describe('prepared HMAC keys', () => {
  it('hmacPrepared equals node:crypto for keys and messages of every relevant size', () => {
    const out = new Uint8Array(32);
    const state = new Uint8Array(native.hmacStateBytes!);
    let checked = 0;
    for (const keyLen of [0, 1, 16, 32, 63, 64, 65, 200]) {
      const key = randomBytes(keyLen);
      native.hmacPrepare!(key, state);
      for (const msgLen of [0, 1, 44, 52, 55, 56, 63, 64, 65, 1000]) {
        const msg = randomBytes(msgLen);
        native.hmacPrepared!(state, msg, out);
        expect(Buffer.from(out).toString('hex')).toBe(createHmac('sha256', key).update(msg).digest('hex'));
        checked++;
      }
    }
    expect(checked).toBe(80);
  });
  it('refuses short states and outputs with a TypeError, and survives forged states', () => {
    const out = new Uint8Array(32);
    expect(() => native.hmacPrepare!(randomBytes(32), new Uint8Array(8))).toThrow(TypeError);
    expect(() => native.hmacPrepared!(new Uint8Array(8), randomBytes(8), out)).toThrow(TypeError);
    expect(() => native.hmacPrepared!(new Uint8Array(native.hmacStateBytes!), randomBytes(8), new Uint8Array(16))).toThrow(TypeError);
    let ran = 0;
    for (let i = 0; i < 50; i++) {
      native.hmacPrepared!(new Uint8Array(randomBytes(native.hmacStateBytes!)), randomBytes(i * 7), out);
      ran++;
    }
    native.hmacPrepared!(new Uint8Array(native.hmacStateBytes!).fill(0xff), randomBytes(100), out);
    expect(ran).toBe(50);
  });
  it('preparedMac gives the same MAC with the addon and with node:crypto (no prepared keys)', () => {
    const key = randomBytes(32);
    const msg = randomBytes(52);
    const a = new Uint8Array(32);
    const b = new Uint8Array(32);
    preparedMac(key, native).mac(msg, a);
    preparedMac(key, NODE_DIGESTS).mac(msg, b);
    expect(Buffer.from(a).toString('hex')).toBe(createHmac('sha256', key).update(msg).digest('hex'));
    expect(Buffer.from(b).toString('hex')).toBe(Buffer.from(a).toString('hex'));
  });
});
