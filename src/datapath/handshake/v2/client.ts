// Protocol v2, client role: SYN out (prove possession of the token's key for this
// connection, under the server host's static key) and SYN-ACK in (check the server's proof,
// learn keys and references). docs/protocol.md, "The exchange".

import { formatAddress } from '../../../flow.js';
import { Lru } from '../../../identity/index.js';
import { knownHostKey, unitsKey, type ClientPairKeys, type KnownHostKey, type PeerEntry, type PeerTokens } from './keys.js';
import type { Proofs } from './proof.js';
import { equalBytes, refusal, unusable } from './server.js';
import {
  FLAG_NEED_KEY,
  FLAG_TOKEN_REF,
  KEY_ID_LENGTH,
  MAC2_LENGTH,
  NONCE2_LENGTH,
  PEER_REF_LENGTH,
  RETRY_HAS_TOKEN,
  RETRY_NEED_TOKEN,
  SYN_HEADER_LENGTH,
  TOKEN_REF_LENGTH,
  V2Type,
  decodeBlock2,
  encodeSyn,
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

interface SentProof {
  readonly pk: Uint8Array;
  readonly mac: Uint8Array;
  readonly hk: KnownHostKey;
}

interface ClientConn {
  at: number;
  token: IssuedToken;
  host: ServerHost;
  /** Proofs of this connection's SYNs (retransmissions get fresh ones), newest last. */
  proofs: SentProof[];
  /** The server asked for the full token: send it until a SYN-ACK verifies. */
  sendFull: boolean;
}

/** How often the directory is asked again about an address (ms): its rotations reach us this fast. */
const DIRECTORY_REFRESH_MS = 5_000;
/** SYN proofs of one connection kept for its SYN-ACK: all of them (a SYN and net.ipv4.tcp_syn_retries = 6 retransmissions), since the server may have seen only the first. */
const PROOFS_KEPT = 8;
/** Distinct server ports remembered per address (then the map starts over). */
const PORTS_PER_HOST = 256;

const ZERO_KEY_ID = new Uint8Array(KEY_ID_LENGTH);
const ZERO_PEER_REF = new Uint8Array(PEER_REF_LENGTH);
const ZERO_MAC = new Uint8Array(MAC2_LENGTH);

export interface ClientRole {
  synOut(t: TupleView, isnC: number, pu: V2LocalPu, out: Uint8Array): ClientSynOutResult;
  synAckIn(t: TupleView, isnC: number, isnS: number, payload: Uint8Array): ClientSynAckInResult;
  readonly state: Lru<string, ClientConn>;
}

export function createClientRole(deps: V2Deps, opt: V2Options, proofs: Proofs, peers: PeerTokens, pairKeys: ClientPairKeys): ClientRole {
  const hosts = new Lru<string, ServerHost>(opt.learnedHostKeys);
  const state = new Lru<string, ClientConn>(opt.stateEntries);
  const nonce = new Uint8Array(NONCE2_LENGTH);
  const check = new Uint8Array(MAC2_LENGTH);
  const RETRY: ClientSynAckInResult = Object.freeze({ kind: 'retry', reason: 'retry' });

  function serverHost(t: TupleView, now: number): ServerHost {
    const key = unitsKey(t.buf, t.serverAddrOffset, t.serverAddrOffset + t.addrLength);
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

  function synOut(t: TupleView, isnC: number, pu: V2LocalPu, out: Uint8Array): ClientSynOutResult {
    const tok = pu.tokens[0];
    if (tok === undefined) return refusal('missing-token');
    const now = Math.floor(deps.now());
    const h = serverHost(t, now);
    const hk = h.current;
    const fk = proofs.flowKey(t, isnC);
    let conn = state.get(fk);
    if (conn !== undefined && conn.token !== tok) conn = undefined;
    const byRef = hk !== null && !(conn?.sendFull ?? false) && h.held.has(tok);
    const flags = hk === null ? FLAG_NEED_KEY : byRef ? FLAG_TOKEN_REF : 0;
    if (synLength(flags, tok.bytes.length) > out.length) return refusal('too-large');
    let pk: Uint8Array | null = null;
    if (hk !== null) {
      pk = pairKeys.get(tok, hk);
      if (pk === null) return refusal('bad-host-key');
    }
    deps.random(nonce);
    const refC = tok.hash.subarray(0, TOKEN_REF_LENGTH);
    const length = encodeSyn(
      {
        flags,
        keyId: hk?.id ?? ZERO_KEY_ID,
        ts: hk === null ? 0 : now,
        nonce,
        peerRef: h.portRefs.get(t.serverPort)?.subarray(0, PEER_REF_LENGTH) ?? ZERO_PEER_REF,
        mac: ZERO_MAC,
        token: byRef ? refC : tok.bytes,
      },
      out,
    );
    if (conn === undefined) conn = { at: now, token: tok, host: h, proofs: [], sendFull: false };
    conn.at = now;
    conn.host = h;
    if (pk !== null && hk !== null) {
      proofs.synMac(pk, isnC, out.subarray(0, SYN_HEADER_LENGTH), refC, out, SYN_HEADER_LENGTH);
      if (conn.proofs.length >= PROOFS_KEPT) conn.proofs.shift();
      conn.proofs.push({ pk, hk, mac: out.slice(SYN_HEADER_LENGTH, SYN_HEADER_LENGTH + MAC2_LENGTH) });
    }
    state.set(fk, conn);
    return { kind: 'attach', length, proof: pk !== null };
  }

  function synAckIn(t: TupleView, isnC: number, isnS: number, payload: Uint8Array): ClientSynAckInResult {
    const d = decodeBlock2(payload);
    if (typeof d === 'string') return refusal(d === 'version' ? 'version' : 'malformed');
    const b = d.block;
    if (b.type === V2Type.Syn) return refusal('malformed');
    const now = deps.now();
    const conn = state.get(proofs.flowKey(t, isnC));
    if (conn === undefined || now - conn.at > opt.stateTtlMs) return refusal('no-state');
    const h = conn.host;

    if (b.type === V2Type.Retry) {
      // Unauthenticated (no key in common yet), and never an authorization: the worst a forged
      // one does is cost a SYN retransmission, which an on-path attacker can cause anyway.
      if ((b.flags & RETRY_NEED_TOKEN) !== 0) {
        h.held.delete(conn.token);
        conn.sendFull = true;
      }
      if ((b.flags & RETRY_HAS_TOKEN) !== 0 && b.token !== null) {
        const v = deps.verifyToken(b.token);
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
    if (conn.proofs.length === 0) return refusal('no-state');
    let entry: PeerEntry | undefined;
    let fresh = false;
    if ((b.flags & FLAG_TOKEN_REF) !== 0) {
      entry = peers.get(b.token);
      if (entry === undefined) {
        // We no longer hold the token the server thinks we do: stop naming it; the SYN
        // retransmission asks for it in full.
        h.portRefs.delete(t.serverPort);
        return RETRY;
      }
    } else {
      const v = deps.verifyToken(b.token);
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
    let matched: SentProof | null = null;
    for (let i = conn.proofs.length - 1; i >= 0 && matched === null; i--) {
      const p = conn.proofs[i]!;
      proofs.synAckMac(p.pk, isnC, isnS, p.mac, b.flags, entry.ref, check, 0);
      if (equalBytes(check, b.mac)) matched = p;
    }
    if (matched === null) return refusal('bad-mac');
    // The key that made the proof must belong to the host that issued the server's token:
    // by the directory's (or the teaching token's) host id, or by the token's own hk claim.
    const tk = entry.token;
    if (matched.hk.host !== tk.claims.iss && !(tk.hostKey && equalBytes(tk.hostKey, matched.hk.raw))) return refusal('bad-host-key');
    if (fresh) learn(h, entry);
    h.held.add(conn.token);
    conn.sendFull = false;
    remember(h, t.serverPort, entry.ref);
    return { kind: 'proof', peer: tk, blockStart: d.blockStart };
  }

  return { synOut, synAckIn, state };
}
