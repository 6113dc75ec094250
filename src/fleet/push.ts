// Pushing a bundle: read the stored one, sign the next revision, write it only if nobody
// wrote in between (a compare-and-swap on the key's mod revision), retrying a few times.

import { nextRevision, peekRevision, signBundle, verifyBundle, type PayloadOf } from './bundle.js';
import type { EtcdClient } from './etcd.js';
import type { BundleKind, Layout } from './layout.js';
import type { OperatorKey } from './operator-key.js';

export interface PushResult {
  kind: BundleKind;
  revision: number;
  etcdRevision: number;
  /** The stored bundle this push replaced did not verify with the operator key (reported, overwritten). */
  replacedUnverified: boolean;
}

/**
 * `payload` may be a function of the stored payload (null when none verifies with `key`;
 * `storedUnverified` when one is stored but does not verify with it): a
 * read-modify-write (a revocation added to the trust bundle) under the same compare-and-swap.
 */
export async function pushBundle<K extends BundleKind>(
  client: EtcdClient,
  layout: Layout,
  key: OperatorKey,
  kind: K,
  payload: PayloadOf[K] | ((current: PayloadOf[K] | null, storedUnverified: boolean) => PayloadOf[K]),
): Promise<PushResult> {
  const k = Buffer.from(layout.bundle(kind));
  for (let attempt = 0; attempt < 5; attempt++) {
    const { kv } = await client.get(k);
    let current: number | null = null;
    let replacedUnverified = false;
    let currentPayload: PayloadOf[K] | null = null;
    if (kv) {
      const v = verifyBundle(kv.value, kind, [key], null);
      if (v.ok) {
        current = v.bundle.revision;
        currentPayload = v.bundle.payload;
      } else {
        replacedUnverified = true;
        current = peekRevision(kv.value, Date.now());
      }
    }
    const revision = nextRevision(current, Date.now());
    const stored = signBundle(key, kind, revision, typeof payload === 'function' ? payload(currentPayload, replacedUnverified) : payload);
    const r = await client.putIfUnchanged(k, Buffer.from(stored), kv ? kv.mod_revision : '0');
    if (r.succeeded) return { kind, revision, etcdRevision: Number(r.header.revision), replacedUnverified };
  }
  throw new Error(`the ${kind} bundle kept changing under this push (5 attempts); try again`);
}
