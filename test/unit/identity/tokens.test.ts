import { createHash, createPublicKey } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  MAX_TOKEN_BYTES,
  createTokenIssuer,
  createTokenVerifier,
  issueHostCertificate,
  type TokenVerifier,
  type VerifyResult,
} from '../../../src/identity/index.js';
import { LABELS, NOW, b64json, bytes, rawHs256, caHost, claimsFor, signCa, signPsk, unb64json, withSegment, world } from './helpers.js';

type World = Awaited<ReturnType<typeof world>>;
let w: World;
let clock = NOW;
const now = () => clock;
beforeAll(async () => {
  w = await world();
});

const reason = (r: VerifyResult) => (r.ok ? 'ok' : r.reason);
const pskVerifier = (opts: Partial<{ psk: Uint8Array | Uint8Array[]; cacheSize: number; clockSkewSeconds: number }> = {}): TokenVerifier =>
  createTokenVerifier({ mode: 'psk', psk: opts.psk ?? w.psk, now, cacheSize: opts.cacheSize ?? 16, clockSkewSeconds: opts.clockSkewSeconds ?? 30 });
const caVerifier = (opts: Partial<{ cacheSize: number }> = {}): TokenVerifier =>
  createTokenVerifier({ mode: 'ca', caPublicJwk: w.ca.publicJwk, now, cacheSize: opts.cacheSize ?? 16 });

async function pskToken(over: { labels?: string[]; id?: string; ttl?: number; at?: number } = {}): Promise<string> {
  return createTokenIssuer({ mode: 'psk', hostId: 'host-a', psk: w.psk }).issue(
    { id: over.id ?? 'pu-1', labels: over.labels ?? LABELS, epkPublicRaw: w.epk.publicRaw },
    over.at ?? NOW,
    over.ttl ?? 300,
  );
}
async function caToken(over: { labels?: string[]; id?: string; ttl?: number; at?: number; host?: World['hostA'] } = {}): Promise<string> {
  return createTokenIssuer(over.host ?? w.hostA).issue(
    { id: over.id ?? 'pu-1', labels: over.labels ?? LABELS, epkPublicRaw: w.epk.publicRaw },
    over.at ?? NOW,
    over.ttl ?? 300,
  );
}

