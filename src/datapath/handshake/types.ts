// The handshake's contract: what it is given (deps, crypto, options), what it answers
// (a Decision, with a Reason), and the local PUs and peers it speaks about.

import type { KeyObject } from 'node:crypto';
import type { Policy } from '../../policy/index.js';
import type { Digests, VerifyResult } from '../../identity/index.js';
import type { HostKeyDirectory, HostStaticKey, V2Options } from './v2/index.js';
import type { FlowRecord } from '../../flow.js';

/** Why a handshake packet was refused (or let through without authorization). Stable strings. */
export type Reason =
  | 'ok'
  | 'missing-token'
  | 'malformed'
  | 'bad-signature'
  | 'untrusted-issuer'
  | 'expired'
  | 'not-yet-valid'
  | 'bad-mac'
  | 'replay'
  | 'missing-proof'
  | 'policy'
  | 'audit'
  | 'learn'
  | 'no-pu'
  | 'no-state'
  | 'too-large'
  | 'bad-packet'
  | 'fast-open'
  | 'simultaneous-open'
  | 'rate-limited'
  // protocol v2 (src/datapath/handshake/v2/types.ts, V2NewReason)
  | 'version'
  | 'stale'
  | 'restarted'
  | 'register-full'
  | 'revoked'
  | 'label-not-allowed'
  | 'stale-trust'
  | 'bad-host-key'
  | 'no-host-key'
  | 'retry';

/** A token this host issued for one of its PUs (newest first in LocalPu.tokens). */
export interface IssuedToken {
  readonly bytes: Uint8Array;
  /** SHA-256 of bytes. */
  readonly hash: Uint8Array;
  /** The X25519 private key whose public half is the token's epk. */
  readonly epkPrivate: KeyObject;
}

export interface LocalPu {
  readonly index: number;
  readonly id: string;
  readonly labels: readonly string[];
  /** Current token first; older tokens kept until they expire, for handshakes in flight. */
  readonly tokens: readonly IssuedToken[];
}

export interface VerifiedPeer {
  readonly ok: true;
  readonly host: string;
  readonly pu: string;
  readonly labels: readonly string[];
  readonly epk: KeyObject;
  readonly tokenHash: Uint8Array;
}
export interface VerifyFailure {
  readonly ok: false;
  readonly reason: 'malformed' | 'bad-signature' | 'untrusted-issuer' | 'expired' | 'not-yet-valid' | 'revoked' | 'label-not-allowed' | 'stale-trust';
}

/**
 * The crypto the UDP exchange needs (src/datapath/udp); all synchronous (node:crypto), all
 * cached by the provider. The TCP handshake (protocol v2) needs only a HandshakeVerifier.
 */
export interface HandshakeCrypto {
  /** HMAC-SHA256(host secret, input) truncated to 16 bytes, in a new array the caller owns. */
  nonce(input: Uint8Array): Uint8Array;
  verify(token: Uint8Array): VerifiedPeer | VerifyFailure;
  /** The caches' answer for a token (a verified peer or a remembered failure), or null if only verify() can tell. */
  cached(token: Uint8Array): VerifiedPeer | VerifyFailure | null;
  sharedSecret(own: KeyObject, peer: KeyObject): Uint8Array;
  sessionKey(shared: Uint8Array, nonceC: Uint8Array, nonceS: Uint8Array): Uint8Array;
  /** HMAC-SHA256(key, input) truncated to 16 bytes. */
  mac(key: Uint8Array, input: Uint8Array): Uint8Array;
  equal(a: Uint8Array, b: Uint8Array): boolean;
}

/** Token verification as src/identity's TokenVerifier gives it (cached; `cached` never verifies a signature). */
export interface HandshakeVerifier {
  verify(token: Uint8Array): VerifyResult;
  cached(token: Uint8Array): VerifyResult | null;
  /** Counters the handshake adds its pair-key cache hits and derivations to (the worker's x25519 cache metrics). */
  keyStats?: { hits: number; misses: number };
}

