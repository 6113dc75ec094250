// Protocol v2's contract with the datapath: what the pure engine is given (clock, randomness,
// token verifier, host keys), what each of the four queue passes hands it, and what it
// answers. docs/protocol.md is the normative description.
//
//   client host                                       server host
//   SYN out      clientSynOut: attach proof     ───▶  SYN in       serverSynIn: check proof,
//                                                                  strike register, keep state
//   SYN-ACK in   clientSynAckIn: check server   ◀───  SYN-ACK out  serverSynAckOut: attach the
//                proof → AUTHORIZE                                 server's proof → AUTHORIZE
//
// The ACK never reaches userspace. Nothing here does I/O; node:crypto only.

import type { KeyObject } from 'node:crypto';
import type { Digests, VerifiedToken, VerifyFailureReason } from '../../../identity/index.js';
import type { IssuedToken } from '../types.js';

/**
 * Reason codes v2 adds to the datapath's `Reason` table (add, never rename). The v1 codes
 * it reuses: 'malformed', 'bad-mac', 'replay', 'no-state', 'missing-token', 'too-large' and
 * the token verifier's ('bad-signature', 'untrusted-issuer', 'expired', 'not-yet-valid').
 */
export type V2NewReason =
  /** A block of another protocol version (a v1 peer): refused, never half-understood. */
  | 'version'
  /** The proof's timestamp is outside the freshness window (clock skew beyond the bound, or an old capture). */
  | 'stale'
  /** The proof is timestamped before this engine started (+ skew): it may have been seen by a previous run. */
  | 'restarted'
  /** The strike register is full of live entries: new proofs are refused until some expire. */
  | 'register-full'
  /** The token's host or certificate is revoked (fleet2's RevocationSet). */
  | 'revoked'
  /** The server token's host key is not the key the proof was made under. */
  | 'bad-host-key'
  /** Client: no host key known for this server and the SYN-ACK taught none; nothing to prove with. */
  | 'no-host-key'
  /** A retry exchange (first contact, key or token unknown): nothing authorized, TCP retransmits. */
  | 'retry';

export type V2Reason = V2NewReason | VerifyFailureReason | 'bad-mac' | 'replay' | 'no-state' | 'missing-token' | 'too-large' | 'rate-limited';

/**
 * The connection's 4-tuple, always named from the CLIENT's point of view, whichever side
 * builds it: client = the SYN's source, server = the SYN's destination. (The client's SYN out
 * and SYN-ACK in see client = local, the server's see client = remote: each side must fill
 * the fields by role, not by local/remote, or the MACs differ.)
 *
 * The addresses are the ones the SERVER sees on its SYN: when the client host itself
 * translates the source (MASQUERADE of a container), its caller must put the translated
 * address here, or the server refuses with 'bad-mac' (docs/protocol.md, "NAT").
 *
 * A reusable view: addresses are read from `buf` at the offsets (no copy, no allocation).
 */
export interface TupleView {
  buf: Uint8Array;
  /** 4 or 16. */
  addrLength: number;
  clientAddrOffset: number;
  serverAddrOffset: number;
  clientPort: number;
  serverPort: number;
}

/** A server host's static X25519 handshake key (the brief's contract: `<stateDir>/handshake.key`). */
export interface HostStaticKey {
  /** Raw 32-byte public key. */
  readonly publicRaw: Uint8Array;
  readonly privateKey: KeyObject;
  /**
   * Milliseconds since the epoch after which proofs under this key are refused; undefined
   * for the current key. A rotated-out key is kept with `notAfter` = rotation + grace.
   */
  readonly notAfter?: number;
}

/** The brief's contract, implemented by fleet2 (address = RFC 5952 text as in src/flow.ts). */
export interface HostKeyDirectory {
  lookup(address: string): { host: string; key: Uint8Array } | undefined;
}

/** A local PU as v2 needs it: its tokens, newest first (src/datapath/handshake/types.ts). */
export interface V2LocalPu {
  readonly tokens: readonly IssuedToken[];
}

