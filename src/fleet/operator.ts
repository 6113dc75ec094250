// The operator's side: create the operator key pair, push a signed policy bundle, read the
// fleet's convergence (each host's applied revision against the stored one).

import { existsSync } from 'node:fs';
import { TesseraError } from '../errors.js';
import { verifyBundle } from './bundle.js';
import type { EtcdClient } from './etcd.js';
import { readOperatorKeyFile, writeFileAtomic } from './files.js';
import { createLayout, DEFAULT_PREFIX } from './layout.js';
import { createOperatorKey, operatorKeyToJson, operatorPublicToJson, type OperatorPublicKey } from './operator-key.js';
import { pushBundle, type PushResult } from './push.js';
import { readHostStatuses, type HostStatus } from './status.js';
import { readHostEntries } from './hosts.js';
import { parseCertificate } from '../identity/certificate.js';
import type { TrustPayload } from './bundle.js';

/** Write OUT.key.json (0600) and OUT.pub.json (0644); refuses to overwrite. */
export function writeOperatorKeyPair(out: string): { keyFile: string; pubFile: string; keyId: string } {
  const keyFile = `${out}.key.json`;
  const pubFile = `${out}.pub.json`;
  for (const f of [keyFile, pubFile]) if (existsSync(f)) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `${f} exists: not overwriting a key`);
  const k = createOperatorKey();
  writeFileAtomic(keyFile, operatorKeyToJson(k), 0o600);
  writeFileAtomic(pubFile, operatorPublicToJson(k), 0o644);
  return { keyFile, pubFile, keyId: k.keyId };
}

/**
 * Sign and store a policy. `validate` is the policy compiler (the CLI passes it): a policy
 * that does not compile never reaches etcd.
 */
export async function pushPolicy(
  client: EtcdClient,
  opts: { keyFile: string; text: string; source: string; prefix?: string; validate: (text: string, source: string) => string | null },
): Promise<PushResult> {
  const problem = opts.validate(opts.text, opts.source);
  if (problem !== null) throw new TesseraError('TESSERA_ERR_POLICY', `policy file refused:\n  ${problem}`);
  const key = readOperatorKeyFile(opts.keyFile);
  return pushBundle(client, createLayout(opts.prefix ?? DEFAULT_PREFIX), key, 'policy', { text: opts.text, source: opts.source });
}

export interface ClusterView {
  /** The policy revision stored in etcd; null when none; `verified` when checked with an operator key. */
  stored: { revision: number; verified: boolean; problem: string | null } | null;
  etcdRevision: number;
  /** `behind`: the host applied an older revision than the stored one (null: unknown). */
  hosts: (HostStatus & { behind: boolean | null })[];
  /** The host directory (hosts/): enrolled hosts, whether revoked by the stored trust bundle. */
  directory: { host: string; addresses: string[]; handshakeKey: boolean; expires: string | null; revoked: boolean }[];
}

export async function readClusterView(client: EtcdClient, opts: { prefix?: string; trusted?: readonly OperatorPublicKey[] } = {}): Promise<ClusterView> {
  const layout = createLayout(opts.prefix ?? DEFAULT_PREFIX);
  const { kv } = await client.get(Buffer.from(layout.bundle('policy')));
  let stored: ClusterView['stored'] = null;
  if (kv) {
    if (opts.trusted && opts.trusted.length > 0) {
      const v = verifyBundle(kv.value, 'policy', opts.trusted, null);
      stored = v.ok ? { revision: v.bundle.revision, verified: true, problem: null } : { revision: NaN, verified: false, problem: `${v.reason}: ${v.message}` };
    } else {
      // Without an operator key the revision is read unverified, for display only.
      try {
        const env = JSON.parse(kv.value.toString('utf8')) as { body: string };
        const body = JSON.parse(Buffer.from(env.body, 'base64url').toString('utf8')) as { revision: number };
        stored = { revision: Number(body.revision), verified: false, problem: null };
      } catch {
        stored = { revision: NaN, verified: false, problem: 'malformed' };
      }
    }
  }
  const { statuses, etcdRevision } = await readHostStatuses(client, layout);
  const trustKv = (await client.get(Buffer.from(layout.bundle('trust')))).kv;
  let revoked = new Set<string>();
  if (trustKv && opts.trusted && opts.trusted.length > 0) {
    const t = verifyBundle(trustKv.value, 'trust', opts.trusted, null);
    if (t.ok) revoked = new Set((t.bundle.payload as TrustPayload).revoked.filter((e) => e.certSha256 === null).map((e) => e.host));
  }
  const directory = (await readHostEntries(client, layout)).flatMap((kv) => {
    try {
      const e = JSON.parse(kv.value) as { host?: unknown; certificate?: unknown; handshakeKey?: unknown; addresses?: unknown };
      if (typeof e.host !== 'string') return [];
      const exp = typeof e.certificate === 'string' ? parseCertificate(e.certificate)?.claims.exp : undefined;
      return [{ host: e.host, addresses: Array.isArray(e.addresses) ? e.addresses.filter((a): a is string => typeof a === 'string') : [], handshakeKey: typeof e.handshakeKey === 'string', expires: exp ? new Date(exp * 1000).toISOString() : null, revoked: revoked.has(e.host) }];
    } catch {
      return [];
    }
  });
  const storedRev = stored && Number.isFinite(stored.revision) ? stored.revision : null;
  const hosts = statuses
    .sort((a, b) => a.host.localeCompare(b.host))
    .map((h) => ({ ...h, behind: storedRev !== null && h.policyRevision !== null ? h.policyRevision < storedRev : null }));
  return { stored, etcdRevision, hosts, directory: directory.sort((a, b) => a.host.localeCompare(b.host)) };
}

/** The table `tessera cluster status` prints in a terminal. */
export function renderClusterView(v: ClusterView): string {
  const lines: string[] = [];
  const s = v.stored;
  lines.push(`stored policy: ${s === null ? 'none' : s.problem !== null ? `refused (${s.problem})` : `revision ${s.revision}${s.verified ? ' (signature verified)' : ' (not verified: pass --operator-pub)'}`}`);
  const rows = [['HOST', 'POLICY', 'SYNC', 'HEALTH', 'STALE', 'VERSION', 'UPDATED']];
  for (const h of v.hosts) {
    rows.push([
      h.host,
      h.policyRevision === null ? '-' : String(h.policyRevision),
      h.behind === null ? '-' : h.behind ? 'behind' : 'in sync',
      h.health + (h.problems.length > 0 ? ` (${h.problems.join('; ')})` : ''),
      h.staleSeconds === null ? '-' : `${h.staleSeconds}s`,
      h.version,
      h.updatedAt,
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) lines.push(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
  if (v.hosts.length === 0) lines.push('(no host has published its status)');
  if (v.directory.length > 0) {
    lines.push('', 'directory:');
    for (const d of v.directory) lines.push(`  ${d.host}${d.revoked ? ' REVOKED' : ''}  ${d.addresses.join(',') || '-'}  handshake key: ${d.handshakeKey ? 'yes' : 'no'}  certificate until ${d.expires ?? '?'}`);
  }
  return `${lines.join('\n')}\n`;
}