describe.each(['psk', 'ca'] as const)('%s mode round trip', (mode) => {
  const issue = (o?: Parameters<typeof pskToken>[0]) => (mode === 'psk' ? pskToken(o) : caToken(o));
  const verifier = () => (mode === 'psk' ? pskVerifier() : caVerifier());

  it('verifies what it issued, with canonical claims, epk key and token hash', async () => {
    clock = NOW;
    const token = await issue({ labels: ['tier=web', 'app=nginx', '@sys:image=busybox'] });
    const r = verifier().verify(bytes(token));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.claims).toEqual({
      iss: 'host-a',
      sub: 'pu-1',
      lbl: ['@sys:image=busybox', 'app=nginx', 'tier=web'],
      epk: Buffer.from(w.epk.publicRaw).toString('base64url'),
      iat: NOW,
      exp: NOW + 300,
      v: 1,
    });
    expect(Buffer.from(r.tokenHash).equals(createHash('sha256').update(token).digest())).toBe(true);
    const x = (r.epkKey.export({ format: 'jwk' }) as { x: string }).x;
    expect(Buffer.from(x, 'base64url').equals(Buffer.from(w.epk.publicRaw))).toBe(true);
    expect(r.epkKey.asymmetricKeyType).toBe('x25519');
  });

  it('verifies a token inside a larger buffer through offset and length', async () => {
    clock = NOW;
    const token = await issue();
    const buf = new Uint8Array(token.length + 20).fill(0x41);
    buf.set(bytes(token), 7);
    const v = verifier();
    expect(reason(v.verify(buf, 7, token.length))).toBe('ok');
    expect(reason(v.verify(buf, 6, token.length))).toBe('malformed');
    expect(reason(v.verify(buf, 7, token.length + 1))).toBe('malformed');
    expect(reason(v.verify(buf, 7, 10_000))).toBe('malformed');
    expect(reason(v.verify(buf, -1))).toBe('malformed');
  });

  it('tampered payload -> bad-signature', async () => {
    clock = NOW;
    const token = await issue();
    const parts = token.split('.');
    const claims = unb64json(parts[1]!);
    claims.lbl = ['app=admin', 'env=prod', 'team=core', 'tier=web'];
    expect(reason(verifier().verify(bytes(withSegment(token, 1, b64json(claims)))))).toBe('bad-signature');
  });

  it('tampered header -> bad-signature', async () => {
    clock = NOW;
    const token = await issue();
    const header = unb64json(token.split('.')[0]!);
    header.kid = 'x';
    expect(reason(verifier().verify(bytes(withSegment(token, 0, b64json(header)))))).toBe('bad-signature');
  });

  it('tampered signature -> bad-signature', async () => {
    clock = NOW;
    const token = await issue();
    const sig = Buffer.from(token.split('.')[2]!, 'base64url');
    sig[5] = (sig[5] as number) ^ 0x01;
    expect(reason(verifier().verify(bytes(withSegment(token, 2, sig.toString('base64url')))))).toBe('bad-signature');
  });

  it('expiry and not-before honour the clock skew exactly', async () => {
    const token = bytes(await issue({ at: NOW, ttl: 300 }));
    const v = verifier(); // skew 30 s
    clock = NOW + 300 + 29;
    expect(reason(v.verify(token))).toBe('ok');
    clock = NOW + 300 + 30;
    expect(reason(v.verify(token))).toBe('expired');
    clock = NOW - 30;
    expect(reason(v.verify(token))).toBe('ok');
    clock = NOW - 31;
    expect(reason(v.verify(token))).toBe('not-yet-valid');
    // A fresh verifier whose first sight of the token is already too late says the same.
    clock = NOW + 10_000;
    expect(reason(verifier().verify(token))).toBe('expired');
    clock = NOW - 10_000;
    expect(reason(verifier().verify(token))).toBe('not-yet-valid');
    clock = NOW;
  });

  it('cache hits return the identical result and recheck expiry on every hit', async () => {
    clock = NOW;
    const token = bytes(await issue({ ttl: 60 }));
    const v = verifier();
    const first = v.verify(token);
    const second = v.verify(Uint8Array.from(token)); // other buffer, same bytes
    expect(first.ok).toBe(true);
    expect(second).toBe(first);
    expect(v.verifyStats()).toMatchObject({ hits: 1, misses: 1, cacheSize: 1 });
    clock = NOW + 60 + 30;
    expect(reason(v.verify(token))).toBe('expired');
    expect(v.verifyStats()).toMatchObject({ hits: 2, misses: 1 });
    expect(v.verifyStats().rejected.expired).toBe(1);
    clock = NOW;
    expect(v.verify(token)).toBe(first);
  });

  it('the cache stays within its bound', async () => {
    clock = NOW;
    const v = mode === 'psk' ? pskVerifier({ cacheSize: 2 }) : caVerifier({ cacheSize: 2 });
    for (let i = 0; i < 5; i++) expect(reason(v.verify(bytes(await issue({ id: `pu-${i}` }))))).toBe('ok');
    expect(v.verifyStats().cacheSize).toBeGreaterThan(0);
    expect(v.verifyStats().cacheSize).toBeLessThanOrEqual(2);
    expect(v.verifyStats().misses).toBe(5);
  });

  it('a forged token sent again is refused from the negative cache, with the same reason and no verification', async () => {
    clock = NOW;
    const token = await issue();
    const sig = Buffer.from(token.split('.')[2]!, 'base64url');
    sig[5] = (sig[5] as number) ^ 0x01;
    const forged = bytes(withSegment(token, 2, sig.toString('base64url')));
    const v = verifier();
    expect(v.cached(forged)).toBeNull(); // nothing known yet: only a verification can tell
    for (let i = 0; i < 10; i++) expect(reason(v.verify(Uint8Array.from(forged)))).toBe('bad-signature');
    expect(v.verifyStats()).toMatchObject({ misses: 1, negativeHits: 9, negativeCacheSize: 1, cacheSize: 0 });
    expect(reason(v.cached(forged)!)).toBe('bad-signature');
    // The genuine token (its own signature segment) is not refused by the forgery's entry.
    const good = bytes(token);
    expect(v.cached(good)).toBeNull();
    expect(reason(v.verify(good))).toBe('ok');
    expect(v.cached(good)).toMatchObject({ ok: true });
    expect(v.verifyStats()).toMatchObject({ misses: 2, hits: 1 });
  });

  it('the negative cache stays within its bound and never evicts verified tokens', async () => {
    clock = NOW;
    const good = bytes(await issue());
    const v =
      mode === 'psk'
        ? createTokenVerifier({ mode: 'psk', psk: w.psk, now, cacheSize: 4, negativeCacheSize: 8 })
        : createTokenVerifier({ mode: 'ca', caPublicJwk: w.ca.publicJwk, now, cacheSize: 4, negativeCacheSize: 8 });
    expect(reason(v.verify(good))).toBe('ok');
    const token = Buffer.from(good).toString('latin1');
    for (let i = 0; i < 100; i++) {
      const sig = Buffer.from(token.split('.')[2]!, 'base64url');
      sig.writeUInt16BE(i, 3);
      expect(reason(v.verify(bytes(withSegment(token, 2, sig.toString('base64url')))))).toBe('bad-signature');
    }
    expect(v.verifyStats().negativeCacheSize).toBeLessThanOrEqual(8);
    expect(v.cached(good)).toMatchObject({ ok: true });
  });
});

