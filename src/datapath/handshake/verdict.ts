// What a handshake handler tells the kernel: netfilter hook and verdict numbers, and the one
// rule for the nfmark a verdict sets.

import { NFMARK_MASK } from '../../marks.js';

/** Netfilter hook numbers as the queue reports them. */
export const HOOK_PRE_ROUTING = 0;
export const HOOK_LOCAL_IN = 1;
export const HOOK_FORWARD = 2;
export const HOOK_LOCAL_OUT = 3;
export const HOOK_POST_ROUTING = 4;

export const VERDICT_DROP = 0;
export const VERDICT_ACCEPT = 1;
export const VERDICT_REPEAT = 4;

/** Bits of the nfmark that belong to other software (kube-proxy, Docker, Tailscale, Calico). */
const FOREIGN = ~NFMARK_MASK;

/**
 * The nfmark of a verdict that sets our bits `ours`: other software's bits of the packet's
 * `incoming` mark are kept, ours are replaced. A verdict mark replaces the whole nfmark, so
 * writing `ours` alone would wipe, say, kube-proxy's masquerade bit. -1 (leave the mark as
 * it is) stays -1.
 */
export function verdictMark(incoming: number, ours: number): number {
  // `ours` is compared with -1 exactly: an OR of our bits may come out negative as an int32.
  return ours === -1 ? -1 : ((incoming & FOREIGN) | ours) >>> 0;
}
