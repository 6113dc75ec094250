// Binds the handshake to src/identity: the cached token verifier for the worker's trust mode.
// (Protocol v2's key agreement, MACs and strike register live in the engine, ./handshake/v2.)

import { createTokenVerifier, type TokenVerifier } from '../identity/index.js';
import type { TrustConfig } from './messages.js';

export function createVerifier(trust: TrustConfig, clockSkewSeconds: number): TokenVerifier {
  return trust.mode === 'psk'
    ? createTokenVerifier({ mode: 'psk', psk: trust.secret, clockSkewSeconds })
    : createTokenVerifier({ mode: 'ca', caPublicJwk: trust.caPublicJwk as never, clockSkewSeconds });
}
