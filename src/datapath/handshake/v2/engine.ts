// Protocol v2's engine: both roles of the four queue passes, pure (node:crypto only).
// docs/protocol.md describes the exchange; types.ts the contract; client.ts and server.ts
// the two roles; keys.ts the cached keys and tokens; register.ts the strike register.

import { TesseraError } from '../../../errors.js';
import { NODE_DIGESTS } from '../../../identity/index.js';
import { createClientRole } from './client.js';
import { ClientPairKeys, PeerTokens } from './keys.js';
import { createProofs } from './proof.js';
import { StrikeRegister } from './register.js';
import { createServerRole } from './server.js';
import { DEFAULT_V2_OPTIONS, type V2Deps, type V2Engine, type V2Options } from './types.js';

/** Options checked once, with what to give instead. */
function checkOptions(opt: V2Options): void {
  for (const [name, min, max] of [
    ['skewMs', 0, 60_000],
    ['maxAgeMs', 0, 60_000],
    ['registerEntries', 1, 1 << 24],
    ['peerTokens', 1, 1 << 20],
    ['stateEntries', 1, 1 << 22],
    ['stateTtlMs', 1_000, 600_000],
    ['learnedHostKeys', 1, 1 << 20],
  ] as const) {
    const v = opt[name];
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', `protocol v2 option ${name} must be an integer in ${min}..${max}, got ${String(v)}`);
    }
  }
}

export function createV2Engine(deps: V2Deps): V2Engine {
  const opt: V2Options = { ...DEFAULT_V2_OPTIONS, ...deps.options };
  checkOptions(opt);
  const digests = deps.digests ?? NODE_DIGESTS;
  const proofs = createProofs(digests);
  const peers = new PeerTokens(opt.peerTokens);
  // An accepted proof's timestamp passes the freshness check for at most skew + maxAge + skew
  // after its arrival: that long, its strike must stay (docs/protocol.md, "No replay").
  // Shared by the host's workers when the pool gives a buffer (the proofs do not cover the
  // tuple, so a replay from another address may reach another worker); private otherwise.
  const register = new StrikeRegister(opt.registerEntries, 2 * opt.skewMs + opt.maxAgeMs, deps.register);
  // Pair-key cache counters: the worker reports them as its x25519 cache (crypto.ts).
  const keyStats = deps.keyStats ?? { hits: 0, misses: 0 };
  const pairKeys = new ClientPairKeys(proofs, keyStats, digests);
  const server = createServerRole(deps, opt, proofs, peers, register, keyStats, digests);
  // Nonces come from a pool refilled in one call per 128 of them: a CSPRNG call costs
  // microseconds, more than the rest of a SYN out.
  const pool = new Uint8Array(1024);
  let poolAt = pool.length;
  const random = (out: Uint8Array): void => {
    if (poolAt + out.length > pool.length) {
      deps.random(pool);
      poolAt = 0;
    }
    for (let i = 0; i < out.length; i++) out[i] = pool[poolAt + i]!;
    poolAt += out.length;
  };
  const client = createClientRole({ ...deps, random }, opt, proofs, peers, pairKeys);
  return {
    clientSynOut: client.synOut,
    serverSynIn: server.synIn,
    serverSynAckOut: server.synAckOut,
    clientSynAckIn: client.synAckIn,
    clientSent: client.sent,
    setHostKeys: server.setHostKeys,
    clearPeerTokens: () => peers.clear(),
    stats: () => ({
      registerSize: register.size,
      registerFull: register.full,
      peerTokens: peers.size,
      peerTokenHits: peers.hits,
      peerTokenMisses: peers.misses,
      pairKeys: server.derivations() + pairKeys.derivations,
      pairKeyDerivations: server.derivations() + pairKeys.derivations,
      serverState: server.state.size,
      clientState: client.state.size,
    }),
  };
}