describe('PSK specifics', () => {
  it('a token made with another PSK -> bad-signature', async () => {
    clock = NOW;
    const token = await signPsk(new Uint8Array(32).fill(1), claimsFor(w.epk.publicRaw));
    expect(reason(pskVerifier().verify(bytes(token)))).toBe('bad-signature');
  });
  it('during a rotation both the new and the old PSK verify', async () => {
    clock = NOW;
    const fresh = new Uint8Array(32).fill(9);
    const v = pskVerifier({ psk: [fresh, w.psk] });
    expect(reason(v.verify(bytes(await pskToken())))).toBe('ok');
    expect(reason(v.verify(bytes(await signPsk(fresh, claimsFor(w.epk.publicRaw)))))).toBe('ok');
    expect(reason(v.verify(bytes(await signPsk(new Uint8Array(32).fill(3), claimsFor(w.epk.publicRaw)))))).toBe('bad-signature');
  });
  it('alg "none", an ES256 header and unknown crit are malformed', async () => {
    clock = NOW;
    const token = await pskToken();
    const v = pskVerifier();
    expect(reason(v.verify(bytes(withSegment(token, 0, b64json({ alg: 'none' })))))).toBe('malformed');
    expect(reason(v.verify(bytes(withSegment(token, 0, b64json({ alg: 'ES256' })))))).toBe('malformed');
    expect(reason(v.verify(bytes(`${b64json({ alg: 'none' })}.${token.split('.')[1]}.`)))).toBe('malformed');
    expect(reason(v.verify(bytes(rawHs256(w.psk, { alg: 'HS256', crit: ['x'], x: 1 }, claimsFor(w.epk.publicRaw)))))).toBe('malformed');
    // The same construction without crit verifies: the refusal above is about crit.
    expect(reason(v.verify(bytes(rawHs256(w.psk, { alg: 'HS256', x: 1 }, claimsFor(w.epk.publicRaw)))))).toBe('ok');
  });
  it('signed but invalid claims are malformed: version, labels, epk, times, types', async () => {
    clock = NOW;
    const v = pskVerifier();
    const cases: Record<string, unknown>[] = [
      { v: 2 },
      { v: undefined },
      { lbl: ['b=1', 'a=1'] }, // not sorted
      { lbl: ['a=1', 'a=2'] }, // duplicate key
      { lbl: ['bad'] },
      { lbl: 'app=x' },
      { epk: Buffer.alloc(31).toString('base64url') },
      { epk: 'not base64!' },
      { iat: 'now' },
      { exp: NOW - 1 }, // exp before iat
      { iat: 1.5 },
      { iss: '' },
      { sub: 42 },
      { sub: 'x'.repeat(129) },
    ];
    for (const over of cases) {
      const token = await signPsk(w.psk, claimsFor(w.epk.publicRaw, over));
      expect([over, reason(v.verify(bytes(token)))]).toEqual([over, 'malformed']);
    }
  });
  it('the signature encoding must be canonical base64url', async () => {
    clock = NOW;
    const token = await pskToken();
    const sig = token.split('.')[2]!;
    // 32 bytes -> 43 chars; the last char carries 2 unused bits. Setting them decodes to
    // the same bytes with lenient decoders; we refuse it so one token has one encoding.
    const last = sig[42]!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const twisted = sig.slice(0, 42) + alphabet[alphabet.indexOf(last) | 1]!;
    expect(Buffer.from(twisted, 'base64url').equals(Buffer.from(sig, 'base64url'))).toBe(alphabet.indexOf(last) % 2 === 0);
    if (twisted !== sig) expect(reason(pskVerifier().verify(bytes(withSegment(token, 2, twisted))))).toBe('malformed');
  });
});

