// Protocol v2, client role: SYN out (prove possession of the token's key for this
// connection, under the server host's static key) and SYN-ACK in (check the server's proof,
// learn keys and references). docs/protocol.md, "The exchange".

import { formatAddress } from '../../../flow.js';
import { Lru } from '../../../identity/index.js';
import { FlowTable, freeList, keyTuple } from '../flowtable.js';
import { knownHostKey, sameBytes, unitsKey, word32, type ClientPairKeys, type KnownHostKey, type PeerEntry, type PeerTokens } from './keys.js';
import type { PairKey, Proofs } from './proof.js';
import { equalBytes, refusal, unusable } from './server.js';
import {
  FLAG_NEED_KEY,
  FLAG_TOKEN_REF,
  MAC2_LENGTH,
  NONCE2_LENGTH,
  RETRY_HAS_TOKEN,
  RETRY_NEED_TOKEN,
  SYN_MAC_AT,
  V2Type,
  decodeInto,
  newBlockView,
  putSyn,
  synLength,
} from './wire.js';
import type { ClientSynAckInResult, ClientSynOutResult, TupleView, V2Deps, V2LocalPu, V2Options } from './types.js';
import type { IssuedToken } from '../types.js';

/** What a client knows of one server address. */
interface ServerHost {
  /** The key proofs are made under: the directory's or the last one a verified token taught, whichever changed last. */
  current: KnownHostKey | null;
  /** The directory's answer last time it was asked (raw key), to notice when it changes. */
  dirRaw: Uint8Array | null;
  dirAt: number;
  /** Our tokens this host has verified (it accepts them by reference). */
  readonly held: WeakSet<IssuedToken>;
  /** Per server port, the reference of the server token last verified there (the SYN's peerRef hint). */
  readonly portRefs: Map<number, Uint8Array>;
}

/** Per connection, reused from connection to connection (FlowTable recycles them). */
interface ClientConn {
  at: number;
  token: IssuedToken | null;
  host: ServerHost | null;
  /** Proofs of this connection's SYNs (retransmissions get fresh ones), oldest first: count, keys and MACs. */
  proofs: number;
  /**
   * The first proof inline (key, host key, macC): most connections send one SYN, and a
   * recycled connection is cold memory, where each separate object costs a cache miss.
   */
  pk0: PairKey | null;
  hk0: KnownHostKey | null;
  readonly mac0: Uint8Array;
  /** Proofs 1.. (SYN retransmissions), made when first needed. */
  more: Retransmitted | null;
  /** The server asked for the full token: send it until a SYN-ACK verifies. */
  sendFull: boolean;
}

/** How often the directory is asked again about an address (ms): its rotations reach us this fast. */
const DIRECTORY_REFRESH_MS = 5_000;
interface Retransmitted {
  readonly pks: Array<PairKey | null>;
  readonly hks: Array<KnownHostKey | null>;
  /** macC of proof i at macs[16 (i - 1) ..) (proof 0 is inline). */
  readonly macs: Uint8Array;
}

/** SYN proofs of one connection kept for its SYN-ACK: all of them (a SYN and net.ipv4.tcp_syn_retries = 6 retransmissions), since the server may have seen only the first. */
const PROOFS_KEPT = 8;
/** Distinct server ports remembered per address (then the map starts over). */
const PORTS_PER_HOST = 256;

export interface ClientRole {
  synOut(t: TupleView, isnC: number, pu: V2LocalPu, out: Uint8Array): ClientSynOutResult;
  synAckIn(t: TupleView, isnC: number, isnS: number, payload: Uint8Array): ClientSynAckInResult;
  sent(t: TupleView, isnC: number): boolean;
  readonly state: FlowTable<ClientConn>;
}

