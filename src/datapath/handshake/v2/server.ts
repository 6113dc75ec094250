// Protocol v2, server role: SYN in (check the client's proof, freshness, strike register) and
// SYN-ACK out (the server's proof, bound to the client's). docs/protocol.md, "The exchange".

import type { Digests } from '../../../identity/index.js';
import { FlowTable, freeList, keyTuple } from '../flowtable.js';
import { derivePairKey, ownHostKeys, sameBytes, word32, type OwnHostKey, type PeerEntry, type PeerTokens } from './keys.js';
import type { PairKey, Proofs } from './proof.js';
import type { StrikeRegister } from './register.js';
import {
  FLAG_NEED_KEY,
  FLAG_TOKEN_REF,
  MAC2_LENGTH,
  PEER_REF_LENGTH,
  RETRY_HAS_TOKEN,
  RETRY_NEED_TOKEN,
  SYNACK_MAC_AT,
  TOKEN_REF_LENGTH,
  V2Type,
  decodeInto,
  encodeRetry,
  newBlockView,
  putSynAck,
  retryLength,
  synAckLength,
} from './wire.js';
import type {
  HostStaticKey,
  KeyStats,
  Refusal,
  ServerSynAckOutResult,
  ServerSynInResult,
  TupleView,
  V2Deps,
  V2LocalPu,
  V2Options,
  V2Reason,
} from './types.js';

/** Per handshake, reused from connection to connection (FlowTable recycles them). */
interface ServerConn {
  at: number;
  /** 'proof': the SYN proved itself, the SYN-ACK authorizes; 'retry': it did not, the SYN-ACK asks for what was missing. */
  kind: 'proof' | 'retry';
  retryFlags: number;
  pk: PairKey | null;
  /**
   * macC (4 words) and the peerRef hint (2 words), copied: the SYN's bytes live in a reused
   * queue buffer. Fields of this object, not arrays of their own: a recycled connection is
   * cold memory, and every separate object is one more cache miss per connection.
   */
  m0: number;
  m1: number;
  m2: number;
  m3: number;
  h0: number;
  h1: number;
  /** Earlier accepted proofs of this handshake (SYN retransmissions), newest last, at most 7 (with the current one, 8). */
  earlier: Uint8Array[] | null;
  /** The ISN of the first SYN-ACK answered (-1: none yet): the kernel's request keeps it for every retransmission. */
  isnS: number;
}

/** Proofs of one handshake remembered for duplicates (the client keeps as many). */
const EARLIER_KEPT = 8;

const REFUSALS = new Map<V2Reason, Refusal>();
/** Refusals are shared frozen objects: a refused flood allocates nothing for its answers. */
export function refusal(reason: V2Reason): Refusal {
  let r = REFUSALS.get(reason);
  if (r === undefined) {
    r = Object.freeze({ kind: 'refuse', reason });
    REFUSALS.set(reason, r);
  }
  return r;
}

/** Equal lengths and bytes, with no early exit on the bytes (MACs). */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && sameBytes(a, 0, b, 0, a.byteLength);
}

/** Why a verified (possibly cached) token may not be used now, or null. */
export function unusable(entry: PeerEntry, now: number, opt: V2Options, deps: V2Deps): V2Reason | null {
  const c = entry.token.claims;
  const until = entry.token.validUntil ?? c.exp;
  if (now >= until * 1000 + opt.skewMs) return 'expired';
  if (now < c.iat * 1000 - opt.skewMs) return 'not-yet-valid';
  if (deps.revoked?.(entry.token)) return 'revoked';
  return null;
}

/** The connection's macC as bytes (a new array: retransmissions only). */
function macOf(st: ServerConn, out = new Uint8Array(MAC2_LENGTH)): Uint8Array {
  putWord(out, 0, st.m0);
  putWord(out, 4, st.m1);
  putWord(out, 8, st.m2);
  putWord(out, 12, st.m3);
  return out;
}

function putWord(b: Uint8Array, p: number, v: number): void {
  b[p] = v >>> 24;
  b[p + 1] = (v >>> 16) & 0xff;
  b[p + 2] = (v >>> 8) & 0xff;
  b[p + 3] = v & 0xff;
}

/** A duplicate of a proof this handshake accepted (already verified: no constant-time need). */
function sameHandshake(st: ServerConn, mac: Uint8Array, at: number): boolean {
  if (word32(mac, at) === st.m0 && word32(mac, at + 4) === st.m1 && word32(mac, at + 8) === st.m2 && word32(mac, at + 12) === st.m3) return true;
  if (st.earlier !== null) for (const m of st.earlier) if (sameBytes(m, 0, mac, at, MAC2_LENGTH)) return true;
  return false;
}

