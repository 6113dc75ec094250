// The tokens' optional `hk` claim (protocol v2): issued and verified when given, absent from
// older tokens without breaking them, refused when malformed.

import { describe, expect, it } from 'vitest';
import { createEphemeralKey, createSecret, createTokenIssuer, createTokenVerifier } from '../../../../src/identity/index.js';
import { rawHs256 } from '../../identity/helpers.js';

describe('token hk claim', () => {
  const psk = createSecret();
  const issuer = createTokenIssuer({ mode: 'psk', hostId: 'host-b', psk });
  const verifier = createTokenVerifier({ mode: 'psk', psk });
  const epk = createEphemeralKey();
  const hk = createEphemeralKey().publicRaw;
  const now = Math.floor(Date.now() / 1000);

  it('is signed into the token and decoded by the verifier', async () => {
    const t = await issuer.issue({ id: 'db', labels: ['app=db'], epkPublicRaw: epk.publicRaw, hostKeyRaw: hk }, now, 600);
    const v = verifier.verify(new Uint8Array(Buffer.from(t)));
    expect(v.ok).toBe(true);
    if (v.ok) {
      expect(Buffer.from(v.hostKey!).equals(Buffer.from(hk))).toBe(true);
      expect(v.claims.hk).toBe(Buffer.from(hk).toString('base64url'));
      expect(v.validUntil).toBe(now + 600);
    }
  });

  it('is optional: a token without it verifies as before, with hostKey null', async () => {
    const t = await issuer.issue({ id: 'db', labels: ['app=db'], epkPublicRaw: epk.publicRaw }, now, 600);
    const v = verifier.verify(new Uint8Array(Buffer.from(t)));
    expect(v.ok && v.hostKey).toBe(null);
    expect(v.ok && 'hk' in v.claims).toBe(false);
  });

  it('a malformed hk is refused malformed; the issuer refuses a key that is not 32 bytes', async () => {
    const claims = { iss: 'host-b', sub: 'db', lbl: ['app=db'], epk: Buffer.from(epk.publicRaw).toString('base64url'), iat: now, exp: now + 600, v: 1 };
    for (const bad of ['abc', 42, Buffer.alloc(31).toString('base64url')]) {
      const t = rawHs256(psk, { alg: 'HS256' }, { ...claims, hk: bad });
      expect(verifier.verify(new Uint8Array(Buffer.from(t)))).toEqual({ ok: false, reason: 'malformed' });
    }
    await expect(issuer.issue({ id: 'db', labels: [], epkPublicRaw: epk.publicRaw, hostKeyRaw: new Uint8Array(31) }, now, 600)).rejects.toThrow(/32-byte/);
  });
});
