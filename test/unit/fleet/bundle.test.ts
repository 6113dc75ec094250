import { describe, expect, it } from 'vitest';
import { canonicalJson, nextRevision, peekRevision, signBundle, verifyBundle, type TrustPayload } from '../../../src/fleet/bundle.js';
import { createOperatorKey, operatorKeyToJson, operatorPublicToJson, parseOperatorKey, parseOperatorPublic } from '../../../src/fleet/operator-key.js';

const op = createOperatorKey();
const other = createOperatorKey();
const policy = { text: 'version: 1\n', source: 'p.yaml' };

function tamper(stored: string, edit: (body: Record<string, unknown>) => void): string {
  const env = JSON.parse(stored) as Record<string, string>;
  const body = JSON.parse(Buffer.from(env.body!, 'base64url').toString()) as Record<string, unknown>;
  edit(body);
  return JSON.stringify({ ...env, body: Buffer.from(JSON.stringify(body)).toString('base64url') });
}

describe('canonicalJson', () => {
  it('sorts keys at every depth and drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: undefined } })).toBe('{"a":{"d":[1,{"y":2,"z":1}]},"b":1}');
  });
  it('refuses what JSON cannot carry exactly', () => {
    expect(() => canonicalJson({ a: Number.NaN })).toThrow(/non-finite/);
    expect(() => canonicalJson({ a: () => 1 })).toThrow(/function/);
  });
});

describe('signed bundles', () => {
  it('verify with the operator key and carry kind, revision and payload', () => {
    const stored = signBundle(op, 'policy', 7, policy);
    const v = verifyBundle(stored, 'policy', [op], null);
    expect(v.ok).toBe(true);
    if (v.ok) {
      expect(v.bundle.revision).toBe(7);
      expect(v.bundle.payload).toEqual(policy);
      expect(v.bundle.keyId).toBe(op.keyId);
      expect(v.duplicate).toBe(false);
    }
  });

  it('refuse a changed body (bad signature)', () => {
    const stored = tamper(signBundle(op, 'policy', 7, policy), (b) => {
      (b.payload as { text: string }).text = 'allow everything';
    });
    expect(verifyBundle(stored, 'policy', [op], null)).toMatchObject({ ok: false, reason: 'bad-signature' });
  });

  it('refuse a signature by a key that is not trusted, and one made by another key under our key id', () => {
    expect(verifyBundle(signBundle(other, 'policy', 1, policy), 'policy', [op], null)).toMatchObject({ ok: false, reason: 'unknown-key' });
    const forged = JSON.parse(signBundle(other, 'policy', 1, policy)) as Record<string, string>;
    const asOurs = JSON.stringify({ ...forged, keyId: op.keyId });
    expect(verifyBundle(asOurs, 'policy', [op], null)).toMatchObject({ ok: false, reason: 'bad-signature' });
  });

  it('refuse a trust bundle stored where the policy belongs', () => {
    const trust: TrustPayload = { cas: [], revoked: [] };
    expect(verifyBundle(signBundle(op, 'trust', 3, trust), 'policy', [op], null)).toMatchObject({ ok: false, reason: 'wrong-kind' });
  });

  it('refuse rollback to an older revision and a different bundle under the applied revision', () => {
    const newer = verifyBundle(signBundle(op, 'policy', 10, policy), 'policy', [op], null);
    if (!newer.ok) throw new Error('should verify');
    const mark = { revision: 10, digest: newer.digest };
    expect(verifyBundle(signBundle(op, 'policy', 9, policy), 'policy', [op], mark)).toMatchObject({ ok: false, reason: 'rollback' });
    expect(verifyBundle(signBundle(op, 'policy', 10, { ...policy, text: 'other' }), 'policy', [op], mark)).toMatchObject({ ok: false, reason: 'equivocation' });
    expect(verifyBundle(signBundle(op, 'policy', 11, policy), 'policy', [op], mark)).toMatchObject({ ok: true, duplicate: false });
  });

  it('treat the same bundle again as a duplicate (a relist replays it)', () => {
    const stored = signBundle(op, 'policy', 4, policy);
    const first = verifyBundle(stored, 'policy', [op], null);
    if (!first.ok) throw new Error('should verify');
    expect(verifyBundle(stored, 'policy', [op], { revision: 4, digest: first.digest })).toMatchObject({ ok: true, duplicate: true });
  });

  it('refuse malformed stored values with a reason, never a throw', () => {
    for (const bad of ['', 'null', '[]', '{"format":"x"}', '{"format":"tessera-bundle/1","keyId":1}', Buffer.from([0xff, 0xfe])]) {
      const v = verifyBundle(bad, 'policy', [op], null);
      expect(v.ok).toBe(false);
    }
  });

  it('refuse a trust payload whose revoked entries are not certificate digests', () => {
    expect(() => signBundle(op, 'trust', 1, { cas: [], revoked: [{ host: 'a', certSha256: 'nope', at: 'now' }] })).toThrow(/certSha256/);
  });

  it('pick a push revision newer than the stored one and than the clock', () => {
    expect(nextRevision(null, 5_000_000)).toBe(5000);
    expect(nextRevision(4999, 5_000_000)).toBe(5000);
    expect(nextRevision(6000, 5_000_000)).toBe(6001);
  });

  it('peek the revision another key signed (rotation), ignoring absurd ones', () => {
    expect(peekRevision(signBundle(other, 'policy', 6000, policy), 5_000_000)).toBe(6000);
    expect(peekRevision(signBundle(other, 'policy', 5000 + 8 * 86400, policy), 5_000_000)).toBeNull();
    expect(peekRevision('{"body":"!!"}', 5_000_000)).toBeNull();
    expect(peekRevision('nope', 5_000_000)).toBeNull();
  });
});

describe('operator key files', () => {
  it('round-trip the private and public forms', () => {
    const k = parseOperatorKey(operatorKeyToJson(op));
    expect(k.keyId).toBe(op.keyId);
    const p = parseOperatorPublic(operatorPublicToJson(op));
    expect(verifyBundle(signBundle(k, 'policy', 1, policy), 'policy', [p], null).ok).toBe(true);
  });
  it('refuse a key id that does not match the key, and the wrong file type', () => {
    const j = JSON.parse(operatorPublicToJson(op)) as Record<string, unknown>;
    expect(() => parseOperatorPublic(JSON.stringify({ ...j, keyId: other.keyId }))).toThrow(/keyId/);
    expect(() => parseOperatorPublic(operatorKeyToJson(op))).toThrow(/right file/);
    expect(() => parseOperatorKey('{')).toThrow(/not valid JSON/);
  });
});