export interface ServerRole {
  synIn(t: TupleView, isnC: number, payload: Uint8Array): ServerSynInResult;
  synAckOut(t: TupleView, isnC: number, isnS: number, pu: V2LocalPu, out: Uint8Array): ServerSynAckOutResult;
  setHostKeys(keys: readonly HostStaticKey[]): void;
  readonly state: FlowTable<ServerConn>;
  derivations(): number;
}

export function createServerRole(deps: V2Deps, opt: V2Options, proofs: Proofs, peers: PeerTokens, register: StrikeRegister, stats: KeyStats, digests?: Digests): ServerRole {
  let keys: OwnHostKey[] = ownHostKeys(deps.hostStaticKeys ?? []);
  const free = freeList<ServerConn>();
  const state = new FlowTable<ServerConn>(opt.stateEntries, (c) => {
    c.pk = null;
    c.earlier = null;
    free.push(c);
  });
  const startedAt = deps.startedAt ?? deps.now();
  const expected = new Uint8Array(MAC2_LENGTH);
  const macScratch = new Uint8Array(MAC2_LENGTH);
  const b = newBlockView();
  let derivations = 0;

  /** Keep `conn` state for the tuple (state.key must be the tuple's: keyTuple). */
  function keep(now: number, kind: ServerConn['kind'], retryFlags: number, pk: PairKey | null, isnS: number, earlier: Uint8Array[] | null): ServerConn {
    // New objects carry the values they will hold (a time is a double, not a Smi 0; isnS is a
    // uint32, so a double field from the start: NaN, set below): a field that changes
    // representation later deprecates the map and deopts every pass using it.
    const c = free.pop() ?? { at: now, kind, retryFlags, pk, m0: 0, m1: 0, m2: 0, m3: 0, h0: 0, h1: 0, earlier, isnS: NaN };
    c.at = now;
    c.kind = kind;
    c.retryFlags = retryFlags;
    c.pk = pk;
    c.earlier = earlier;
    c.isnS = isnS;
    state.set(c);
    return c;
  }

  /** Our key a SYN names (keyId at p[at..at+4)), if we hold it and its grace has not ended. */
  function ownKey(p: Uint8Array, at: number, now: number): OwnHostKey | undefined {
    const id = word32(p, at);
    for (const k of keys) if (k.idWord === id && now <= k.notAfter) return k;
    return undefined;
  }

  function synIn(t: TupleView, isnC: number, payload: Uint8Array): ServerSynInResult {
    const err = decodeInto(payload, b);
    if (err !== null) return refusal(err === 'version' ? 'version' : 'malformed');
    if (b.type !== V2Type.Syn) return refusal('malformed');
    const now = deps.now();
    register.expire(now);
    const blockStart = b.start;
    keyTuple(state.key, t, isnC);

    let entry: PeerEntry | undefined;
    if ((b.flags & FLAG_TOKEN_REF) !== 0) {
      entry = peers.get(payload, b.tokenAt);
      if (entry === undefined) {
        // Not (or no longer) held: say so; the client's SYN retransmission carries the token.
        keep(now, 'retry', RETRY_NEED_TOKEN, null, -1, null);
        return { kind: 'retry', peer: null, blockStart };
      }
    } else {
      const v = deps.verifyToken(payload.subarray(b.tokenAt, b.tokenAt + b.tokenLength));
      if (v === null) return refusal('rate-limited');
      if (!v.ok) return refusal(v.reason);
      entry = peers.add(v);
    }
    const bad = unusable(entry, now, opt, deps);
    if (bad !== null) {
      peers.delete(entry.ref);
      return refusal(bad);
    }
    if (keys.length === 0) return refusal('no-host-key');
    const own = (b.flags & FLAG_NEED_KEY) !== 0 ? undefined : ownKey(payload, b.keyIdAt, now);
    if (own === undefined) {
      // First contact, or a key we never had or rotated out past its grace: teach the current
      // one (our token's hk claim). Nothing is authorized by this exchange.
      keep(now, 'retry', RETRY_HAS_TOKEN, null, -1, null);
      return { kind: 'retry', peer: entry.token, blockStart };
    }
    let pk = entry.pairKeys.get(own);
    if (pk === undefined) {
      const derived = derivePairKey(own.privateKey, entry.token.epkKey, entry.epkRaw, own.raw, digests);
      if (derived === null) return refusal('malformed');
      derivations++;
      stats.misses++;
      pk = proofs.prepare(derived);
      entry.pairKeys.set(own, pk);
    } else {
      stats.hits++;
    }
    proofs.synMac(pk, isnC, payload, b.start, entry.ref, 0, expected, 0);
    if (!sameBytes(expected, 0, payload, b.macAt, MAC2_LENGTH)) return refusal('bad-mac');
    if (b.ts > now + opt.skewMs || b.ts < now - opt.skewMs - opt.maxAgeMs) return refusal('stale');
    // A previous run may have accepted this proof and lost its register with it.
    if (b.ts < startedAt + opt.skewMs) return refusal('restarted');
    // The register is shared by the host's workers and keyed by the proof alone (the proof
    // does not cover the tuple: NAT). The same proof from another tuple is a replay, from
    // whichever address and worker it comes; from this tuple it is a duplicate of a proof
    // accepted for this very handshake (the network copied the SYN, or reordered an earlier
    // transmission behind a later one) while we remember the handshake. The kernel answers it
    // from the request it holds, with the same ISN; after the connection is gone it would open
    // a new request with a new ISN, and that SYN-ACK is refused below (docs/protocol.md,
    // "Retransmissions and loss").
    const st = state.get();
    switch (register.strikeAt(payload, b.macAt, proofs.tupleHash(t, isnC), now)) {
      case 'same':
        if (st !== undefined && st.kind === 'proof' && now - st.at <= opt.stateTtlMs && sameHandshake(st, payload, b.macAt)) {
          return { kind: 'proof', peer: entry.token, blockStart };
        }
        return refusal('replay');
      case 'seen':
        return refusal('replay');
      case 'full':
        return refusal('register-full');
      default:
        break;
    }
    // A retransmission (a new proof for the same tuple and ISN) answers from now on; the
    // earlier proofs stay recognised as duplicates, and the kernel's request (its ISN) stays.
    let earlier: Uint8Array[] | null = null;
    let isnS = -1;
    if (st !== undefined && st.kind === 'proof') {
      earlier = st.earlier ?? [];
      if (earlier.length >= EARLIER_KEPT - 1) earlier.shift();
      earlier.push(macOf(st));
      isnS = st.isnS;
    }
    const c = st ?? keep(now, 'proof', 0, pk, isnS, earlier);
    c.at = now;
    c.kind = 'proof';
    c.retryFlags = 0;
    c.pk = pk;
    c.earlier = earlier;
    c.isnS = isnS;
    c.m0 = word32(payload, b.macAt);
    c.m1 = word32(payload, b.macAt + 4);
    c.m2 = word32(payload, b.macAt + 8);
    c.m3 = word32(payload, b.macAt + 12);
    c.h0 = word32(payload, b.peerRefAt);
    c.h1 = word32(payload, b.peerRefAt + 4);
    return { kind: 'proof', peer: entry.token, blockStart };
  }

  function synAckOut(t: TupleView, isnC: number, isnS: number, pu: V2LocalPu, out: Uint8Array): ServerSynAckOutResult {
    const now = deps.now();
    keyTuple(state.key, t, isnC);
    const st = state.get();
    if (st === undefined || now - st.at > opt.stateTtlMs) return refusal('no-state');
    const tok = pu.tokens[0];
    if (tok === undefined) return refusal('missing-token');
    if (st.kind === 'retry') {
      const withToken = (st.retryFlags & RETRY_HAS_TOKEN) !== 0;
      if (retryLength(st.retryFlags, tok.bytes.length) > out.length) return refusal('too-large');
      return { kind: 'retry', length: encodeRetry({ flags: st.retryFlags, token: withToken ? tok.bytes : null }, out) };
    }
    // The kernel's request keeps its ISN for every SYN-ACK retransmission. Another ISN for the
    // same proof means a new request: the first connection is gone and its SYN was replayed.
    if (st.isnS === -1) st.isnS = isnS;
    else if (st.isnS !== isnS) return refusal('replay');
    // refS = the first TOKEN_REF_LENGTH bytes of our token's hash. The client names the token
    // it holds for this address and port: send ours by reference when it is that one.
    const byRef = st.h0 === word32(tok.hash, 0) && st.h1 === word32(tok.hash, PEER_REF_LENGTH - 4);
    const flags = byRef ? FLAG_TOKEN_REF : 0;
    if (synAckLength(flags, tok.bytes.length) > out.length) return refusal('too-large');
    const length = putSynAck(flags, tok.bytes, tok.hash, out);
    proofs.synAckMac(st.pk!, isnC, isnS, macOf(st, macScratch), 0, flags, tok.hash, 0, out, SYNACK_MAC_AT);
    return { kind: 'proof', length };
  }

  return {
    synIn,
    synAckOut,
    setHostKeys(k) {
      keys = ownHostKeys(k);
    },
    state,
    derivations: () => derivations,
  };
}