describe('CA specifics', () => {
  it('a host whose certificate comes from another CA -> untrusted-issuer', async () => {
    clock = NOW;
    expect(reason(caVerifier().verify(bytes(await caToken({ host: w.rogue }))))).toBe('untrusted-issuer');
  });
  it('a certificate signed by the host itself -> untrusted-issuer', async () => {
    clock = NOW;
    const selfCa = { name: 'host-a', privateJwk: w.hostA.privateJwk, publicJwk: w.hostA.publicJwk };
    const cert = await issueHostCertificate(selfCa, { host: 'host-a', hostPublicJwk: w.hostA.publicJwk, validityDays: 1, now: NOW });
    const token = await signCa(w.hostA.privateJwk, cert, claimsFor(w.epk.publicRaw));
    expect(reason(caVerifier().verify(bytes(token)))).toBe('untrusted-issuer');
  });
  it('a token whose iss differs from the certificate subject -> untrusted-issuer', async () => {
    clock = NOW;
    const token = await signCa(w.hostA.privateJwk, w.hostA.certificate, claimsFor(w.epk.publicRaw, { iss: 'host-b' }));
    expect(reason(caVerifier().verify(bytes(token)))).toBe('untrusted-issuer');
  });
  it("another host's valid certificate swapped into the header -> bad-signature", async () => {
    clock = NOW;
    const token = await caToken();
    const header = unb64json(token.split('.')[0]!);
    header.hc = w.hostB.certificate;
    expect(reason(caVerifier().verify(bytes(withSegment(token, 0, b64json(header)))))).toBe('bad-signature');
  });
  it('a tampered certificate -> untrusted-issuer; a garbled one -> malformed', async () => {
    clock = NOW;
    const token = await caToken();
    const header = unb64json(token.split('.')[0]!);
    const [ch, cp, cs] = (header.hc as string).split('.');
    const certClaims = unb64json(cp!);
    certClaims.sub = 'host-b';
    header.hc = `${ch}.${b64json(certClaims)}.${cs}`;
    expect(reason(caVerifier().verify(bytes(withSegment(token, 0, b64json(header)))))).toBe('untrusted-issuer');
    header.hc = 'garbage';
    expect(reason(caVerifier().verify(bytes(withSegment(token, 0, b64json(header)))))).toBe('malformed');
    delete header.hc;
    expect(reason(caVerifier().verify(bytes(withSegment(token, 0, b64json(header)))))).toBe('malformed');
  });
  it('an expired or not-yet-valid host certificate -> untrusted-issuer, also from the cache', async () => {
    const old = await caHost(w.ca, 'host-a', { now: NOW - 10 * 86400, validityDays: 1 });
    clock = NOW;
    const token = bytes(await caToken({ host: old }));
    expect(reason(caVerifier().verify(token))).toBe('untrusted-issuer');
    const future = await caHost(w.ca, 'host-a', { now: NOW + 86400, validityDays: 1 });
    expect(reason(caVerifier().verify(bytes(await caToken({ host: future }))))).toBe('untrusted-issuer');
    // Certificate valid for one day from NOW-86400+... : cached token, then the cert expires.
    const short = await caHost(w.ca, 'host-a', { now: NOW - 100, validityDays: 1 });
    const v = caVerifier();
    const t2 = bytes(await caToken({ host: short, ttl: 86400 }));
    expect(reason(v.verify(t2))).toBe('ok');
    clock = NOW - 100 + 86400 + 30;
    expect(reason(v.verify(t2))).toBe('untrusted-issuer');
    expect(v.verifyStats().hits).toBe(1);
    clock = NOW;
  });
  it('an HS256 token given to a CA verifier is malformed (no algorithm confusion)', async () => {
    clock = NOW;
    // Even keyed with the CA public key's bytes, as in the classic confusion attack.
    const token = await signPsk(Buffer.from(JSON.stringify(w.ca.publicJwk)), claimsFor(w.epk.publicRaw), { hc: w.hostA.certificate });
    expect(reason(caVerifier().verify(bytes(token)))).toBe('malformed');
  });
  it('certificates are cached: a second token from the same host skips the CA check', async () => {
    clock = NOW;
    const v = caVerifier();
    expect(reason(v.verify(bytes(await caToken({ id: 'pu-1' }))))).toBe('ok');
    expect(reason(v.verify(bytes(await caToken({ id: 'pu-2' }))))).toBe('ok');
    expect(v.verifyStats()).toMatchObject({ certMisses: 1, certHits: 1, certCacheSize: 1, misses: 2 });
  });
  it('during a CA rotation both CAs are trusted', async () => {
    clock = NOW;
    const v = createTokenVerifier({ mode: 'ca', caPublicJwk: [w.otherCa.publicJwk, w.ca.publicJwk], now });
    expect(reason(v.verify(bytes(await caToken())))).toBe('ok');
    expect(reason(v.verify(bytes(await caToken({ host: w.rogue }))))).toBe('ok');
  });
});

