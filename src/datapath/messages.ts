// Messages between the control plane (main thread) and the datapath workers. Everything here
// crosses postMessage, so it is structured-cloneable (KeyObjects are).

import type { EdgeTableJson } from '../learn/edges.js';
import type { UdpPathStats } from './udp/path.js';
import type { UdpOptions } from './udp/exchange.js';
import type { KeyObject } from 'node:crypto';
import type { FlowRecord, HandshakeOptions, HandshakeStats } from './handshake/handshake.js';
import type { LabelBinding } from '../identity/index.js';
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
  /** This host's id (the `iss` of its tokens): names the host key for this host's own addresses. */
  hostId?: string;
  /**
   * When the datapath started (ms): proofs made before it (+ skew) may have been seen by a
   * previous daemon and are refused (`restarted`). One value for every queue, also a namespace
   * queue opened later or a restarted worker: only a daemon restart loses the strike register.
   */
  startedAt?: number;
  clockSkewSeconds: number;
  handshake: Partial<HandshakeOptions>;
  /** UDP exchange options (issue 13); absent: its defaults. */
  udp?: Partial<UdpOptions>;
  /** Protocol v2 engine options (tests shrink the strike register; the defaults serve). */
  v2?: Partial<V2Options>;
  /** Policy file text (the daemon validated it), or null for the built-in default. */
  policyText: string | null;
  /**
   * The host's protocol v2 strike register, shared by all its workers (the pool makes it:
   * v2/register.ts createRegisterBuffer). Absent: each engine keeps a private one.
   */
  register?: SharedArrayBuffer;
}

export interface PuSnapshot {
  index: number;
  id: string;
  labels: string[];
  tokens: Array<{ bytes: Uint8Array; hash: Uint8Array; epkPrivate: KeyObject }>;
}

/**
 * The fleet's trust bundle as workers apply it (src/identity/revocation.ts, docs/cluster.md):
 * in a snapshot, the current values; in a delta, only what changed. Absent = unchanged.
 */
export interface TrustUpdate {
  /** Revoked host ids and certificate ids ("sha256:<hex>"): their tokens are refused (`revoked`). */
  revoked?: string[];
  /** Labels only some hosts may claim (`label-not-allowed`). */
  labelBindings?: LabelBinding[];
  /** CA mode: the trusted CA public keys (replacing the configured ones); [] = the configured ones. */
  cas?: Record<string, unknown>[];
  /**
   * Server host keys the fleet publishes: address (RFC 5952 text, as src/flow.ts) → base64url
   * raw X25519 key (src/fleet/directory.ts HostKeyDirectory), the complete map.
   */
  hostKeys?: Record<string, string>;
  /** The fleet's staleness bound passed: refuse tokens not verified before (`stale-trust`). */
  refuseNew?: boolean;
}

export interface Snapshot extends TrustUpdate {
  pus: PuSnapshot[];
  /** Local TCP port -> PU index, for PUs that serve. */
  ports: Array<[number, number]>;
}

/**
 * What changed since the last update (issue 17: a create must not cost a copy of every PU and
 * its keys per worker). Applied in order: `removed` indexes first (an index freed and taken
 * again in one batch ends as its new PU), then `set` (added or changed PUs, whole), then
 * `ports`, the complete port map, present only when it changed.
 */
export interface SnapshotDelta extends TrustUpdate {
  removed: number[];
  set: PuSnapshot[];
  ports?: Array<[number, number]>;
}

/** Whether a delta changes nothing (then nothing is posted). */
export function emptyDelta(d: SnapshotDelta): boolean {
  return d.removed.length === 0 && d.set.length === 0 && d.ports === undefined && d.revoked === undefined && d.labelBindings === undefined && d.cas === undefined && d.hostKeys === undefined && d.refuseNew === undefined;
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
  /** Whether accept records cross to the main thread (someone follows or logs them). */
  | { type: 'follow'; on: boolean }
  /** Send back the accept records kept while they did not cross (revoke's memory). */
  | { type: 'accepted'; id: number }
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
  /** Accept records counted but not sent (nobody followed or logged them), cumulative. */
  unsentAccepts?: number;
  /** The UDP exchange (issue 13), when this worker judges UDP. */
  udp?: UdpPathStats;
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
  mode?: 'learn' | 'audit' | null,
  /** Absent or null: tcp. */
  protocol?: 'udp' | null,
];

export function flowToTuple(r: FlowRecord): FlowTuple {
  const t: FlowTuple = [r.time, r.direction, r.stage, r.verdict, r.reason, r.ruleId, r.localPu, r.localLabels, r.localPort, r.remoteAddr, r.remotePort, r.remoteHost, r.remotePu, r.remoteLabels, r.observed ?? null, r.mode ?? null];
  if (r.protocol === 'udp') t.push('udp');
  return t;
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
  if (t[15]) r.mode = t[15];
  if (t[16] === 'udp') r.protocol = 'udp';
  return r;
}

export type FromWorker =
  | { type: 'ready'; queueNum: number }
  | { type: 'flows'; records: FlowTuple[] }
  /** Learn mode: the worker's observed edges since the last hand-over (src/learn/observer.ts). */
  | { type: 'edges'; table: EdgeTableJson }
  | { type: 'stats'; stats: WorkerStats }
  | { type: 'accepted'; id: number; records: FlowTuple[] }
  | { type: 'fatal'; message: string; code?: string }
  | { type: 'policy-error'; message: string }
  | { type: 'ns-opened'; key: string }
  | { type: 'ns-closed'; key: string }
  | { type: 'ns-error'; key: string; message: string };
