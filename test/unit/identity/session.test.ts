import { createPrivateKey, createPublicKey, hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TesseraError } from '../../../src/errors.js';
import {
  createEphemeralKey,
  createKeyAgreement,
  createNonceSource,
  mac,
  macEqual,
  sessionKey,
  x25519PublicKey,
} from '../../../src/identity/index.js';

const vectors = JSON.parse(readFileSync(new URL('../../fixtures/identity/vectors.json', import.meta.url), 'utf8'));
const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** X25519 private KeyObject from a raw 32-byte scalar (PKCS#8 wrapping of RFC 8410). */
function x25519Private(raw: Uint8Array) {
  const der = Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), raw]);
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
}

describe('fixed test vectors (test/fixtures/identity/vectors.json)', () => {
  it('nonce', () => {
    for (const v of vectors.nonce) {
      const src = createNonceSource(hex(v.hostSecret));
      expect(toHex(src.nonce(v.label, v.parts.map(hex)))).toBe(v.nonce);
    }
  });

  it('x25519 (RFC 7748) agrees both ways', () => {
    const ka = createKeyAgreement();
    for (const v of vectors.x25519) {
      const alice = x25519Private(hex(v.alicePrivate));
      const bob = x25519Private(hex(v.bobPrivate));
      const alicePub = x25519PublicKey(hex(v.alicePublic));
      const bobPub = x25519PublicKey(hex(v.bobPublic));
      expect(toHex(ka.sharedSecret(alice, bobPub))).toBe(v.shared);
      expect(toHex(ka.sharedSecret(bob, alicePub))).toBe(v.shared);
      // The public key derived from the private scalar matches the vector too.
      const derived = createPublicKey(alice).export({ format: 'jwk' }) as { x: string };
      expect(Buffer.from(derived.x, 'base64url').toString('hex')).toBe(v.alicePublic);
    }
  });

  it('sessionKey (HKDF-SHA256)', () => {
    for (const v of vectors.sessionKey) {
      const k = sessionKey(hex(v.shared), hex(v.nonceC), hex(v.nonceS), Buffer.from(v.infoAscii, 'ascii'));
      expect(toHex(k)).toBe(v.key);
      expect(toHex(sessionKey(hex(v.shared), hex(v.nonceC), hex(v.nonceS), v.infoAscii))).toBe(v.key);
    }
  });

  it('mac (HMAC-SHA256 truncated to 16)', () => {
    for (const v of vectors.mac) {
      const m = mac(hex(v.key), v.parts.map(hex));
      expect(m.byteLength).toBe(16);
      expect(toHex(m)).toBe(v.mac);
    }
  });
});

describe('nonce source', () => {
  const src = createNonceSource(new Uint8Array(32).fill(7));
  it('is deterministic, 16 bytes, and depends on label and every part', () => {
    const parts = [new Uint8Array([1, 2, 3, 4]), new Uint8Array([5, 6])];
    const a = Buffer.from(src.nonce(0, parts));
    expect(a.length).toBe(16);
    expect(Buffer.from(src.nonce(0, parts)).equals(a)).toBe(true);
    expect(Buffer.from(src.nonce(1, parts)).equals(a)).toBe(false);
    expect(Buffer.from(src.nonce(0, [new Uint8Array([1, 2, 3, 4]), new Uint8Array([5, 7])])).equals(a)).toBe(false);
    expect(Buffer.from(createNonceSource(new Uint8Array(32).fill(8)).nonce(0, parts)).equals(a)).toBe(false);
  });
  it('earlier results are not overwritten by later calls (the input buffer is reused)', () => {
    const a = Buffer.from(src.nonce(3, [new Uint8Array(40).fill(1)]));
    const view = src.nonce(3, [new Uint8Array(40).fill(1)]);
    src.nonce(3, [new Uint8Array(600).fill(2)]); // forces the input buffer to grow
    expect(Buffer.from(view).equals(a)).toBe(true);
    expect(Buffer.from(src.nonce(3, [new Uint8Array(40).fill(1)])).equals(a)).toBe(true);
  });
  it('refuses a short secret and a label outside 0..255', () => {
    expect(() => createNonceSource(new Uint8Array(16))).toThrow(TesseraError);
    expect(() => src.nonce(256, [])).toThrow(expect.objectContaining({ code: 'TESSERA_ERR_INVALID_ARGUMENT' }));
    expect(() => src.nonce(-1, [])).toThrow(TesseraError);
  });
});