describe('sizes', () => {
  it(`reference PU (4 short labels): CA token <= 900 bytes, PSK token <= 400 bytes`, async () => {
    clock = NOW;
    const ca = await caToken({ id: 'pu-0001' });
    const psk = await pskToken({ id: 'pu-0001' });
    console.log(`token sizes: CA ${ca.length} B (certificate ${w.hostA.certificate.length} B), PSK ${psk.length} B`);
    expect(ca.length).toBeLessThanOrEqual(900);
    expect(psk.length).toBeLessThanOrEqual(400);
    expect(Buffer.byteLength(ca)).toBe(ca.length); // ASCII only
  });
  it('the issuer refuses tokens over MAX_TOKEN_BYTES and the verifier calls them malformed', async () => {
    const many = Array.from({ length: 12 }, (_, i) => `key${i}=${'v'.repeat(60)}`);
    await expect(pskToken({ labels: many })).rejects.toMatchObject({ code: 'TESSERA_ERR_TOKEN' });
    const big = await signPsk(w.psk, claimsFor(w.epk.publicRaw, { lbl: many.sort() }));
    expect(big.length).toBeGreaterThan(MAX_TOKEN_BYTES);
    expect(reason(pskVerifier().verify(bytes(big)))).toBe('malformed');
  });
});

