// Binds the handshake's crypto interface to src/identity: token verification with its
// cache, stateless nonces from the host secret, X25519 with a per-pair cache, HKDF, MACs.
// `digests` is node:crypto unless the caller passes faster ones (the workers pass the addon's).

import {
  createTokenVerifier,
  createNonceSource,
  createKeyAgreement,
  sessionKey,
  mac,
  macEqual,
  NODE_DIGESTS,
  type Digests,
  type VerifyStats,
  type VerifyResult,
  type KeyAgreementStats,
} from '../identity/index.js';
import type { HandshakeCrypto, VerifiedPeer, VerifyFailure } from './handshake/handshake.js';
import type { TrustConfig } from './messages.js';

const SESSION_INFO = new TextEncoder().encode('tessera/1 session');

export function createHandshakeCrypto(
  trust: TrustConfig,
  hostSecret: Uint8Array,
  clockSkewSeconds: number,
  digests: Digests = NODE_DIGESTS,
): HandshakeCrypto & { verifierStats(): { tokens: VerifyStats; x25519: KeyAgreementStats } } {
  const verifier =
    trust.mode === 'psk'
      ? createTokenVerifier({ mode: 'psk', psk: trust.secret, clockSkewSeconds })
      : createTokenVerifier({ mode: 'ca', caPublicJwk: trust.caPublicJwk as never, clockSkewSeconds });
  const nonces = createNonceSource(hostSecret, digests);
  const agreement = createKeyAgreement({ cacheSize: 4096 });
  // Verified peers are cached alongside the verifier's own cache so that the handshake gets
  // the same object (no per-packet allocation) for a token it has seen.
  const peers = new WeakMap<object, VerifiedPeer>();
  function peerOf(r: VerifyResult): VerifiedPeer | VerifyFailure {
    if (!r.ok) return r;
    let p = peers.get(r.claims);
    if (!p) {
      p = { ok: true, host: r.claims.iss, pu: r.claims.sub, labels: r.claims.lbl, epk: r.epkKey, tokenHash: r.tokenHash };
      peers.set(r.claims, p);
    }
    return p;
  }
  const one: Uint8Array[] = [new Uint8Array(0)];
  const two: Uint8Array[] = [new Uint8Array(0)];
  return {
    nonce(input) {
      one[0] = input;
      return nonces.nonce(0, one);
    },
    verify: (token) => peerOf(verifier.verify(token)),
    cached(token) {
      const r = verifier.cached(token);
      return r === null ? null : peerOf(r);
    },
    sharedSecret: (own, peer) => agreement.sharedSecret(own, peer),
    sessionKey: (shared, nonceC, nonceS) => sessionKey(shared, nonceC, nonceS, SESSION_INFO, digests),
    mac(key, input) {
      two[0] = input;
      return mac(key, two, digests);
    },
    equal: macEqual,
    verifierStats: () => ({ tokens: verifier.verifyStats(), x25519: agreement.stats() }),
  };
}