export interface V2Options {
  /** Tolerated clock difference between two hosts (ms), both directions. */
  skewMs: number;
  /** Oldest a proof may be on arrival beyond the skew (ms): transit and queueing. */
  maxAgeMs: number;
  /** Strike register bound (entries; the pool's shared register holds this × its workers: entries = rate × window, docs/protocol.md). */
  registerEntries: number;
  /** Verified peer tokens kept by reference (entries). */
  peerTokens: number;
  /** Per-connection handshake state on each side (entries) and how long it lives (ms). */
  stateEntries: number;
  stateTtlMs: number;
  /** Host keys learned from tokens (addresses). */
  learnedHostKeys: number;
}

export const DEFAULT_V2_OPTIONS: V2Options = {
  skewMs: 3_000,
  maxAgeMs: 2_000,
  // Entries live skew + maxAge + skew = 8 s: 131 072 per worker (the host's shared register
  // holds that × its workers) takes 16 000 new proofs a second per worker at capacity, and
  // refuses none below ~94 % of it (two candidate stripes per proof: register.ts).
  registerEntries: 131_072,
  peerTokens: 4_096,
  stateEntries: 16_384,
  // Covers the kernel's SYN-ACK retransmissions (1, 3, 7, 15 and 31 s after the first
  // SYN-ACK, net.ipv4.tcp_synack_retries = 5): the last one still gets its proof, and the
  // client still knows the SYN it answers (test/unit/datapath/v2/loss.test.ts).
  stateTtlMs: 64_000,
  learnedHostKeys: 4_096,
};

/** Pair-key cache counters (the worker's x25519 cache metrics: a miss is one X25519 + HKDF). */
export interface KeyStats {
  hits: number;
  misses: number;
}

export interface V2Deps {
  /** Wall clock, milliseconds since the epoch (proof timestamps are compared across hosts). */
  now(): number;
  /** Fill `out` with random bytes (a CSPRNG: crypto.randomFillSync). Asked for 1 KB at a time, pooled for nonces. */
  random(out: Uint8Array): void;
  /**
   * Full token verification (signature, certificate, time): src/identity's cached
   * TokenVerifier.verify. Called only for tokens sent in full; by-reference hits skip it.
   * null = the caller's budget for this source is spent (the engine refuses 'rate-limited').
   */
  verifyToken(bytes: Uint8Array): VerifiedToken | { readonly ok: false; readonly reason: VerifyFailureReason } | null;
  /** The brief's revocation contract: true when the token's host (or certificate) is revoked. Checked on every use, cached or not. */
  revoked?(token: VerifiedToken): boolean;
  /** Host keys published by the fleet (optional; learned keys are used when it has none). */
  hostKeys?: HostKeyDirectory;
  /** This host's static handshake keys, current first (empty: proofs to this host cannot be made; SYNs get 'no-host-key'). */
  hostStaticKeys?: readonly HostStaticKey[];
  /** HMAC implementation (the native addon's in workers); node:crypto by default. */
  digests?: Digests;
  /** When this engine started (ms); defaults to now() at creation. Proofs older than it + skew are refused. */
  startedAt?: number;
  /**
   * The host's strike register, shared by its workers (register.ts createRegisterBuffer; the
   * pool makes it) and this worker's lock holder id (≥ 1, unique per live worker). Absent: a
   * private register of options.registerEntries.
   */
  register?: { buffer: SharedArrayBuffer; holder: number };
  /** Counted into: a pair key found cached (hits) or derived (misses). Default: private counters. */
  keyStats?: KeyStats;
  options?: Partial<V2Options>;
}

// ---- results ----------------------------------------------------------------------------

/** SYN out: the block was written to `out[0..length)`; attach it with the marker option. */
export interface ClientSynOk {
  readonly kind: 'attach';
  readonly length: number;
  /** True when the SYN carries a proof; false for a first-contact SYN (no key known: a retry will follow). */
  readonly proof: boolean;
}

