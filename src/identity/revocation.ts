// Host trust beyond signatures: revoked hosts and certificates, and labels bound to hosts.
// Pure. The operator's trust bundle (src/fleet, docs/cluster.md) says which hosts are revoked
// and which labels only some hosts may claim; token verification (tokens.ts) asks
// `checkHostTrust` for every verified token, cached ones included, so a revocation applies to
// tokens verified before it arrived. Workers receive the list as `revoked: string[]` (host ids
// and certificate ids) and the bindings as `labelBindings` in their snapshot/delta.

import { hash } from 'node:crypto';

/** Certificate ids in a revocation list: "sha256:" + hex SHA-256 of the certificate text. Host ids never hold ":". */
export const CERT_ID_PREFIX = 'sha256:';

/** Why a token whose signatures verified is still refused. Stable strings (reason codes). */
export type HostTrustRefusal = 'revoked' | 'label-not-allowed' | 'stale-trust';

/**
 * "Only these hosts may claim this label": `label` is "key=value" (that value) or "key=*" (any
 * value of the key). Labels no binding names may be claimed by any host.
 */
export interface LabelBinding {
  readonly label: string;
  readonly hosts: readonly string[];
}

export interface HostTrustInput {
  /** Host ids and certificate ids ("sha256:<hex>") no longer accepted. */
  readonly revoked: readonly string[];
  readonly labelBindings?: readonly LabelBinding[];
  /**
   * The staleness bound passed (no contact with the fleet for too long): tokens not verified
   * before are refused with `stale-trust`, since a revocation may be missing; cached ones pass.
   */
  readonly refuseNew?: boolean;
}

/** The compiled form: built once per trust update, asked per verified token. */
export interface HostTrust {
  /** Changes on every update: verifiers re-check cached tokens when it differs from theirs. */
  readonly generation: number;
  readonly revokedCount: number;
  readonly bindingCount: number;
  readonly refuseNew: boolean;
  check(host: string, certId: string | null, labels: readonly string[]): HostTrustRefusal | null;
}

let generations = 0;

/** The id of a certificate in revocation lists. */
export function certificateId(certificate: string): string {
  return CERT_ID_PREFIX + hash('sha256', certificate, 'hex');
}

/** A problem with a binding's shape, or null. */
export function labelBindingProblem(b: unknown): string | null {
  const o = b as Partial<LabelBinding> | null;
  if (o === null || typeof o !== 'object') return 'a label binding must be an object {label, hosts}';
  if (typeof o.label !== 'string' || !/^[^=\s]{1,128}=[^\s]{1,256}$/.test(o.label)) return `label binding ${JSON.stringify(o.label)}: label must be "key=value" or "key=*"`;
  if (!Array.isArray(o.hosts) || o.hosts.some((h) => typeof h !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(h))) return `label binding ${o.label}: hosts must be a list of host ids`;
  return null;
}

/** Compile a revocation list and label bindings (entries of the wrong shape are skipped: the bundle was validated before). */
export function createHostTrust(input: HostTrustInput): HostTrust {
  const revoked = new Set(input.revoked.filter((r) => typeof r === 'string' && r.length > 0));
  const exact = new Map<string, Set<string>>();
  const anyValue = new Map<string, Set<string>>();
  for (const b of input.labelBindings ?? []) {
    if (labelBindingProblem(b) !== null) continue;
    const eq = b.label.indexOf('=');
    const key = b.label.slice(0, eq);
    const map = b.label.slice(eq + 1) === '*' ? anyValue : exact;
    const name = map === anyValue ? key : b.label;
    const set = map.get(name) ?? new Set<string>();
    for (const h of b.hosts) set.add(h);
    map.set(name, set);
  }
  const bindingCount = exact.size + anyValue.size;
  return Object.freeze({
    generation: ++generations,
    revokedCount: revoked.size,
    bindingCount,
    refuseNew: input.refuseNew === true,
    check(host: string, certId: string | null, labels: readonly string[]): HostTrustRefusal | null {
      if (revoked.size > 0 && (revoked.has(host) || (certId !== null && revoked.has(certId)))) return 'revoked';
      if (bindingCount === 0) return null;
      for (const l of labels) {
        const allowed = exact.get(l);
        if (allowed !== undefined && !allowed.has(host)) return 'label-not-allowed';
        if (anyValue.size > 0) {
          const eq = l.indexOf('=');
          const byKey = eq > 0 ? anyValue.get(l.slice(0, eq)) : undefined;
          if (byKey !== undefined && !byKey.has(host)) return 'label-not-allowed';
        }
      }
      return null;
    },
  });
}

/** Nothing revoked, nothing bound. */
export const NO_HOST_TRUST: HostTrust = createHostTrust({ revoked: [] });

/**
 * The check every verifier calls (the v1 verifier here, protocol v2's verified-token cache):
 * null when `trust` accepts this host, certificate and labels, else the reason code.
 */
export function checkHostTrust(trust: HostTrust, host: string, certId: string | null, labels: readonly string[]): HostTrustRefusal | null {
  return trust.check(host, certId, labels);
}
