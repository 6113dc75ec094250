import { describe, expect, it, beforeAll } from 'vitest';
import { TesseraError } from '../../../src/errors.js';
import {
  createSecret,
  inspectCertificate,
  issueHostCertificate,
  parseCaFile,
  parseCaPublicFile,
  parseHostIdentityFile,
  parseSecretFile,
  serializeCa,
  serializeCaPublic,
  serializeHostIdentity,
  serializeSecret,
  verifyHostCertificate,
  type CaHostIdentity,
} from '../../../src/identity/index.js';
import { NOW, unb64json, world } from './helpers.js';

let w: Awaited<ReturnType<typeof world>>;
beforeAll(async () => {
  w = await world();
});

function keyFileMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TesseraError);
    expect((err as TesseraError).code).toBe('TESSERA_ERR_KEY_FILE');
    return (err as Error).message;
  }
  throw new Error('expected a TESSERA_ERR_KEY_FILE error');
}

const edit = (text: string, f: (o: Record<string, any>) => void): string => {
  const o = JSON.parse(text);
  f(o);
  return JSON.stringify(o);
};

describe('certificates', () => {
  it('have the documented header and claims, hpk limited to kty/crv/x/y', () => {
    const [h, p] = w.hostA.certificate.split('.');
    expect(unb64json(h!)).toEqual({ alg: 'ES256', typ: 'tessera-cert' });
    const claims = unb64json(p!);
    expect(Object.keys(claims).sort()).toEqual(['exp', 'hpk', 'iat', 'iss', 'sub']);
    expect(claims.hpk).toEqual({ kty: 'EC', crv: 'P-256', x: w.hostA.publicJwk.x, y: w.hostA.publicJwk.y });
    expect(claims.sub).toBe('host-a');
    expect(claims.iss).toBe('acme-ca');
    expect((claims.exp as number) - (claims.iat as number)).toBe(365 * 86400);
    expect(inspectCertificate(w.hostA.certificate)).toEqual(claims);
  });
  it('verifyHostCertificate checks CA, expiry and not-before', () => {
    expect(verifyHostCertificate(w.hostA.certificate, w.ca.publicJwk, NOW).sub).toBe('host-a');
    expect(verifyHostCertificate(w.hostA.certificate, [w.otherCa.publicJwk, w.ca.publicJwk], NOW).sub).toBe('host-a');
    expect(keyFileMessage(() => verifyHostCertificate(w.hostA.certificate, w.otherCa.publicJwk, NOW))).toMatch(/trusted CA/);
    expect(keyFileMessage(() => verifyHostCertificate(w.hostA.certificate, w.ca.publicJwk, NOW + 400 * 86400))).toMatch(/expired/);
    expect(keyFileMessage(() => verifyHostCertificate(w.hostA.certificate, w.ca.publicJwk, NOW - 2 * 86400))).toMatch(/not valid before/);
    expect(keyFileMessage(() => verifyHostCertificate('x.y.z', w.ca.publicJwk, NOW))).toMatch(/malformed/);
  });
  it('issuing validates host id, key and validity', async () => {
    const opts = { host: 'host-a', hostPublicJwk: w.hostA.publicJwk, validityDays: 1 };
    await expect(issueHostCertificate(w.ca, { ...opts, host: 'bad host' })).rejects.toMatchObject({ code: 'TESSERA_ERR_INVALID_ARGUMENT' });
    await expect(issueHostCertificate(w.ca, { ...opts, validityDays: 0 })).rejects.toMatchObject({ code: 'TESSERA_ERR_INVALID_ARGUMENT' });
    await expect(issueHostCertificate(w.ca, { ...opts, hostPublicJwk: { ...w.hostA.publicJwk, x: w.hostA.publicJwk.y } })).rejects.toMatchObject({
      code: 'TESSERA_ERR_INVALID_ARGUMENT',
    });
    await expect(issueHostCertificate(w.ca, { ...opts, hostPublicJwk: { ...w.hostA.privateJwk } })).rejects.toMatchObject({
      code: 'TESSERA_ERR_INVALID_ARGUMENT',
    });
  });
});

