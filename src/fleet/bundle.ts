// Signed fleet bundles. Pure: canonical bytes, an Ed25519 signature by the operator key, and
// verification that refuses a bad signature, an unknown key, the wrong kind, a revision older
// than the one applied (rollback) and a different bundle under the same revision
// (equivocation). A compromised or careless etcd can delay a bundle, never forge or rewind one.
//
// Stored form (the etcd value and the fail-static file): JSON
//   { "format": "tessera-bundle/1", "keyId": "op-…", "body": base64url(canonical JSON),
//     "signature": base64url(Ed25519("tessera-bundle/1\0" ‖ body bytes)) }
// The signature covers the exact body bytes, so verification never re-canonicalizes.

import { createHash, sign, verify, type KeyObject } from 'node:crypto';
import { BUNDLE_KINDS, type BundleKind } from './layout.js';
import type { OperatorKey, OperatorPublicKey } from './operator-key.js';
import { labelBindingProblem, type LabelBinding } from '../identity/revocation.js';

export const BUNDLE_FORMAT = 'tessera-bundle/1';
const DOMAIN = Buffer.from(`${BUNDLE_FORMAT}\0`);
/** etcd's default request limit is 1.5 MiB; a bundle stays well under it. */
export const MAX_BUNDLE_BYTES = 1024 * 1024;

export interface PolicyPayload {
  /** The policy file's YAML text, validated by the pusher and again by every daemon. */
  readonly text: string;
  /** Where it came from (file name), shown in status. */
  readonly source: string;
}

export interface TrustPayload {
  /** CA public keys every host accepts certificates from. */
  readonly cas: readonly { readonly name: string; readonly publicJwk: Readonly<Record<string, string>> }[];
  /**
   * Hosts no longer accepted: certSha256 null revokes the host id (every certificate of it,
   * renewed ones too); a hex SHA-256 revokes that one certificate (a replaced key).
   */
  readonly revoked: readonly { readonly host: string; readonly certSha256: string | null; readonly at: string }[];
  /** Labels only the listed hosts may claim (identity/revocation.ts); absent = none bound. */
  readonly labelBindings?: readonly LabelBinding[];
}

export interface PayloadOf {
  policy: PolicyPayload;
  trust: TrustPayload;
}

export interface Bundle<K extends BundleKind = BundleKind> {
  readonly kind: K;
  /** Monotonic, signed: daemons refuse anything not newer than what they applied. */
  readonly revision: number;
  readonly issuedAt: string;
  readonly keyId: string;
  readonly payload: PayloadOf[K];
}

export interface AppliedMark {
  readonly revision: number;
  readonly digest: string;
}

export type RefusalReason = 'malformed' | 'unknown-key' | 'bad-signature' | 'wrong-kind' | 'rollback' | 'equivocation' | 'bad-payload';

export type Verified<K extends BundleKind> =
  | { readonly ok: true; readonly bundle: Bundle<K>; readonly digest: string; readonly duplicate: boolean }
  | { readonly ok: false; readonly reason: RefusalReason; readonly message: string };

/** JSON with object keys sorted and no whitespace; refuses values JSON cannot carry exactly. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error('canonical JSON: non-finite number');
    return JSON.stringify(v);
  }
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  throw new Error(`canonical JSON: cannot encode a ${typeof v}`);
}

export function digestOf(bodyBytes: Buffer): string {
  return createHash('sha256').update(bodyBytes).digest('hex');
}

/** Sign a bundle; returns the stored form (JSON text). */
export function signBundle<K extends BundleKind>(key: OperatorKey, kind: K, revision: number, payload: PayloadOf[K], issuedAt: Date = new Date()): string {
  if (!Number.isSafeInteger(revision) || revision < 1) throw new Error(`bundle revision must be a positive integer, got ${revision}`);
  const problem = payloadProblem(kind, payload);
  if (problem) throw new Error(`${kind} bundle: ${problem}`);
  const body = Buffer.from(canonicalJson({ kind, revision, issuedAt: issuedAt.toISOString(), keyId: key.keyId, payload }));
  if (body.length > MAX_BUNDLE_BYTES) throw new Error(`${kind} bundle is ${body.length} bytes, over the ${MAX_BUNDLE_BYTES}-byte limit`);
  const signature = sign(null, Buffer.concat([DOMAIN, body]), key.privateKey);
  return JSON.stringify({ format: BUNDLE_FORMAT, keyId: key.keyId, body: body.toString('base64url'), signature: signature.toString('base64url') });
}

function payloadProblem(kind: BundleKind, p: unknown): string | null {
  if (p === null || typeof p !== 'object' || Array.isArray(p)) return 'payload must be an object';
  const o = p as Record<string, unknown>;
  if (kind === 'policy') {
    if (typeof o.text !== 'string') return 'payload.text must be a string';
    if (typeof o.source !== 'string') return 'payload.source must be a string';
    return null;
  }
  if (!Array.isArray(o.cas) || !Array.isArray(o.revoked)) return 'payload.cas and payload.revoked must be arrays';
  for (const ca of o.cas as unknown[]) {
    const c = ca as Record<string, unknown> | null;
    if (!c || typeof c.name !== 'string' || c.publicJwk === null || typeof c.publicJwk !== 'object') return 'each CA needs name and publicJwk';
  }
  for (const r of o.revoked as unknown[]) {
    const c = r as Record<string, unknown> | null;
    if (!c || typeof c.host !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(c.host) || !(c.certSha256 === null || (typeof c.certSha256 === 'string' && /^[0-9a-f]{64}$/.test(c.certSha256))) || typeof c.at !== 'string') {
      return 'each revoked entry needs host (a host id), certSha256 (64 hex digits, or null for the whole host) and at';
    }
  }
  if (o.labelBindings !== undefined) {
    if (!Array.isArray(o.labelBindings)) return 'payload.labelBindings must be an array';
    for (const b of o.labelBindings as unknown[]) {
      const problem = labelBindingProblem(b);
      if (problem) return problem;
    }
  }
  return null;
}

