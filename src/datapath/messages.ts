// Messages between the control plane (main thread) and the datapath workers. Everything here
// crosses postMessage, so it is structured-cloneable (KeyObjects are).

import type { KeyObject } from 'node:crypto';
import type { FlowRecord, HandshakeOptions, HandshakeStats } from './handshake/handshake.js';
import type { V2Options } from './handshake/v2/index.js';

export type TrustConfig =
  | { mode: 'psk'; secret: Uint8Array }
  | { mode: 'ca'; caPublicJwk: Record<string, unknown> };

export interface WorkerConfig {
  queueNum: number;
  maxLen: number;
  /** The daemon's --fail-open, for reports only: it is the ruleset's --queue-bypass; a queue never fails open. */
  failOpen: boolean;
  /**
   * 'handshake' runs the protocol; 'accept' accepts everything (benchmark ceiling of our own
   * path, under the benchmark's own rules); 'passes' accepts with the protocol's connmark
   * operations, for the daemon's own rules (createPassThrough), four passes; 'passes6' the
   * same with the first ACK queued at both ends (v1's six passes, ruleset queue.ackPass).
   */
  mode: 'handshake' | 'accept' | 'passes' | 'passes6';
  trust: TrustConfig;
  hostSecret: Uint8Array;
  /**
   * This host's static X25519 handshake key (<stateDir>/handshake.key): proofs to this host
   * are made under it (protocol v2). Absent: no client can prove itself to this host.
   */
  handshakeKey?: { publicRaw: Uint8Array; privateKey: KeyObject };
  clockSkewSeconds: number;
  handshake: Partial<HandshakeOptions>;
  /** Protocol v2 engine options (tests shrink the strike register; the defaults serve). */
  v2?: Partial<V2Options>;
  /** Policy file text (the daemon validated it), or null for the built-in default. */
  policyText: string | null;
}

export interface PuSnapshot {
  index: number;
  id: string;
  labels: string[];
  tokens: Array<{ bytes: Uint8Array; hash: Uint8Array; epkPrivate: KeyObject }>;
}

export interface Snapshot {
  pus: PuSnapshot[];
  /** Local TCP port -> PU index, for PUs that serve. */
  ports: Array<[number, number]>;
  /**
   * Server host keys the fleet publishes: address (RFC 5952 text, as src/flow.ts) → base64url
   * raw X25519 key (fleet2's HostKeyDirectory). Absent: none; learned keys still serve.
   */
  hostKeys?: Record<string, string>;
  /** Revoked host ids and certificate ids (fleet2's RevocationSet): their tokens are refused ('revoked'). */
  revoked?: string[];
}

/**
 * What changed since the last update (issue 17: a create must not cost a copy of every PU and
 * its keys per worker). Applied in order: `removed` indexes first (an index freed and taken
 * again in one batch ends as its new PU), then `set` (added or changed PUs, whole), then
 * `ports`, the complete port map, present only when it changed.
 */
export interface SnapshotDelta {
  removed: number[];
  set: PuSnapshot[];
  ports?: Array<[number, number]>;
  /** The complete host key map, present only when it changed. */
  hostKeys?: Record<string, string>;
  /** The complete revocation list, present only when it changed. */
  revoked?: string[];
}

/** Whether a delta changes nothing (then nothing is posted). */
export function emptyDelta(d: SnapshotDelta): boolean {
  return d.removed.length === 0 && d.set.length === 0 && d.ports === undefined && d.hostKeys === undefined && d.revoked === undefined;
}

/**
 * A queue in another network namespace (a container's): the whole namespace is one PU, so
 * every SYN leaving it is that PU's (its index is in the nfmark, as on a host) and every
 * SYN reaching it is for that PU, whatever the port.
 */
export interface NamespaceQueue {
  /** Caller's key (the PU id). */
  key: string;
  /** Namespace file, e.g. /var/run/docker/netns/<id>. */
  netns: string;
  queueNum: number;
  puIndex: number;
}

export type ToWorker =
  | { type: 'snapshot'; snapshot: Snapshot }
  | { type: 'delta'; delta: SnapshotDelta }
  | { type: 'policy'; text: string | null }
  | { type: 'ns-open'; ns: NamespaceQueue }
  | { type: 'ns-close'; key: string }
  | { type: 'stop' };

/** Upper bounds (µs) of the per-packet handling-time histogram; the last bucket is +Inf. */
export const HANDLING_BUCKETS_US = [5, 10, 20, 50, 100, 200, 500, 1000, 5000] as const;

export interface WorkerStats {
  queueNum: number;
  handshake: HandshakeStats | null;
  /** Cache counters of token verification and key agreement. */
  caches: { tokenHits: number; tokenMisses: number; x25519Hits: number; x25519Misses: number } | null;
  /** Per-packet handling time: counts per HANDLING_BUCKETS_US bucket (+Inf last), and the sum in µs. */
  handling: { buckets: number[]; sumUs: number; count: number };
  queue: { received: number; verdicts: number; enobufs: number; sendErrors: number; recvErrors: number; batches: number };
  errors: number;
}

/**
 * A FlowRecord as an array, the form flow records cross postMessage in. Cloning an object
 * writes and reads back every key name (and internalizes it) per record; an array carries
 * only the values. A worker posting 256-record batches to its main thread measured
 * 3.6–4.7 µs of process CPU per object record, 2.2 µs per tuple (rebuilt into an object).
 */
export type FlowTuple = [
  time: number,
  direction: FlowRecord['direction'],
  stage: FlowRecord['stage'],
  verdict: FlowRecord['verdict'],
  reason: string,
  ruleId: string,
  localPu: string | null,
  localLabels: readonly string[] | null,
  localPort: number,
  remoteAddr: string,
  remotePort: number,
  remoteHost: string | null,
  remotePu: string | null,
  remoteLabels: readonly string[] | null,
  observed: readonly string[] | null,
];

export function flowToTuple(r: FlowRecord): FlowTuple {
  return [r.time, r.direction, r.stage, r.verdict, r.reason, r.ruleId, r.localPu, r.localLabels, r.localPort, r.remoteAddr, r.remotePort, r.remoteHost, r.remotePu, r.remoteLabels, r.observed ?? null];
}

export function flowFromTuple(t: FlowTuple): FlowRecord {
  const r: FlowRecord = {
    time: t[0],
    direction: t[1],
    stage: t[2],
    verdict: t[3],
    reason: t[4],
    ruleId: t[5],
    localPu: t[6],
    localLabels: t[7],
    localPort: t[8],
    remoteAddr: t[9],
    remotePort: t[10],
    remoteHost: t[11],
    remotePu: t[12],
    remoteLabels: t[13],
  };
  if (t[14] !== null) r.observed = t[14];
  return r;
}

export type FromWorker =
  | { type: 'ready'; queueNum: number }
  | { type: 'flows'; records: FlowTuple[] }
  | { type: 'stats'; stats: WorkerStats }
  | { type: 'fatal'; message: string; code?: string }
  | { type: 'policy-error'; message: string }
  | { type: 'ns-opened'; key: string }
  | { type: 'ns-closed'; key: string }
  | { type: 'ns-error'; key: string; message: string };
