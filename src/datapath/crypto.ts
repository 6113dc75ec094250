// Binds the datapath to src/identity. createHandshakeCrypto: the worker's token verification
// with its cache and the fleet's trust bundle applied (setTrust), its verifier view for protocol
// v2 (`tokens`; the engine's key agreement, MACs and strike register live in ./handshake/v2),
// and the UDP exchange's nonces, X25519 with a per-pair cache, HKDF and MACs.
// `digests` is node:crypto unless the caller passes faster ones (the workers pass the addon's).

import {
  createTokenVerifier,
  createHostTrust,
  type HostTrust,
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
  type TokenVerifier,
} from '../identity/index.js';
import type { HandshakeCrypto, HandshakeVerifier, VerifiedPeer, VerifyFailure } from './handshake/types.js';
import type { TrustConfig, TrustUpdate } from './messages.js';

const SESSION_INFO = new TextEncoder().encode('tessera/1 session');

export function createHandshakeCrypto(
  trust: TrustConfig,
  hostSecret: Uint8Array,
  clockSkewSeconds: number,
  digests: Digests = NODE_DIGESTS,
): HandshakeCrypto & { tokens: HandshakeVerifier; verifierStats(): { tokens: VerifyStats; x25519: KeyAgreementStats }; setTrust(u: TrustUpdate): void } {
  let hostTrust: HostTrust = createHostTrust({ revoked: [] });
  let revoked: string[] = [];
  let bindings: NonNullable<TrustUpdate['labelBindings']> = [];
  let refuseNew = false;
  const make = (cas: Record<string, unknown>[]) =>
    trust.mode === 'psk'
      ? createTokenVerifier({ mode: 'psk', psk: trust.secret, clockSkewSeconds, hostTrust })
      : createTokenVerifier({ mode: 'ca', caPublicJwk: (cas.length > 0 ? cas : trust.caPublicJwk) as never, clockSkewSeconds, hostTrust });
  let verifier = make([]);
  let casText = '[]';
  const nonces = createNonceSource(hostSecret, digests);
  const agreement = createKeyAgreement({ cacheSize: 4096 });
  // Protocol v2's pair keys (one X25519 + HKDF per peer token and host key, then cached):
  // the TCP handshake counts its cache hits and derivations here, the x25519 metrics add them.
  const pairKeys = { hits: 0, misses: 0 };
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
    // The current verifier (a new CA list replaces it) as protocol v2's engine asks it.
    tokens: { verify: (token) => verifier.verify(token), cached: (token) => verifier.cached(token), keyStats: pairKeys },
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
    verifierStats() {
      const a = agreement.stats();
      return { tokens: verifier.verifyStats(), x25519: { hits: a.hits + pairKeys.hits, misses: a.misses + pairKeys.misses, size: a.size } };
    },
    // The fleet's trust bundle (messages.ts TrustUpdate): revocations and bindings apply to
    // cached tokens at once; a new CA list starts a new verifier (its caches were for the old CAs).
    setTrust(u: TrustUpdate): void {
      if (u.revoked !== undefined || u.labelBindings !== undefined || u.refuseNew !== undefined) {
        revoked = u.revoked ?? revoked;
        bindings = u.labelBindings ?? bindings;
        refuseNew = u.refuseNew ?? refuseNew;
        hostTrust = createHostTrust({ revoked, labelBindings: bindings, refuseNew });
        verifier.setHostTrust(hostTrust);
      }
      if (u.cas !== undefined && trust.mode === 'ca' && JSON.stringify(u.cas) !== casText) {
        casText = JSON.stringify(u.cas);
        verifier = make(u.cas);
      }
    },
  };
}

/** A plain verifier for one trust configuration (benchmarks and tests of the TCP handshake). */
export function createVerifier(trust: TrustConfig, clockSkewSeconds: number): TokenVerifier {
  return trust.mode === 'psk'
    ? createTokenVerifier({ mode: 'psk', psk: trust.secret, clockSkewSeconds })
    : createTokenVerifier({ mode: 'ca', caPublicJwk: trust.caPublicJwk as never, clockSkewSeconds });
}
