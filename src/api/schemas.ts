// The local API's wire types and request validation. The CLI and the daemon both speak these;
// the server validates every request body here before a handler sees it.

import { TesseraError } from '../errors.js';
import type { FlowRecord } from '../flow.js';

export const API_VERSION = 'v1';

export interface CreatePuRequest {
  /** "key=value" user labels. */
  labels: string[];
  /** PID to move into the PU's cgroup (the `tessera run` process itself). */
  pid: number;
  /** Optional human name, shown by `tessera status`. */
  name?: string;
}

export interface PuInfo {
  id: string;
  name: string;
  kind: 'process' | 'container';
  index: number;
  classid: string;
  labels: string[];
  pids: number[];
  /** Listening ports whose queue rules are installed (a port appears once it is protected). */
  ports: number[];
  createdAt: string;
  /** Risky settings of a container PU (issue #4); empty for processes. */
  posture: Array<{ flag: string; fix: string }>;
}

/** A flow record on the wire: the time as an ISO string. */
export type FlowEntry = Omit<FlowRecord, 'time'> & { time: string };

export interface StatusResponse {
  host: string;
  trust: 'psk' | 'ca';
  /**
   * The running policy: its file (or "built-in"), content hash, when it was loaded, its
   * warnings, and the last reload that was refused (the running policy stayed).
   */
  policy: { source: string; revision: string; loadedAt: string; warnings: string[]; lastError?: { message: string; at: string } };
  /** Degraded while a component has a problem (rules failing, a policy reload refused). */
  health: { state: 'ok' | 'degraded'; problems: Array<{ component: string; message: string; since: string }> };
  queues: number[];
  failOpen: boolean;
  /**
   * The host rules' last transaction: ok, or failing since `since` with `error` (PUs created
   * meanwhile are refused; the daemon retries on every change and every 10 s). `lastFailure`
   * is the latest failed transaction, kept after a recovery.
   */
  rules: { ok: boolean; error?: string; since: string; lastFailure?: { error: string; at: string } };
  pus: PuInfo[];
  counters: Record<string, number>;
  /** Learn mode (docs/learning.md): each PU's mode under the running policy, and the edge table's fill. */
  learn?: { edges: number; dropped: number; maxEdges: number; modes: Record<string, 'learn' | 'audit' | 'enforce'>; guard?: { at: string; message: string } };
}

export interface ErrorBody {
  error: { code: string; message: string };
}

function invalid(message: string): never {
  throw new TesseraError('TESSERA_ERR_API', message);
}

export function parseCreatePuRequest(body: unknown): CreatePuRequest {
  if (typeof body !== 'object' || body === null) invalid('request body must be a JSON object');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!['labels', 'pid', 'name'].includes(k)) invalid(`unknown field "${k}"`);
  if (!Array.isArray(b.labels) || !b.labels.every((l) => typeof l === 'string')) invalid('"labels" must be an array of "key=value" strings');
  if (!Number.isInteger(b.pid) || (b.pid as number) <= 1) invalid('"pid" must be a process id greater than 1');
  if (b.name !== undefined && (typeof b.name !== 'string' || b.name.length > 128)) invalid('"name" must be a string of at most 128 characters');
  return { labels: b.labels as string[], pid: b.pid as number, ...(b.name !== undefined ? { name: b.name as string } : {}) };
}

/** POST /v1/containers/enroll: the runtime shim, between `runc create` and `start`. */
export interface EnrollContainerRequest {
  /** The container's ID as the runtime got it (Docker's 64 hex digits). */
  id: string;
  /** Host PID of the container's init (runc's --pid-file). */
  pid: number;
  /** The OCI bundle directory (its config.json says which namespaces are new). */
  bundle: string;
}

export interface EnrollContainerResponse {
  /** False when the container is no PU of its own (it shares another container's network namespace). */
  enrolled: boolean;
  pu?: PuInfo;
  reason?: string;
}

export function parseEnrollContainerRequest(body: unknown): EnrollContainerRequest {
  if (typeof body !== 'object' || body === null) invalid('request body must be a JSON object');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!['id', 'pid', 'bundle'].includes(k)) invalid(`unknown field "${k}"`);
  if (typeof b.id !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(b.id)) invalid('"id" must be a container id (letters, digits, "_", ".", "-"; at most 128)');
  if (!Number.isInteger(b.pid) || (b.pid as number) <= 1) invalid('"pid" must be a process id greater than 1');
  if (typeof b.bundle !== 'string' || !b.bundle.startsWith('/') || b.bundle.length > 4096 || b.bundle.split('/').includes('..')) invalid('"bundle" must be an absolute path without ".."');
  return { id: b.id, pid: b.pid as number, bundle: b.bundle };
}

/** A connection `tessera flows --revoke` found refused by the current policy. */
export interface RevokedFlowInfo {
  direction: 'ingress' | 'egress';
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  localPu: string | null;
  localLabels: readonly string[];
  remoteLabels: readonly string[] | null;
  remoteHost: string | null;
  ruleId: string;
  /** False in a dry run (or when the socket was already gone). */
  cut: boolean;
}