export interface HandshakeOptions {
  /** What a refusal looks like to the peer: a TCP reset (default) or silence. */
  rejectMode: 'reset' | 'drop';
  /** Never emit a packet longer than this (path MTU budget). */
  maxPacketLength: number;
  /** Bound of each per-flow map. */
  stateEntries: number;
  /** Entries older than this are ignored (ms). */
  stateTtlMs: number;
  /** Per source address (IPv6: per /64), failed token verifications allowed at once... */
  failedVerifyBurst: number;
  /** ...and per second after that; beyond, its SYNs with unknown tokens are dropped unverified. */
  failedVerifyPerSecond: number;
  /** Sources whose failures are tracked. */
  budgetSources: number;
}

export const DEFAULT_HANDSHAKE_OPTIONS: HandshakeOptions = {
  rejectMode: 'reset',
  maxPacketLength: 1500,
  // Entries live from SYN to SYN-ACK (server) or SYN-ACK to ACK (client): milliseconds, or
  // seconds across retransmissions. 16k in flight per worker is ample, and the bound keeps a
  // flood of replayed SYNs to a few MB (measured by test/integration/hostile.test.ts).
  stateEntries: 16_384,
  stateTtlMs: 15_000,
  // A forged CA token costs up to two ECDSA verifies (~0.1 ms): 8 per second per source is
  // about 0.1 % of a core, while a peer with a genuine token never spends from its budget
  // (docs/security-model.md, threats).
  failedVerifyBurst: 32,
  failedVerifyPerSecond: 8,
  budgetSources: 4_096,
};

export interface HandshakeDeps {
  /** Token verification (the worker's cached verifier). */
  verifier: HandshakeVerifier;
  /** HMAC/SHA-256 for the v2 engine (the addon's in workers; node:crypto by default). */
  digests?: Digests;
  /** Fill with random bytes (proof nonces). */
  random(out: Uint8Array): void;
  /** This host's static X25519 handshake keys, current first (<stateDir>/handshake.key). */
  hostStaticKeys: readonly HostStaticKey[];
  /** Server host keys the fleet publishes (fleet2's directory; the worker's snapshot `hostKeys`). */
  hostKeys?: HostKeyDirectory;
  /** Whether a verified token's host is revoked (the worker's snapshot `revoked`). */
  revoked?(host: string): boolean;
  policy: () => Policy;
  puByIndex(index: number): LocalPu | undefined;
  puByLocalPort(port: number): LocalPu | undefined;
  now(): number;
  onFlow(record: FlowRecord): void;
  options?: Partial<HandshakeOptions>;
  /**
   * When this handshake's strike register started (ms; default now): proofs made before it
   * (+ skew) may have been seen by a previous run and are refused ('restarted').
   */
  startedAt?: number;
  /** Protocol v2 engine options (freshness window, strike register bound, ...). */
  v2?: Partial<V2Options>;
  /** The host's shared strike register and this worker's lock holder id (V2Deps.register). */
  register?: { buffer: SharedArrayBuffer; holder: number };
}

/**
 * What became of a packet (outcome.ts): a handshake step authorized, let through without
 * authorizing anything, refused (a reset or, in drop mode, silence), or dropped.
 */
export type OutcomeKind = 'accept' | 'pass' | 'reject' | 'drop';

/** What to tell the kernel. When `length` > 0, the packet was rewritten into `out[0..length)`. */
export interface Decision {
  kind: OutcomeKind;
  verdict: number;
  /** New nfmark, or -1 to leave it unchanged. */
  mark: number;
  length: number;
  reason: Reason;
}

export interface Handshake {
  /** Decide one queued packet. `out` receives a rewritten packet; the result object is reused. */
  handle(buf: Uint8Array, hook: number, mark: number, out: Uint8Array): Decision;
  stats(): HandshakeStats;
  /** Replace this host's static handshake keys (rotation). */
  setHostStaticKeys?(keys: readonly HostStaticKey[]): void;
  /** Verified peers may have changed standing (revocation): forget tokens held by reference. */
  peersChanged?(): void;
}

/** packets = accepted + passed + rejected + dropped; byReason (with 'ok') sums to packets too. */
export interface HandshakeStats {
  packets: number;
  accepted: number;
  /** Let through without authorizing anything: retry exchanges, peers of no PU, non-handshake packets. */
  passed: number;
  rejected: number;
  dropped: number;
  serverState: number;
  clientState: number;
  /** Strike register entries, and proofs refused because it was full. */
  register?: number;
  registerFull?: number;
  byReason: Record<string, number>;
}
