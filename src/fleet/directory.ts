// The host directory as the datapath sees it (brief's contract, protocol v2): a map from a
// host's address to its static handshake key, built from the `hosts/` entries in etcd. Only
// entries whose certificate verifies against the trusted CAs, has not expired and is not
// revoked count; an address claimed by two hosts counts for neither (a host with a valid
// certificate must not be able to put its key on another host's address). Pure.

import { isIPv4, isIPv6 } from 'node:net';
import type { KeyObject } from 'node:crypto';
import { createHostTrust, certificateId, type HostTrust } from '../identity/revocation.js';
import { parseCertificate } from '../identity/certificate.js';
import { checkHostEntry, type HostEntry } from './hosts.js';
import type { Layout } from './layout.js';

export interface HostKeyDirectory {
  lookup(address: string): { host: string; key: Uint8Array } | undefined;
}

export interface DirectoryView {
  /** address → base64url raw X25519 key: the workers' snapshot field `hostKeys`. */
  hostKeys: Record<string, string>;
  directory: HostKeyDirectory;
  /** Hosts whose entry counts. */
  hosts: string[];
  /** Entries left out, one line each (bad certificate, expired, revoked, malformed). */
  refused: string[];
  /** Addresses claimed by more than one host (left out). */
  conflicts: string[];
}

/** RFC 5952 text of an address (as src/flow.ts prints them), or null when it is not one. */
export function canonicalAddress(a: unknown): string | null {
  if (typeof a !== 'string') return null;
  if (isIPv4(a)) return a;
  if (!isIPv6(a) || a.includes('%')) return null;
  try {
    return new URL(`http://[${a}]/`).hostname.slice(1, -1);
  } catch {
    return null;
  }
}

export function buildDirectory(
  raw: readonly { key: string; value: string }[],
  o: { layout: Layout; caKeys: readonly KeyObject[]; trust?: HostTrust; now: number; skewSeconds?: number },
): DirectoryView {
  const trust = o.trust ?? createHostTrust({ revoked: [] });
  const skew = o.skewSeconds ?? 30;
  const refused: string[] = [];
  const byAddress = new Map<string, { host: string; key: string }[]>();
  const hosts: string[] = [];
  for (const kv of raw) {
    const c = checkHostEntry(kv.key, kv.value, o.layout, o.caKeys);
    if (!c.ok) {
      refused.push(c.message);
      continue;
    }
    const e: HostEntry = c.entry;
    const claims = parseCertificate(e.certificate)?.claims;
    if (!claims || o.now >= claims.exp + skew || o.now < claims.iat - skew) {
      refused.push(`${kv.key}: certificate expired or not yet valid`);
      continue;
    }
    const why = trust.check(e.host, certificateId(e.certificate), []);
    if (why !== null) {
      refused.push(`${kv.key}: ${why}`);
      continue;
    }
    hosts.push(e.host);
    if (e.handshakeKey === null) continue;
    for (const a of e.addresses) {
      const list = byAddress.get(a) ?? [];
      list.push({ host: e.host, key: e.handshakeKey });
      byAddress.set(a, list);
    }
  }
  const hostKeys: Record<string, string> = {};
  const decoded = new Map<string, { host: string; key: Uint8Array }>();
  const conflicts: string[] = [];
  for (const [addr, list] of byAddress) {
    if (new Set(list.map((l) => l.host)).size > 1) {
      conflicts.push(`${addr} (${[...new Set(list.map((l) => l.host))].sort().join(', ')})`);
      continue;
    }
    hostKeys[addr] = list[0]!.key;
    decoded.set(addr, { host: list[0]!.host, key: new Uint8Array(Buffer.from(list[0]!.key, 'base64url')) });
  }
  return { hostKeys, directory: { lookup: (address) => decoded.get(address) }, hosts: hosts.sort(), refused, conflicts };
}
