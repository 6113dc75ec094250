// The Hello's proof of possession and freshness (docs/protocol.md, "UDP", "Hello proof"):
// protocol v2's host keys, pair keys, freshness window, restart epoch and host-wide strike
// register, applied to the UDP exchange's first message. Pure: no I/O, the caller's clock.
//
//   PK   = protocol v2's pair key: HKDF(X25519(client token epk, server host static key), epkC ‖ hk)
//   macH = HMAC-SHA256(PK, "U2H" ‖ ts u64 ‖ key id ‖ nonceC ‖ refC)[0..16]     refC = SHA-256(token C)[0..16]
//
// Without a proof the server cannot tell a Hello from a copy an attacker replays (from the
// same tuple, another address, another worker, or after a restart): it would answer each with
// a Reply, run policy for it and spend an X25519. With it, a copy is refused before any of
// that: stale outside the window, restarted when older than the daemon's epoch, replay when
// the register holds its macH. A client that knows no key of the server host (first contact)
// sends its Hello without a proof; the server answers with a Retry carrying its token (whose
// signed hk claim is its host key) and keeps nothing.

import { Lru, type Digests } from '../../identity/index.js';
import { ClientPairKeys, derivePairKey, knownHostKey, ownHostKeys, unitsKey, type KnownHostKey, type OwnHostKey } from '../handshake/v2/keys.js';
import { StrikeRegister, type Strike } from '../handshake/v2/register.js';
import type { HostKeyDirectory, HostStaticKey } from '../handshake/v2/types.js';
import type { HandshakeCrypto, HandshakeVerifier, IssuedToken, VerifiedPeer } from '../handshake/types.js';
import { writeU64 } from './wire.js';
import { MAC_BYTES, preparedMac, type PreparedMac } from '../../identity/session.js';

const TAG = Uint8Array.of(0x55, 0x32, 0x48); // "U2H"
const REF = 16;

export interface HelloProofDeps {
  /** This host's static handshake keys, current first (<stateDir>/handshake.key). Empty: every Hello to this host is answered with a Retry that cannot help (no-host-key). */
  hostStaticKeys?: readonly HostStaticKey[];
  /** Host keys the fleet publishes, by address (the v2 engine's directory). */
  hostKeys?: HostKeyDirectory;
  /** The verifier's view with the `hk` claim (a verified peer leaves it out). */
  tokens?: HandshakeVerifier;
  /** The datapath's epoch (src/daemon/register-epoch.ts): Hellos older than it + skew are refused ('restarted'). */
  startedAt?: number;
  /** The host's strike register (v2/register.ts, made by the pool) and this worker's lock holder id. */
  register?: { buffer: SharedArrayBuffer; holder: number };
  digests?: Digests;
}

export interface HelloProofOptions {
  skewMs: number;
  maxAgeMs: number;
  /** Private register size when no shared one is given (tests, bench). */
  registerEntries: number;
  learnedHostKeys: number;
  pairKeys: number;
}

export const DEFAULT_HELLO_PROOF: HelloProofOptions = { skewMs: 3_000, maxAgeMs: 2_000, registerEntries: 65_536, learnedHostKeys: 4_096, pairKeys: 4_096 };

export type HelloCheck = 'ok' | 'retry' | 'stale' | 'restarted' | 'bad-mac' | 'replay' | 'register-full' | 'no-host-key' | 'malformed';

export interface HelloProofs {
  /** Client: the key to prove to the server at `address` (RFC 5952 text), or null (first contact). */
  keyFor(address: string): KnownHostKey | null;
  /** Client: learn the server host key a verified server token carries (Retry or Reply). Returns it, or null when the token has none. */
  learn(address: string, serverToken: Uint8Array): KnownHostKey | null;
  /** Client: ts, key id and macH for a Hello, written to a new 28-byte array (ts 8 ‖ key id 4 ‖ macH 16). */
  prove(token: IssuedToken, hk: KnownHostKey, nonceC: Uint8Array, now: number): { ts: number; keyId: Uint8Array; macH: Uint8Array } | null;
  /** Server: judge a proven Hello whose token verified; `tupleHash` names this host's view of the flow. */
  check(h: { ts: number; keyId: Uint8Array; macH: Uint8Array; nonceC: Uint8Array }, peer: VerifiedPeer, tupleHash: number, now: number): HelloCheck;
  /** Server: whether it has a key to be proved to at all. */
  readonly hasKeys: boolean;
  /** Times this handle found no room in the register. */
  registerFull(): number;
}

