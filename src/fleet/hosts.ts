// The host directory: <prefix>hosts/<host> = the host's CA-issued certificate and its static
// handshake public key. An entry needs no operator signature: the certificate is the CA's
// signature over (host, key), and readers check it against the trust bundle's CAs.

import type { KeyObject } from 'node:crypto';
import { verifyCertificateSignature } from '../identity/certificate.js';
import type { EtcdClient } from './etcd.js';
import { prefixEnd } from './etcd.js';
import type { Layout } from './layout.js';
import { canonicalAddress } from './directory.js';
import { networkInterfaces } from 'node:os';

export interface HostEntry {
  host: string;
  /** Compact JWS issued by the CA (identity/certificate.ts). */
  certificate: string;
  /** The static handshake public key (X25519, base64url of the raw 32 bytes), or null. */
  handshakeKey: string | null;
  /** The host's addresses (RFC 5952 text): where its handshake key is used (directory.ts). */
  addresses: string[];
  publishedAt: string;
}

export type HostEntryCheck = { ok: true; entry: HostEntry } | { ok: false; message: string };

/** Parse and check one directory entry against the trusted CA keys. Pure. */
export function checkHostEntry(key: string, value: string, layout: Layout, caKeys: readonly KeyObject[]): HostEntryCheck {
  let o: Partial<HostEntry>;
  try {
    o = JSON.parse(value) as Partial<HostEntry>;
  } catch {
    return { ok: false, message: `${key}: not valid JSON` };
  }
  if (typeof o.host !== 'string' || typeof o.certificate !== 'string' || typeof o.publishedAt !== 'string') return { ok: false, message: `${key}: host, certificate and publishedAt must be strings` };
  if (key !== layout.host(o.host)) return { ok: false, message: `${key}: entry names host ${JSON.stringify(o.host)}` };
  if (o.handshakeKey !== null && (typeof o.handshakeKey !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(o.handshakeKey))) return { ok: false, message: `${key}: handshakeKey must be 32 bytes base64url or null` };
  const rawAddresses: unknown[] = o.addresses === undefined ? [] : Array.isArray(o.addresses) ? o.addresses : [null];
  if (rawAddresses.length > 64) return { ok: false, message: `${key}: more than 64 addresses` };
  const addresses = rawAddresses.map(canonicalAddress);
  if (addresses.some((a) => a === null)) return { ok: false, message: `${key}: addresses must be a list of IP addresses` };
  const c = verifyCertificateSignature(o.certificate, caKeys);
  if (!c.ok) return { ok: false, message: `${key}: certificate refused (${c.reason})` };
  if (c.cert.claims.sub !== o.host) return { ok: false, message: `${key}: certificate is for ${c.cert.claims.sub}` };
  return { ok: true, entry: { host: o.host, certificate: o.certificate, handshakeKey: o.handshakeKey ?? null, addresses: addresses as string[], publishedAt: o.publishedAt } };
}

export async function publishHostEntry(client: EtcdClient, layout: Layout, entry: HostEntry): Promise<void> {
  await client.put(Buffer.from(layout.host(entry.host)), Buffer.from(JSON.stringify(entry)));
}

export async function readHostEntries(client: EtcdClient, layout: Layout): Promise<{ key: string; value: string }[]> {
  const k = Buffer.from(layout.hosts);
  const r = await client.range(k, prefixEnd(k));
  return r.kvs.map((kv) => ({ key: kv.key.toString('utf8'), value: kv.value.toString('utf8') }));
}

/** This host's addresses for the directory: every interface's, loopback and link-local left out. */
export function localAddresses(): string[] {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.internal || a.address.startsWith('fe80:') || a.address.startsWith('169.254.')) continue;
      const c = canonicalAddress(a.address);
      if (c) out.add(c);
    }
  }
  return [...out].sort();
}