function refuse(reason: RefusalReason, message: string): { ok: false; reason: RefusalReason; message: string } {
  return { ok: false, reason, message };
}

/**
 * Verify a stored bundle against the trusted operator keys. `applied` is what this host runs
 * now for this kind (null: nothing yet); an equal revision with the same digest is a duplicate.
 */
export function verifyBundle<K extends BundleKind>(
  stored: string | Buffer,
  kind: K,
  trusted: readonly OperatorPublicKey[],
  applied: AppliedMark | null,
): Verified<K> {
  const text = typeof stored === 'string' ? stored : stored.toString('utf8');
  if (text.length > MAX_BUNDLE_BYTES * 2) return refuse('malformed', `stored bundle is ${text.length} bytes, over the limit`);
  let env: Record<string, unknown>;
  try {
    const v: unknown = JSON.parse(text);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return refuse('malformed', 'stored bundle is not a JSON object');
    env = v as Record<string, unknown>;
  } catch {
    return refuse('malformed', 'stored bundle is not valid JSON');
  }
  if (env.format !== BUNDLE_FORMAT) return refuse('malformed', `field "format" must be "${BUNDLE_FORMAT}", got ${JSON.stringify(env.format)}`);
  if (typeof env.body !== 'string' || typeof env.signature !== 'string' || typeof env.keyId !== 'string') return refuse('malformed', 'fields "keyId", "body" and "signature" must be strings');
  const key = trusted.find((k) => k.keyId === env.keyId);
  if (!key) return refuse('unknown-key', `signed by ${JSON.stringify(env.keyId)}, which is not a trusted operator key (${trusted.map((k) => k.keyId).join(', ') || 'none'})`);
  const body = Buffer.from(env.body, 'base64url');
  const signature = Buffer.from(env.signature, 'base64url');
  let good = false;
  try {
    good = signature.length === 64 && verify(null, Buffer.concat([DOMAIN, body]), key.publicKey as KeyObject, signature);
  } catch {
    good = false;
  }
  if (!good) return refuse('bad-signature', `signature does not verify with operator key ${key.keyId}`);
  let b: Record<string, unknown>;
  try {
    b = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  } catch {
    return refuse('malformed', 'signed body is not valid JSON');
  }
  if (b === null || typeof b !== 'object') return refuse('malformed', 'signed body is not a JSON object');
  if (!(BUNDLE_KINDS as readonly unknown[]).includes(b.kind) || b.kind !== kind) return refuse('wrong-kind', `a ${String(b.kind)} bundle stored where a ${kind} bundle belongs`);
  if (b.keyId !== key.keyId) return refuse('malformed', 'signed keyId differs from the envelope keyId');
  if (!Number.isSafeInteger(b.revision) || (b.revision as number) < 1) return refuse('malformed', 'signed revision must be a positive integer');
  if (typeof b.issuedAt !== 'string') return refuse('malformed', 'signed issuedAt must be a string');
  const problem = payloadProblem(kind, b.payload);
  if (problem) return refuse('bad-payload', problem);
  const revision = b.revision as number;
  const digest = digestOf(body);
  if (applied) {
    if (revision < applied.revision) return refuse('rollback', `revision ${revision} is older than the applied revision ${applied.revision}`);
    if (revision === applied.revision && digest !== applied.digest) {
      return refuse('equivocation', `revision ${revision} is already applied with different content`);
    }
  }
  const bundle = Object.freeze({ kind, revision, issuedAt: b.issuedAt, keyId: key.keyId, payload: b.payload as PayloadOf[K] });
  return { ok: true, bundle, digest, duplicate: applied !== null && revision === applied.revision };
}

/**
 * The revision a stored bundle claims, without verifying it (null when unreadable or absurd:
 * more than a week ahead of the clock). A push goes above it too, so after a key rotation or
 * a value written by someone else the next push is still newer than anything daemons applied.
 */
export function peekRevision(stored: string | Buffer, nowMs: number): number | null {
  try {
    const env = JSON.parse(typeof stored === 'string' ? stored : stored.toString('utf8')) as { body?: unknown };
    if (typeof env.body !== 'string') return null;
    const r = (JSON.parse(Buffer.from(env.body, 'base64url').toString('utf8')) as { revision?: unknown }).revision;
    return Number.isSafeInteger(r) && (r as number) > 0 && (r as number) <= nowMs / 1000 + 7 * 86400 ? (r as number) : null;
  } catch {
    return null;
  }
}

/** The next revision for a push: newer than the current one and than the clock's seconds, so a wiped etcd cannot make pushes look like rollbacks. */
export function nextRevision(current: number | null, nowMs: number): number {
  return Math.max((current ?? 0) + 1, Math.floor(nowMs / 1000));
}