/** Server SYN in, a valid proof: strip the block, keep going; the SYN-ACK out authorizes. */
export interface ServerSynProof {
  readonly kind: 'proof';
  readonly peer: VerifiedToken;
  /** Bytes of the payload in front of the block (0 for a Tessera SYN). */
  readonly blockStart: number;
}
/**
 * Server SYN in, no usable proof yet (first contact, an unknown host key id, or a token by
 * reference this host does not hold): strip; the SYN-ACK out will carry a retry block and
 * must NOT authorize. `peer` is set when the SYN carried a full token that verified.
 */
export interface ServerSynRetry {
  readonly kind: 'retry';
  readonly peer: VerifiedToken | null;
  readonly blockStart: number;
}
export interface Refusal {
  readonly kind: 'refuse';
  readonly reason: V2Reason;
}

/** Server SYN-ACK out: the block in `out[0..length)`; 'proof' authorizes the flow, 'retry' does not. */
export interface ServerSynAckOk {
  readonly kind: 'proof' | 'retry';
  readonly length: number;
}

/** Client SYN-ACK in: the server proved itself; strip the block and AUTHORIZE. */
export interface ClientSynAckProof {
  readonly kind: 'proof';
  readonly peer: VerifiedToken;
  readonly blockStart: number;
}
/**
 * Client SYN-ACK in, a retry block: learned what was missing (host key, or that the server
 * wants the full token). DROP this SYN-ACK silently (no reset): the kernel's SYN
 * retransmission (same ISN) carries what the server needs.
 */
export interface ClientSynAckRetry {
  readonly kind: 'retry';
  readonly reason: 'retry';
}

export type ClientSynOutResult = ClientSynOk | Refusal;
export type ServerSynInResult = ServerSynProof | ServerSynRetry | Refusal;
export type ServerSynAckOutResult = ServerSynAckOk | Refusal;
export type ClientSynAckInResult = ClientSynAckProof | ClientSynAckRetry | Refusal;

export interface V2Stats {
  registerSize: number;
  registerFull: number;
  peerTokens: number;
  peerTokenHits: number;
  peerTokenMisses: number;
  pairKeys: number;
  pairKeyDerivations: number;
  serverState: number;
  clientState: number;
}

/**
 * One engine per datapath worker (both roles). Every method is synchronous, never throws on
 * packet bytes, and reads/writes only the arrays it is given.
 */
export interface V2Engine {
  /**
   * Client, SYN out (POSTROUTING). Writes the SYN block for `pu`'s newest token into `out`.
   * Call for every SYN the kernel sends, retransmissions included: each gets a fresh
   * timestamp and nonce (docs/protocol.md, "Retransmissions").
   */
  clientSynOut(t: TupleView, isnC: number, pu: V2LocalPu, out: Uint8Array): ClientSynOutResult;
  /** Server, SYN in (PREROUTING). `payload` = the TCP payload (block at its end). */
  serverSynIn(t: TupleView, isnC: number, payload: Uint8Array): ServerSynInResult;
  /**
   * Server, SYN-ACK out (POSTROUTING). `isnC` = ack − 1, `isnS` = the SYN-ACK's seq. `pu` =
   * the local server PU. Also for the kernel's SYN-ACK retransmissions (same answer).
   * 'refuse' with 'no-state' when no SYN of this flow was judged (restart, eviction): drop it.
   */
  serverSynAckOut(t: TupleView, isnC: number, isnS: number, pu: V2LocalPu, out: Uint8Array): ServerSynAckOutResult;
  /** Client, SYN-ACK in (PREROUTING). `isnC` = ack − 1, `isnS` = seq. */
  clientSynAckIn(t: TupleView, isnC: number, isnS: number, payload: Uint8Array): ClientSynAckInResult;
  /**
   * Whether this engine's client sent a SYN on `t` with ISN `isnC` that it still keeps state
   * for (a simultaneous open: the datapath sees our own SYN-ACK leave on that tuple with that ISN).
   */
  clientSent(t: TupleView, isnC: number): boolean;
  /** Replace this host's static keys (current first; rotated-out ones with `notAfter`). */
  setHostKeys(keys: readonly HostStaticKey[]): void;
  /** Forget cached peer tokens (e.g. when the revocation set or trust changed). */
  clearPeerTokens(): void;
  stats(): V2Stats;
}