describe('CA files', () => {
  it('round-trip', () => {
    const text = serializeCa(w.ca);
    expect(JSON.parse(text)).toMatchObject({ type: 'tessera-ca', version: 1, name: 'acme-ca' });
    expect(parseCaFile(text)).toEqual(w.ca);
    const pub = serializeCaPublic(w.ca);
    expect(JSON.parse(pub).privateJwk).toBeUndefined();
    expect(parseCaPublicFile(pub)).toEqual({ name: 'acme-ca', publicJwk: w.ca.publicJwk });
  });
  it('name what is wrong', () => {
    const text = serializeCa(w.ca);
    expect(keyFileMessage(() => parseCaFile('{'))).toMatch(/CA file: not valid JSON/);
    expect(keyFileMessage(() => parseCaFile('[]'))).toMatch(/JSON object/);
    expect(keyFileMessage(() => parseCaFile(serializeCaPublic(w.ca)))).toMatch(/"type" must be "tessera-ca"/);
    expect(keyFileMessage(() => parseCaFile(edit(text, (o) => (o.version = 2))))).toMatch(/"version" must be 1/);
    expect(keyFileMessage(() => parseCaFile(edit(text, (o) => delete o.name)))).toMatch(/"name"/);
    expect(keyFileMessage(() => parseCaFile(edit(text, (o) => (o.name = 'a b'))))).toMatch(/"name"/);
    expect(keyFileMessage(() => parseCaFile(edit(text, (o) => (o.publicJwk.crv = 'P-384'))))).toMatch(/"publicJwk"/);
    expect(keyFileMessage(() => parseCaFile(edit(text, (o) => (o.publicJwk.x = o.publicJwk.y))))).toMatch(/not a point on P-256/);
    expect(keyFileMessage(() => parseCaFile(edit(text, (o) => delete o.privateJwk.d)))).toMatch(/"privateJwk.d"/);
    expect(keyFileMessage(() => parseCaFile(edit(text, (o) => (o.privateJwk.d = w.otherCa.privateJwk.d))))).toMatch(/does not belong/);
    expect(keyFileMessage(() => parseCaPublicFile(text))).toMatch(/CA public file: field "type"/);
  });
});

describe('host identity files', () => {
  it('round-trip in CA and PSK mode', () => {
    expect(parseHostIdentityFile(serializeHostIdentity(w.hostA))).toEqual(w.hostA);
    const psk = { mode: 'psk' as const, hostId: 'host-a', psk: createSecret() };
    expect(parseHostIdentityFile(serializeHostIdentity(psk))).toEqual(psk);
  });
  it('refuse inconsistent or broken content', () => {
    const text = serializeHostIdentity(w.hostA);
    expect(keyFileMessage(() => parseHostIdentityFile(edit(text, (o) => (o.mode = 'x'))))).toMatch(/"mode"/);
    expect(keyFileMessage(() => parseHostIdentityFile(edit(text, (o) => (o.host = 'host-b'))))).toMatch(/for host "host-a", not "host-b"/);
    const otherKey: CaHostIdentity = { ...w.hostB, hostId: 'host-a', certificate: w.hostA.certificate };
    expect(keyFileMessage(() => parseHostIdentityFile(serializeHostIdentity(otherKey)))).toMatch(/different key/);
    expect(keyFileMessage(() => parseHostIdentityFile(edit(text, (o) => (o.certificate = 'nope'))))).toMatch(/"certificate"/);
    expect(keyFileMessage(() => parseHostIdentityFile(edit(text, (o) => (o.privateJwk.d = w.hostB.privateJwk.d))))).toMatch(/does not belong/);
    const psk = serializeHostIdentity({ mode: 'psk', hostId: 'h', psk: createSecret() });
    expect(keyFileMessage(() => parseHostIdentityFile(edit(psk, (o) => (o.psk = 'AAAA'))))).toMatch(/at least 32/);
    expect(keyFileMessage(() => parseHostIdentityFile(edit(psk, (o) => (o.psk = 'a+b/'))))).toMatch(/base64url/);
  });
});

describe('secret files', () => {
  it('round-trip and check purpose and length', () => {
    const s = createSecret();
    expect(s.byteLength).toBe(32);
    expect(parseSecretFile(serializeSecret(s, 'psk'), 'psk')).toEqual(s);
    expect(keyFileMessage(() => parseSecretFile(serializeSecret(s, 'host-secret'), 'psk'))).toMatch(/"purpose"/);
    expect(() => serializeSecret(new Uint8Array(16), 'psk')).toThrow(expect.objectContaining({ code: 'TESSERA_ERR_INVALID_ARGUMENT' }));
    expect(keyFileMessage(() => parseSecretFile(edit(serializeSecret(s, 'psk'), (o) => (o.secret = 'AAAA')), 'psk'))).toMatch(/at least 32/);
  });
});
