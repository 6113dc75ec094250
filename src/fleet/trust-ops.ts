// The operator's trust bundle (docs/cluster.md "Trust bundle"): `tessera trust push` sets the
// CA list and label bindings, `tessera cluster revoke HOST` adds a revocation. Each is a
// read-modify-write of the stored bundle under one compare-and-swap, so a revocation never
// drops another one written meanwhile. And the daemon's side: what a verified trust payload
// means for the datapath (the `TrustUpdate` its workers apply).

import { TesseraError } from '../errors.js';
import { CERT_ID_PREFIX, labelBindingProblem, type LabelBinding } from '../identity/revocation.js';
import type { TrustPayload } from './bundle.js';
import type { EtcdClient } from './etcd.js';
import { readOperatorKeyFile } from './files.js';
import { createLayout, DEFAULT_PREFIX } from './layout.js';
import { pushBundle, type PushResult } from './push.js';

type Ca = TrustPayload['cas'][number];

const EMPTY: TrustPayload = { cas: [], revoked: [] };

function refuseUnverified(storedUnverified: boolean): void {
  if (storedUnverified) {
    // Replacing it would silently drop its revocations.
    throw new TesseraError('TESSERA_ERR_KEY_FILE', 'the stored trust bundle does not verify with this operator key: its revocations cannot be carried over (use the key that signed it)');
  }
}

/** "app=db:host-b,host-c" → a binding; one clear error otherwise. */
export function parseBindArg(arg: string): LabelBinding {
  const at = arg.lastIndexOf(':');
  const b = { label: arg.slice(0, at), hosts: arg.slice(at + 1).split(',').filter((h) => h !== '') };
  const problem = at <= 0 ? `--bind ${JSON.stringify(arg)}: write LABEL:HOST[,HOST...], e.g. app=db:host-b,host-c` : labelBindingProblem(b);
  if (problem) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', problem);
  return b;
}

/** Push the trust bundle: `cas`/`labelBindings` replace the stored ones when given; revocations are kept. */
export async function pushTrust(
  client: EtcdClient,
  o: { keyFile: string; cas?: readonly Ca[]; labelBindings?: readonly LabelBinding[]; prefix?: string },
): Promise<PushResult & { payload: TrustPayload }> {
  const key = readOperatorKeyFile(o.keyFile);
  let payload: TrustPayload = EMPTY;
  const r = await pushBundle(client, createLayout(o.prefix ?? DEFAULT_PREFIX), key, 'trust', (current, storedUnverified) => {
    refuseUnverified(storedUnverified);
    const c = current ?? EMPTY;
    const bindings = o.labelBindings ?? c.labelBindings;
    payload = { cas: o.cas ? [...o.cas] : c.cas, revoked: c.revoked, ...(bindings && bindings.length > 0 ? { labelBindings: bindings } : {}) };
    return payload;
  });
  return { ...r, payload };
}

/** Revoke a host (every certificate of it), or lift its revocation (`undo`). */
export async function revokeHost(client: EtcdClient, o: { keyFile: string; host: string; undo?: boolean; prefix?: string }): Promise<PushResult & { changed: boolean }> {
  const key = readOperatorKeyFile(o.keyFile);
  const layout = createLayout(o.prefix ?? DEFAULT_PREFIX);
  layout.host(o.host); // refuses a malformed host id
  let changed = false;
  const r = await pushBundle(client, layout, key, 'trust', (current, storedUnverified) => {
    refuseUnverified(storedUnverified);
    const c = current ?? EMPTY;
    const others = c.revoked.filter((e) => !(e.host === o.host && e.certSha256 === null));
    changed = o.undo ? others.length !== c.revoked.length : others.length === c.revoked.length;
    const revoked = o.undo ? others : [...others, { host: o.host, certSha256: null, at: new Date().toISOString() }];
    return { ...c, revoked };
  });
  return { ...r, changed };
}

/** What a daemon's workers apply for a verified trust payload (datapath/messages.ts TrustUpdate). */
export function trustUpdateOf(p: TrustPayload): { revoked: string[]; labelBindings: LabelBinding[]; cas: Record<string, unknown>[] } {
  return {
    revoked: p.revoked.map((e) => (e.certSha256 === null ? e.host : CERT_ID_PREFIX + e.certSha256)),
    labelBindings: (p.labelBindings ?? []).map((b) => ({ label: b.label, hosts: [...b.hosts] })),
    cas: p.cas.map((c) => ({ ...c.publicJwk })),
  };
}
