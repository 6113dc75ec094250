// The fleet's keys in etcd, all under one prefix (docs/cluster.md). Pure.
//
//   <prefix>bundles/policy        signed policy bundle (daemons watch bundles/ only)
//   <prefix>bundles/trust         signed trust bundle: CA public keys, revoked host certificates
//   <prefix>hosts/<host>          host directory: CA-issued certificate + static handshake key
//   <prefix>status/<host>         per-host status under the host's lease (applied revision, health)
//   <prefix>flows/<host>/<slot>   observed-flow summaries, slot 0..MAX_FLOW_SLOTS-1, same lease

import { checkId } from '../identity/jws.js';

export const DEFAULT_PREFIX = '/tessera/v1/';
export const BUNDLE_KINDS = ['policy', 'trust'] as const;
export type BundleKind = (typeof BUNDLE_KINDS)[number];
/** Bounded so one host's summaries stay a few keys on one lease (Cilium #25966: keys per lease). */
export const MAX_FLOW_SLOTS = 16;

export interface Layout {
  readonly prefix: string;
  readonly bundles: string;
  readonly hosts: string;
  readonly status: string;
  readonly flows: string;
  bundle(kind: BundleKind): string;
  host(hostId: string): string;
  statusOf(hostId: string): string;
  flowSlot(hostId: string, slot: number): string;
  /** The bundle kind a key names, or null for any other key. */
  kindOf(key: string): BundleKind | null;
}

export function createLayout(prefix: string = DEFAULT_PREFIX): Layout {
  if (!/^\/[A-Za-z0-9._/-]*\/$/.test(prefix) || prefix.includes('//')) throw new Error(`etcd prefix must start and end with "/" and hold only [A-Za-z0-9._-/], got ${JSON.stringify(prefix)}`);
  const bundles = `${prefix}bundles/`;
  const id = (h: string): string => checkId(h, 'host id', 'TESSERA_ERR_INVALID_ARGUMENT');
  return Object.freeze({
    prefix,
    bundles,
    hosts: `${prefix}hosts/`,
    status: `${prefix}status/`,
    flows: `${prefix}flows/`,
    bundle: (kind: BundleKind) => bundles + kind,
    host: (h: string) => `${prefix}hosts/${id(h)}`,
    statusOf: (h: string) => `${prefix}status/${id(h)}`,
    flowSlot: (h: string, slot: number) => {
      if (!Number.isInteger(slot) || slot < 0 || slot >= MAX_FLOW_SLOTS) throw new Error(`flow slot must be an integer in [0, ${MAX_FLOW_SLOTS}), got ${slot}`);
      return `${prefix}flows/${id(h)}/${slot}`;
    },
    kindOf: (key: string) => {
      if (!key.startsWith(bundles)) return null;
      const k = key.slice(bundles.length);
      return (BUNDLE_KINDS as readonly string[]).includes(k) ? (k as BundleKind) : null;
    },
  });
}