describe('issuer and verifier configuration', () => {
  it('the issuer validates its input', async () => {
    const issuer = createTokenIssuer({ mode: 'psk', hostId: 'host-a', psk: w.psk });
    const pu = { id: 'pu-1', labels: LABELS, epkPublicRaw: w.epk.publicRaw };
    await expect(issuer.issue({ ...pu, labels: ['bad'] }, NOW, 60)).rejects.toMatchObject({ code: 'TESSERA_ERR_INVALID_LABEL' });
    await expect(issuer.issue({ ...pu, epkPublicRaw: new Uint8Array(31) }, NOW, 60)).rejects.toMatchObject({ code: 'TESSERA_ERR_TOKEN' });
    await expect(issuer.issue({ ...pu, id: 'has space' }, NOW, 60)).rejects.toMatchObject({ code: 'TESSERA_ERR_TOKEN' });
    await expect(issuer.issue(pu, NOW, 0)).rejects.toMatchObject({ code: 'TESSERA_ERR_TOKEN' });
    await expect(issuer.issue(pu, Number.NaN, 60)).rejects.toMatchObject({ code: 'TESSERA_ERR_TOKEN' });
  });
  it('the issuer refuses a short PSK and a certificate for another host or key', () => {
    expect(() => createTokenIssuer({ mode: 'psk', hostId: 'h', psk: new Uint8Array(31) })).toThrow(
      expect.objectContaining({ code: 'TESSERA_ERR_INVALID_CONFIG' }),
    );
    expect(() => createTokenIssuer({ ...w.hostA, hostId: 'host-b' })).toThrow(expect.objectContaining({ code: 'TESSERA_ERR_KEY_FILE' }));
    expect(() => createTokenIssuer({ ...w.hostA, certificate: w.hostB.certificate, hostId: 'host-b' })).toThrow(
      expect.objectContaining({ code: 'TESSERA_ERR_KEY_FILE' }),
    );
  });
  it('the verifier validates its options', () => {
    expect(() => createTokenVerifier({ mode: 'psk', psk: new Uint8Array(8) })).toThrow(expect.objectContaining({ code: 'TESSERA_ERR_INVALID_CONFIG' }));
    expect(() => createTokenVerifier({ mode: 'psk', psk: [] })).toThrow(expect.objectContaining({ code: 'TESSERA_ERR_INVALID_CONFIG' }));
    expect(() => createTokenVerifier({ mode: 'ca', caPublicJwk: { kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA' } })).toThrow(
      expect.objectContaining({ code: 'TESSERA_ERR_INVALID_CONFIG' }),
    );
    expect(() => createTokenVerifier({ mode: 'psk', psk: w.psk, cacheSize: 0 })).toThrow(expect.objectContaining({ code: 'TESSERA_ERR_INVALID_CONFIG' }));
    expect(() => createTokenVerifier({ mode: 'psk', psk: w.psk, clockSkewSeconds: -1 })).toThrow(
      expect.objectContaining({ code: 'TESSERA_ERR_INVALID_CONFIG' }),
    );
    expect(() => createTokenVerifier({ mode: 'x' } as never)).toThrow(expect.objectContaining({ code: 'TESSERA_ERR_INVALID_CONFIG' }));
  });
  it('verify() answers malformed, without throwing, to non-bytes and a throwing clock', () => {
    const v = pskVerifier();
    expect(reason(v.verify('abc' as never))).toBe('malformed');
    expect(reason(v.verify(null as never))).toBe('malformed');
    expect(reason(v.verify(new Uint8Array(0)))).toBe('malformed');
    const broken = createTokenVerifier({ mode: 'psk', psk: w.psk, now: () => { throw new Error('clock'); } });
    expect(reason(broken.verify(bytes('a.b.c')))).toBe('malformed');
  });
  it('the public key in epk round-trips through KeyObject', () => {
    const k = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(w.epk.publicRaw).toString('base64url') }, format: 'jwk' });
    expect(k.asymmetricKeyType).toBe('x25519');
  });
});
