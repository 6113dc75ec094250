// verify() is fed attacker bytes on the packet path: it must never throw, whatever arrives.
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTokenIssuer, createTokenVerifier, type TokenVerifier } from '../../../src/identity/index.js';
import { LABELS, NOW, bytes, world } from './helpers.js';

const REASONS = new Set(['malformed', 'bad-signature', 'untrusted-issuer', 'expired', 'not-yet-valid']);
let psk: { v: TokenVerifier; token: Uint8Array };
let ca: { v: TokenVerifier; token: Uint8Array };

beforeAll(async () => {
  const w = await world();
  const pu = { id: 'pu-1', labels: LABELS, epkPublicRaw: w.epk.publicRaw };
  psk = {
    v: createTokenVerifier({ mode: 'psk', psk: w.psk, now: () => NOW, cacheSize: 64 }),
    token: bytes(await createTokenIssuer({ mode: 'psk', hostId: 'host-a', psk: w.psk }).issue(pu, NOW, 300)),
  };
  ca = {
    v: createTokenVerifier({ mode: 'ca', caPublicJwk: w.ca.publicJwk, now: () => NOW, cacheSize: 64 }),
    token: bytes(await createTokenIssuer(w.hostA).issue(pu, NOW, 300)),
  };
});

/** Random edits of a valid token: byte flips, insertions, deletions, truncation, splices. */
function mutated(base: () => Uint8Array) {
  const edit = fc.oneof(
    fc.record({ kind: fc.constant('set' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant('b64' as const), at: fc.nat(), byte: fc.constantFrom(...bytes('AZaz09-_.=+/{}"')) }),
    fc.record({ kind: fc.constant('del' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 8 }) }),
    fc.record({ kind: fc.constant('ins' as const), at: fc.nat(), data: fc.uint8Array({ maxLength: 8 }) }),
    fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  );
  return fc.array(edit, { minLength: 1, maxLength: 4 }).map((edits) => {
    let t = Array.from(base());
    for (const e of edits) {
      const at = t.length === 0 ? 0 : e.at % t.length;
      if (e.kind === 'set' || e.kind === 'b64') t[at] = e.byte;
      else if (e.kind === 'del') t.splice(at, e.n);
      else if (e.kind === 'ins') t.splice(at, 0, ...e.data);
      else t = t.slice(0, at);
    }
    return Uint8Array.from(t);
  });
}

function neverThrows(get: () => { v: TokenVerifier; token: Uint8Array }, runs: number) {
  const input = fc.oneof(
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 1500 }) },
    { weight: 1, arbitrary: fc.string({ maxLength: 300 }).map((s) => new Uint8Array(Buffer.from(s))) },
    { weight: 4, arbitrary: mutated(() => get().token) },
  );
  fc.assert(
    fc.property(input, fc.nat(20), fc.nat(20), (b, off, cut) => {
      const { v, token } = get();
      const r = v.verify(b);
      if (!r.ok) expect(REASONS.has(r.reason)).toBe(true);
      else expect(Buffer.from(b).equals(Buffer.from(token))).toBe(true); // only the genuine token passes
      const r2 = v.verify(b, Math.min(off, b.length), Math.max(0, b.length - off - cut));
      expect(typeof r2.ok).toBe('boolean');
    }),
    { numRuns: runs, seed: 20250101 },
  );
}

describe('verify() never throws on random and mutated bytes', () => {
  it('PSK verifier, 12k inputs', () => neverThrows(() => psk, 12_000));
  it('CA verifier, 8k inputs', () => neverThrows(() => ca, 8_000), 120_000);
  it('the genuine tokens still verify after the fuzzing', () => {
    expect(psk.v.verify(psk.token).ok).toBe(true);
    expect(ca.v.verify(ca.token).ok).toBe(true);
  });
});
