// Revocations and labels bound to hosts (src/identity/revocation.ts) and their hook in token
// verification: a revoked host's token is refused (`revoked`), a cached one too, at once.
import { beforeAll, describe, expect, it } from 'vitest';
import {
  certificateId,
  checkHostTrust,
  createHostTrust,
  createTokenIssuer,
  createTokenVerifier,
  labelBindingProblem,
  type VerifyResult,
} from '../../../src/identity/index.js';
import { LABELS, NOW, bytes, world } from './helpers.js';

type World = Awaited<ReturnType<typeof world>>;
let w: World;
beforeAll(async () => {
  w = await world();
});
const reason = (r: VerifyResult) => (r.ok ? 'ok' : r.reason);
const now = () => NOW;

describe('createHostTrust', () => {
  it('refuses revoked hosts and certificates, and labels bound to other hosts', () => {
    const t = createHostTrust({
      revoked: ['host-x', 'sha256:' + 'a'.repeat(64)],
      labelBindings: [
        { label: 'app=db', hosts: ['host-db'] },
        { label: 'tier=*', hosts: ['host-db', 'host-web'] },
      ],
    });
    expect(checkHostTrust(t, 'host-x', null, [])).toBe('revoked');
    expect(checkHostTrust(t, 'host-y', 'sha256:' + 'a'.repeat(64), [])).toBe('revoked');
    expect(checkHostTrust(t, 'host-y', 'sha256:' + 'b'.repeat(64), ['app=web'])).toBeNull();
    expect(checkHostTrust(t, 'host-y', null, ['app=db'])).toBe('label-not-allowed');
    expect(checkHostTrust(t, 'host-db', null, ['app=db', 'tier=back'])).toBeNull();
    expect(checkHostTrust(t, 'host-web', null, ['tier=front'])).toBeNull();
    expect(checkHostTrust(t, 'host-y', null, ['tier=front'])).toBe('label-not-allowed');
    // A revoked host is revoked whatever it claims.
    expect(checkHostTrust(t, 'host-x', null, ['app=db'])).toBe('revoked');
    expect(t.generation).not.toBe(createHostTrust({ revoked: [] }).generation);
  });

  it('says what is wrong with a malformed binding', () => {
    expect(labelBindingProblem({ label: 'app', hosts: [] })).toMatch(/key=value/);
    expect(labelBindingProblem({ label: 'app=db', hosts: ['bad host'] })).toMatch(/host ids/);
    expect(labelBindingProblem(null)).toMatch(/object/);
    expect(labelBindingProblem({ label: 'app=db', hosts: ['h1'] })).toBeNull();
  });
});

describe('token verification consults the host trust', () => {
  it('CA mode: a cached token of a host revoked afterwards is refused on its next use, and accepted once lifted', async () => {
    const v = createTokenVerifier({ mode: 'ca', caPublicJwk: w.ca.publicJwk, now });
    const token = bytes(await createTokenIssuer(w.hostA).issue({ id: 'pu-1', labels: LABELS, epkPublicRaw: w.epk.publicRaw }, NOW, 300));
    expect(reason(v.verify(token))).toBe('ok');
    v.setHostTrust(createHostTrust({ revoked: ['host-a'] }));
    expect(reason(v.verify(token))).toBe('revoked');
    expect(reason(v.cached(token)!)).toBe('revoked');
    expect(v.verifyStats().misses).toBe(1); // answered from the cache, no new signature check
    v.setHostTrust(createHostTrust({ revoked: [] }));
    expect(reason(v.verify(token))).toBe('ok');
  });

  it('CA mode: revoking one certificate by id refuses tokens signed under it', async () => {
    const v = createTokenVerifier({ mode: 'ca', caPublicJwk: w.ca.publicJwk, now, hostTrust: createHostTrust({ revoked: [certificateId(w.hostA.certificate)] }) });
    const a = bytes(await createTokenIssuer(w.hostA).issue({ id: 'pu-1', labels: LABELS, epkPublicRaw: w.epk.publicRaw }, NOW, 300));
    const b = bytes(await createTokenIssuer(w.hostB).issue({ id: 'pu-1', labels: LABELS, epkPublicRaw: w.epk.publicRaw }, NOW, 300));
    expect(reason(v.verify(a))).toBe('revoked');
    expect(reason(v.verify(b))).toBe('ok');
    expect(v.verifyStats().rejected.revoked).toBe(1);
  });

  it('a token claiming a label bound to other hosts is refused; its other tokens pass', async () => {
    const v = createTokenVerifier({ mode: 'psk', psk: w.psk, now, hostTrust: createHostTrust({ revoked: [], labelBindings: [{ label: 'app=db', hosts: ['host-db'] }] }) });
    const issuer = createTokenIssuer({ mode: 'psk', hostId: 'host-a', psk: w.psk });
    const db = bytes(await issuer.issue({ id: 'pu-1', labels: ['app=db'], epkPublicRaw: w.epk.publicRaw }, NOW, 300));
    const web = bytes(await issuer.issue({ id: 'pu-2', labels: ['app=web'], epkPublicRaw: w.epk.publicRaw }, NOW, 300));
    expect(reason(v.verify(db))).toBe('label-not-allowed');
    expect(reason(v.verify(web))).toBe('ok');
    v.setHostTrust(createHostTrust({ revoked: [], labelBindings: [{ label: 'app=db', hosts: ['host-db', 'host-a'] }] }));
    expect(reason(v.verify(db))).toBe('ok');
  });

  it('past the staleness bound (refuseNew) a token not verified before is refused (stale-trust); a cached one passes', async () => {
    const v = createTokenVerifier({ mode: 'ca', caPublicJwk: w.ca.publicJwk, now });
    const issuer = createTokenIssuer(w.hostA);
    const known = bytes(await issuer.issue({ id: 'pu-1', labels: LABELS, epkPublicRaw: w.epk.publicRaw }, NOW, 300));
    const fresh = bytes(await issuer.issue({ id: 'pu-2', labels: LABELS, epkPublicRaw: w.epk.publicRaw }, NOW, 300));
    expect(reason(v.verify(known))).toBe('ok');
    v.setHostTrust(createHostTrust({ revoked: [], refuseNew: true }));
    expect(reason(v.verify(known))).toBe('ok');
    expect(reason(v.verify(fresh))).toBe('stale-trust');
    expect(v.verifyStats().misses).toBe(1);
    // Not remembered as a failure: back in contact, the same token verifies.
    v.setHostTrust(createHostTrust({ revoked: [] }));
    expect(reason(v.verify(fresh))).toBe('ok');
  });
});