export function createClientRole(deps: V2Deps, opt: V2Options, proofs: Proofs, peers: PeerTokens, pairKeys: ClientPairKeys): ClientRole {
  // An IPv4 server address is its own key (a number); an IPv6 one a string of 8 units.
  const hosts = new Lru<number | string, ServerHost>(opt.learnedHostKeys);
  const free = freeList<ClientConn>();
  // A dropped connection's proofs keep their (long-lived) keys until the object is reused.
  const state = new FlowTable<ClientConn>(opt.stateEntries, (c) => {
    c.token = null;
    c.host = null;
    c.proofs = 0;
    free.push(c);
  });
  const nonce = new Uint8Array(NONCE2_LENGTH);
  const check = new Uint8Array(MAC2_LENGTH);
  const b = newBlockView();
  const RETRY: ClientSynAckInResult = Object.freeze({ kind: 'retry', reason: 'retry' });

  function serverHost(t: TupleView, now: number): ServerHost {
    const key = t.addrLength === 4 ? word32(t.buf, t.serverAddrOffset) : unitsKey(t.buf, t.serverAddrOffset, t.serverAddrOffset + t.addrLength);
    let h = hosts.get(key);
    if (h === undefined) {
      h = { current: null, dirRaw: null, dirAt: Number.NEGATIVE_INFINITY, held: new WeakSet(), portRefs: new Map() };
      hosts.set(key, h);
    }
    if (deps.hostKeys && now - h.dirAt >= DIRECTORY_REFRESH_MS) {
      h.dirAt = now;
      const e = deps.hostKeys.lookup(formatAddress(t.buf, t.serverAddrOffset, t.addrLength as 4 | 16));
      if (e !== undefined && (h.dirRaw === null || !equalBytes(h.dirRaw, e.key))) {
        const k = knownHostKey(e.key, e.host);
        if (k !== null) {
          h.dirRaw = k.raw;
          h.current = k;
        }
      }
    }
    return h;
  }

  /** A key taught by a verified server token (its `hk` claim, signed by its host). */
  function learn(h: ServerHost, peer: PeerEntry): void {
    const raw = peer.token.hostKey;
    if (!raw || (h.current !== null && equalBytes(h.current.raw, raw))) return;
    const k = knownHostKey(raw, peer.token.claims.iss);
    if (k !== null) h.current = k;
  }

  function remember(h: ServerHost, port: number, ref: Uint8Array): void {
    if (h.portRefs.size >= PORTS_PER_HOST && !h.portRefs.has(port)) h.portRefs.clear();
    h.portRefs.set(port, ref);
  }

  /** A retransmission's proof (the macC at out[SYN_MAC_AT..)): the newest PROOFS_KEPT are kept, proof 0 inline. */
  function keepRetransmitted(conn: ClientConn, pk: PairKey, hk: KnownHostKey, out: Uint8Array): void {
    const m = (conn.more ??= { pks: new Array<PairKey | null>(PROOFS_KEPT).fill(null), hks: new Array<KnownHostKey | null>(PROOFS_KEPT).fill(null), macs: new Uint8Array((PROOFS_KEPT - 1) * MAC2_LENGTH) });
    if (conn.proofs >= PROOFS_KEPT) {
      // Drop the oldest: proof 1 moves inline, the rest down one.
      conn.pk0 = m.pks[1]!;
      conn.hk0 = m.hks[1]!;
      for (let k = 0; k < MAC2_LENGTH; k++) conn.mac0[k] = m.macs[k]!;
      m.macs.copyWithin(0, MAC2_LENGTH);
      for (let i = 2; i < PROOFS_KEPT; i++) {
        m.pks[i - 1] = m.pks[i]!;
        m.hks[i - 1] = m.hks[i]!;
      }
      conn.proofs = PROOFS_KEPT - 1;
    }
    const i = conn.proofs++;
    m.pks[i] = pk;
    m.hks[i] = hk;
    for (let k = 0; k < MAC2_LENGTH; k++) m.macs[(i - 1) * MAC2_LENGTH + k] = out[SYN_MAC_AT + k]!;
  }

  function synOut(t: TupleView, isnC: number, pu: V2LocalPu, out: Uint8Array): ClientSynOutResult {
    const tok = pu.tokens[0];
    if (tok === undefined) return refusal('missing-token');
    const now = Math.floor(deps.now());
    const h = serverHost(t, now);
    const hk = h.current;
    keyTuple(state.key, t, isnC);
    let conn = state.get();
    const same = conn !== undefined && conn.token === tok;
    const byRef = hk !== null && !(same && conn!.sendFull) && h.held.has(tok);
    const flags = hk === null ? FLAG_NEED_KEY : byRef ? FLAG_TOKEN_REF : 0;
    if (synLength(flags, tok.bytes.length) > out.length) return refusal('too-large');
    let pk: PairKey | null = null;
    if (hk !== null) {
      pk = pairKeys.get(tok, hk);
      if (pk === null) return refusal('bad-host-key');
    }
    deps.random(nonce);
    const length = putSyn(flags, hk?.id ?? null, hk === null ? 0 : now, nonce, h.portRefs.get(t.serverPort) ?? null, tok.bytes, tok.hash, out);
    if (conn === undefined) {
      // A new object starts with the values it keeps (a double time, the token and host):
      // fields that change representation or class later deopt every pass using the map.
      conn = free.pop() ?? { at: now, token: tok, host: h, proofs: 0, pk0: pk, hk0: hk, mac0: new Uint8Array(MAC2_LENGTH), more: null, sendFull: false };
      conn.proofs = 0;
      conn.sendFull = false;
      state.set(conn);
    } else if (!same) {
      // Another token on this tuple and ISN (rotated between two SYNs): a new handshake.
      conn.proofs = 0;
      conn.sendFull = false;
    }
    conn.at = now;
    conn.token = tok;
    conn.host = h;
    if (pk !== null && hk !== null) {
      // The reference macC covers is our token's (refC), whether the SYN sends it or the token.
      proofs.synMac(pk, isnC, out, 0, tok.hash, 0, out, SYN_MAC_AT);
      if (conn.proofs === 0) {
        conn.pk0 = pk;
        conn.hk0 = hk;
        for (let k = 0; k < MAC2_LENGTH; k++) conn.mac0[k] = out[SYN_MAC_AT + k]!;
        conn.proofs = 1;
      } else {
        keepRetransmitted(conn, pk, hk, out);
      }
    }
    return { kind: 'attach', length, proof: pk !== null };
  }

  function synAckIn(t: TupleView, isnC: number, isnS: number, payload: Uint8Array): ClientSynAckInResult {
    const err = decodeInto(payload, b);
    if (err !== null) return refusal(err === 'version' ? 'version' : 'malformed');
    if (b.type === V2Type.Syn) return refusal('malformed');
    const now = deps.now();
    keyTuple(state.key, t, isnC);
    const conn = state.get();
    if (conn === undefined || conn.token === null || conn.host === null || now - conn.at > opt.stateTtlMs) return refusal('no-state');
    const h = conn.host;

    if (b.type === V2Type.Retry) {
      // Unauthenticated (no key in common yet), and never an authorization: the worst a forged
      // one does is cost a SYN retransmission, which an on-path attacker can cause anyway.
      if ((b.flags & RETRY_NEED_TOKEN) !== 0) {
        h.held.delete(conn.token);
        conn.sendFull = true;
      }
      if ((b.flags & RETRY_HAS_TOKEN) !== 0 && b.tokenLength > 0) {
        const v = deps.verifyToken(payload.subarray(b.tokenAt, b.tokenAt + b.tokenLength));
        if (v === null) return refusal('rate-limited');
        if (!v.ok) return refusal(v.reason);
        const entry = peers.add(v);
        const bad = unusable(entry, now, opt, deps);
        if (bad !== null) return refusal(bad);
        if (!v.hostKey) return refusal('no-host-key');
        learn(h, entry);
        remember(h, t.serverPort, entry.ref);
      }
      return RETRY;
    }

    // A proof SYN-ACK.
    if (conn.proofs === 0) return refusal('no-state');
    let entry: PeerEntry | undefined;
    let fresh = false;
    if ((b.flags & FLAG_TOKEN_REF) !== 0) {
      entry = peers.get(payload, b.tokenAt);
      if (entry === undefined) {
        // We no longer hold the token the server thinks we do: stop naming it; the SYN
        // retransmission asks for it in full.
        h.portRefs.delete(t.serverPort);
        return RETRY;
      }
    } else {
      const v = deps.verifyToken(payload.subarray(b.tokenAt, b.tokenAt + b.tokenLength));
      if (v === null) return refusal('rate-limited');
      if (!v.ok) return refusal(v.reason);
      entry = peers.add(v);
      fresh = true;
    }
    const bad = unusable(entry, now, opt, deps);
    if (bad !== null) {
      peers.delete(entry.ref);
      return refusal(bad);
    }
    let matched: KnownHostKey | null = null;
    for (let i = conn.proofs - 1; i >= 1 && matched === null; i--) {
      const m = conn.more!;
      proofs.synAckMac(m.pks[i]!, isnC, isnS, m.macs, (i - 1) * MAC2_LENGTH, b.flags, entry.ref, 0, check, 0);
      if (sameBytes(check, 0, payload, b.macAt, MAC2_LENGTH)) matched = m.hks[i]!;
    }
    if (matched === null) {
      proofs.synAckMac(conn.pk0!, isnC, isnS, conn.mac0, 0, b.flags, entry.ref, 0, check, 0);
      if (sameBytes(check, 0, payload, b.macAt, MAC2_LENGTH)) matched = conn.hk0;
    }
    if (matched === null) return refusal('bad-mac');
    // The key that made the proof must belong to the host that issued the server's token:
    // by the directory's (or the teaching token's) host id, or by the token's own hk claim.
    const tk = entry.token;
    if (matched.host !== tk.claims.iss && !(tk.hostKey && equalBytes(tk.hostKey, matched.raw))) return refusal('bad-host-key');
    if (fresh) learn(h, entry);
    h.held.add(conn.token);
    conn.sendFull = false;
    remember(h, t.serverPort, entry.ref);
    return { kind: 'proof', peer: tk, blockStart: b.start };
  }

  /** Whether a SYN of ours left on this tuple with this ISN (and its state is still kept). */
  function sent(t: TupleView, isnC: number): boolean {
    keyTuple(state.key, t, isnC);
    return state.peek() !== undefined;
  }

  return { synOut, synAckIn, sent, state };
}