describe('ephemeral keys and agreement', () => {
  it('random pairs agree both sides; the cache hits on repeat and separates pairs', () => {
    const ka = createKeyAgreement({ cacheSize: 8 });
    const a = createEphemeralKey();
    const b = createEphemeralKey();
    const c = createEphemeralKey();
    expect(a.publicRaw.byteLength).toBe(32);
    const ab = Buffer.from(ka.sharedSecret(a.privateKey, x25519PublicKey(b.publicRaw)));
    const ba = Buffer.from(ka.sharedSecret(b.privateKey, a.publicKey));
    expect(ab.length).toBe(32);
    expect(ab.equals(ba)).toBe(true);
    expect(ka.stats()).toMatchObject({ hits: 0, misses: 2 });
    // The same key objects hit (the verifier hands out one KeyObject per cached token)...
    const bKey = x25519PublicKey(b.publicRaw);
    expect(Buffer.from(ka.sharedSecret(a.privateKey, bKey)).equals(ab)).toBe(true);
    expect(Buffer.from(ka.sharedSecret(a.privateKey, bKey)).equals(ab)).toBe(true);
    expect(ka.stats()).toMatchObject({ hits: 1, misses: 3 });
    // ...and another KeyObject for the same public key computes the same secret again.
    expect(Buffer.from(ka.sharedSecret(a.privateKey, b.publicKey)).equals(ab)).toBe(true);
    expect(ka.stats()).toMatchObject({ hits: 1, misses: 4 });
    const ac = Buffer.from(ka.sharedSecret(a.privateKey, c.publicKey));
    expect(ac.equals(ab)).toBe(false);
    expect(ka.stats().misses).toBe(5);
  });
  it('works with private keys it did not create, and bounds the cache', () => {
    const ka = createKeyAgreement({ cacheSize: 2 });
    const own = x25519Private(randomBytes(32));
    for (let i = 0; i < 5; i++) ka.sharedSecret(own, createEphemeralKey().publicKey);
    expect(ka.stats().size).toBeGreaterThan(0);
    expect(ka.stats().size).toBeLessThanOrEqual(2);
  });
  it('refuses a low-order peer key with a TesseraError', () => {
    const ka = createKeyAgreement();
    const zero = x25519PublicKey(new Uint8Array(32));
    expect(() => ka.sharedSecret(createEphemeralKey().privateKey, zero)).toThrow(
      expect.objectContaining({ code: 'TESSERA_ERR_TOKEN' }),
    );
  });
});

describe('sessionKey and mac', () => {
  it('session keys depend on both nonces in order and on info', () => {
    const s = new Uint8Array(32).fill(1);
    const n1 = new Uint8Array(16).fill(2);
    const n2 = new Uint8Array(16).fill(3);
    const k = Buffer.from(sessionKey(s, n1, n2, 'i'));
    expect(k.length).toBe(32);
    expect(Buffer.from(sessionKey(s, n2, n1, 'i')).equals(k)).toBe(false);
    expect(Buffer.from(sessionKey(s, n1, n2, 'j')).equals(k)).toBe(false);
  });
  it('equals crypto.hkdfSync for random inputs (the two-HMAC shortcut is exact for 32 bytes)', () => {
    for (let i = 0; i < 50; i++) {
      const s = randomBytes(32);
      const n1 = randomBytes(16);
      const n2 = randomBytes(16);
      const info = randomBytes(i);
      const want = Buffer.from(hkdfSync('sha256', s, Buffer.concat([n1, n2]), info, 32));
      expect(Buffer.from(sessionKey(s, n1, n2, info)).equals(want)).toBe(true);
    }
  });
  it('macEqual compares in constant time and treats lengths as unequal', () => {
    const m = mac(new Uint8Array(32), [new Uint8Array([1])]);
    expect(macEqual(m, Uint8Array.from(m))).toBe(true);
    const other = Uint8Array.from(m);
    other[15] = (other[15] as number) ^ 1;
    expect(macEqual(m, other)).toBe(false);
    expect(macEqual(m, m.subarray(0, 15))).toBe(false);
  });
});