export function createHelloProofs(crypto: HandshakeCrypto, deps: HelloProofDeps, o: Partial<HelloProofOptions> = {}): HelloProofs {
  const opt = { ...DEFAULT_HELLO_PROOF, ...o };
  const own: OwnHostKey[] = ownHostKeys(deps.hostStaticKeys ?? []);
  const register = new StrikeRegister(opt.registerEntries, 2 * opt.skewMs + opt.maxAgeMs, deps.register);
  const learned = new Lru<string, KnownHostKey>(opt.learnedHostKeys);
  /** Directory keys decoded once per (address, key bytes). */
  const fromDirectory = new Lru<string, KnownHostKey>(opt.learnedHostKeys);
  // Pair keys are prepared once for the MAC (v2's, native/src/hash.c) and cached with it.
  const prepare = (raw: Uint8Array): PreparedMac => preparedMac(raw, deps.digests);
  const clientPairs = new ClientPairKeys({ prepare }, { hits: 0, misses: 0 }, deps.digests);
  const serverPairs = new Lru<string, PreparedMac>(opt.pairKeys);
  const digest = new Uint8Array(32);
  const startedAt = deps.startedAt ?? 0;
  const input = new Uint8Array(TAG.length + 8 + 4 + 16 + REF);

  function macOf(pk: PreparedMac, ts: number, keyId: Uint8Array, nonceC: Uint8Array, tokenHash: Uint8Array): Uint8Array {
    input.set(TAG, 0);
    writeU64(input, TAG.length, ts);
    input.set(keyId.subarray(0, 4), TAG.length + 8);
    input.set(nonceC.subarray(0, 16), TAG.length + 12);
    input.set(tokenHash.subarray(0, REF), TAG.length + 28);
    pk.mac(input, digest);
    return digest.slice(0, MAC_BYTES);
  }

  function epkRawOf(peer: VerifiedPeer): Uint8Array {
    const x = (peer.epk.export({ format: 'jwk' }) as { x: string }).x;
    return new Uint8Array(Buffer.from(x, 'base64url'));
  }

  return {
    hasKeys: own.length > 0,
    keyFor(address) {
      const l = learned.get(address);
      if (l !== undefined) return l;
      const d = deps.hostKeys?.lookup(address);
      if (d === undefined) return null;
      const cached = fromDirectory.get(address);
      if (cached !== undefined && cached.raw.length === d.key.length && cached.raw.every((b, i) => b === d.key[i])) return cached;
      const k = knownHostKey(d.key, d.host);
      if (k !== null) fromDirectory.set(address, k);
      return k;
    },
    learn(address, serverToken) {
      const v = deps.tokens?.cached(serverToken) ?? deps.tokens?.verify(serverToken);
      if (!v || !v.ok || !v.hostKey) return null;
      const prev = learned.get(address);
      if (prev !== undefined && prev.raw.every((b, i) => b === v.hostKey![i])) return prev;
      const k = knownHostKey(v.hostKey, v.claims.iss);
      if (k !== null) learned.set(address, k);
      return k;
    },
    prove(token, hk, nonceC, now) {
      const pk = clientPairs.get(token, hk);
      if (pk === null) return null;
      const ts = Math.max(0, Math.floor(now));
      return { ts, keyId: hk.id, macH: macOf(pk, ts, hk.id, nonceC, token.hash) };
    },
    check(h, peer, tupleHash, now) {
      const idKey = unitsKey(h.keyId, 0, 4);
      const key = own.find((k) => k.idKey === idKey && now <= k.notAfter);
      // A key we never had, or rotated out: teach the current one.
      if (key === undefined) return 'retry';
      const pairId = unitsKey(peer.tokenHash, 0, REF) + idKey;
      let pk = serverPairs.get(pairId);
      if (pk === undefined) {
        const derived = derivePairKey(key.privateKey, peer.epk, epkRawOf(peer), key.raw, deps.digests);
        if (derived === null) return 'malformed';
        pk = prepare(derived);
        serverPairs.set(pairId, pk);
      }
      if (!crypto.equal(macOf(pk, h.ts, h.keyId, h.nonceC, peer.tokenHash), h.macH)) return 'bad-mac';
      if (h.ts > now + opt.skewMs || h.ts < now - opt.skewMs - opt.maxAgeMs) return 'stale';
      // A previous run of this daemon may have answered this Hello and lost its register with it.
      if (h.ts < startedAt + opt.skewMs) return 'restarted';
      // Keyed by macH alone (it leaves the tuple out, for NAT) and shared by the host's
      // workers: a copy is refused from whichever address and worker it comes. A copy from
      // the same tuple is the caller's to recognise while it remembers the exchange.
      const s: Strike = register.strike(h.macH, tupleHash, now);
      return s === 'new' ? 'ok' : s === 'full' ? 'register-full' : 'replay';
    },
    registerFull: () => register.full,
  };
}

/** A 32-bit FNV-1a hash of a datagram's 5-tuple as this host sees it: what the strike register keeps of the flow. */
export function tupleHash(buf: Uint8Array, p: { srcAddrOffset: number; dstAddrOffset: number; addrLength: number; srcPort: number; dstPort: number }): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < p.addrLength; i++) h = Math.imul(h ^ buf[p.srcAddrOffset + i]!, 0x01000193);
  for (let i = 0; i < p.addrLength; i++) h = Math.imul(h ^ buf[p.dstAddrOffset + i]!, 0x01000193);
  for (const v of [p.srcPort >> 8, p.srcPort & 0xff, p.dstPort >> 8, p.dstPort & 0xff, 17]) h = Math.imul(h ^ v, 0x01000193);
  return h | 0;
}
