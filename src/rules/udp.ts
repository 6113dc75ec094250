// UDP of PUs (issue 13): chains of their own, entered by one rule at the top of TESSERA-INPUT
// and TESSERA-POSTROUTING, so that the TCP chains never see a UDP packet. docs/rules.md ("UDP")
// explains each rule. Pure; spelled as iptables-save prints it back (see ruleset.ts).
//
//   TESSERA-UDP-IN (mangle INPUT)              TESSERA-UDP-OUT (mangle POSTROUTING)
//   1 op code → TESSERA-UDP-APPLY              1 op code → TESSERA-UDP-APPLY
//   2 authorized + our magic → queue           2 authorized → RETURN
//   3 authorized → RETURN                      3 no PU index (the host's own) → RETURN
//   4 not to a PU's socket → RETURN            4 → queue
//   5 → queue
//
//   TESSERA-UDP-APPLY: connmark AUTHORIZED; REJECT_BIT (a control packet, consumed) → DROP;
//   else clear our op/index bits and ACCEPT.
//
// In a container's own namespace (`nsPu`: the whole namespace is that one PU) nothing is the
// host's own and no socket lookup runs: every datagram not of an authorized flow is the PU's
// and is queued, tagged with the PU's index (ingress also PU_DEST) by TESSERA-UDP-PU-IN/-OUT;
// only our own control packets (raw sockets with UDP_CONTROL, udp/sender.ts) leave unqueued.
//
//   TESSERA-UDP-IN (namespace)                 TESSERA-UDP-OUT (namespace)
//   1 op code → TESSERA-UDP-APPLY              1 op code → TESSERA-UDP-APPLY
//   2 authorized + magic → TESSERA-UDP-PU-IN   2 authorized → RETURN
//   3 authorized → RETURN                      3 UDP_CONTROL + magic (ours) → RETURN
//   4 → TESSERA-UDP-PU-IN                      4 → TESSERA-UDP-PU-OUT
//   TESSERA-UDP-PU-IN: mark PU_DEST|index, queue    TESSERA-UDP-PU-OUT: mark index, queue

import { CT_AUTHORIZED, CT_PENDING, OP_MASK, OP_PRESENT, PU_DEST, PU_INDEX_MASK, REJECT_BIT, UDP_CONTROL, hex, markForPuIndex } from '../marks.js';
import type { Family, Rule } from './ruleset.js';

export const UDP_CHAINS = {
  in: 'TESSERA-UDP-IN',
  out: 'TESSERA-UDP-OUT',
  apply: 'TESSERA-UDP-APPLY',
  puIn: 'TESSERA-UDP-PU-IN',
  puOut: 'TESSERA-UDP-PU-OUT',
} as const;

const mark = (value: number, mask: number): string[] => ['-m', 'mark', '--mark', `${hex(value)}/${hex(mask)}`];
const AUTHORIZED = ['-m', 'connmark', '--mark', `${hex(CT_AUTHORIZED)}/${hex(CT_AUTHORIZED | CT_PENDING)}`];

/**
 * The first 4 bytes of the UDP payload are the exchange's magic (udp/wire.ts MAGIC 7e557501),
 * read with u32 (a few loads per packet; measured cheaper than a string search, and it is
 * paid by every inbound datagram of an authorized flow). IPv4: after the header, whatever its
 * options (IHL); IPv6: after a plain 40-byte header (a datagram behind extension headers is not
 * taken for a control packet; on a flow not authorized it is queued anyway). Spelled as
 * iptables-save prints it back.
 */
function magic(family: Family): string[] {
  return ['-m', 'u32', '--u32', family === 'ipv4' ? '"0x0>>0x16&0x3c@0x8=0x7e557501"' : '"0x30=0x7e557501"'];
}

/** The jump that leads every UDP packet of a hook into its chain (first rule of TESSERA-INPUT / -POSTROUTING). */
export const udpJump = (chain: string): Rule => ['-p', 'udp', '-j', chain];

/**
 * The UDP chains of one family. `queue`: the NFQUEUE target of ruleset.ts. `nsPu`: the PU index
 * of a container namespace's ruleset (ruleset.ts namespacePu).
 */
export function udpChains(family: Family, queue: readonly string[], nsPu?: number): Record<string, readonly Rule[]> {
  return nsPu === undefined ? hostChains(family, queue) : namespaceChains(family, queue, nsPu);
}

const setMark = (value: number, mask: number): string[] => ['-j', 'MARK', '--set-xmark', `${hex(value)}/${hex(mask)}`];

function applyChain(): readonly Rule[] {
  return [
    ['-j', 'CONNMARK', '--set-xmark', `${hex(CT_AUTHORIZED)}/${hex(CT_AUTHORIZED | CT_PENDING)}`],
    // A control packet whose verdict authorized the flow: consumed here, never delivered.
    [...mark(REJECT_BIT, REJECT_BIT), '-j', 'DROP'],
    ['-j', 'MARK', '--set-xmark', `0x0/${hex(OP_MASK | PU_INDEX_MASK)}`],
    ['-j', 'ACCEPT'],
  ];
}

function namespaceChains(family: Family, queue: readonly string[], index: number): Record<string, readonly Rule[]> {
  return {
    [UDP_CHAINS.in]: [
      [...mark(OP_PRESENT, OP_PRESENT), '-j', UDP_CHAINS.apply],
      // A duplicate Confirm, or a Reply asking again: to the exchange, never to the application.
      [...AUTHORIZED, ...magic(family), '-j', UDP_CHAINS.puIn],
      [...AUTHORIZED, '-j', 'RETURN'],
      // Every other datagram is addressed to the PU: no lookup, no RETURN (nothing here is
      // the host's). The mark is set in the sub-chain only, so that no datagram returns to
      // TESSERA-INPUT carrying PU_DEST (whose rule there would drop it).
      ['-j', UDP_CHAINS.puIn],
    ],
    [UDP_CHAINS.puIn]: [setMark(PU_DEST | markForPuIndex(index), PU_DEST | PU_INDEX_MASK), [...queue]],
    [UDP_CHAINS.out]: [
      [...mark(OP_PRESENT, OP_PRESENT), '-j', UDP_CHAINS.apply],
      [...AUTHORIZED, '-j', 'RETURN'],
      // Our own Reply or Confirm, sent by the worker's raw socket in this namespace.
      [...mark(UDP_CONTROL, UDP_CONTROL), ...magic(family), '-j', 'RETURN'],
      ['-j', UDP_CHAINS.puOut],
    ],
    [UDP_CHAINS.puOut]: [setMark(markForPuIndex(index), PU_INDEX_MASK), [...queue]],
    [UDP_CHAINS.apply]: applyChain(),
  };
}

function hostChains(family: Family, queue: readonly string[]): Record<string, readonly Rule[]> {
  return {
    [UDP_CHAINS.in]: [
      [...mark(OP_PRESENT, OP_PRESENT), '-j', UDP_CHAINS.apply],
      // A control packet on a flow already authorized here: a duplicate Confirm, or a Reply
      // asking again because our Confirm was lost. Never handed to the application.
      [...AUTHORIZED, ...magic(family), ...queue],
      [...AUTHORIZED, '-j', 'RETURN'],
      // Not addressed to a PU's socket (table inet tessera's lookup): the host's own.
      [...mark(0, PU_DEST), '-j', 'RETURN'],
      // A PU's datagram of a new (or not yet authorized) flow, control packets included.
      [...queue],
    ],
    [UDP_CHAINS.out]: [
      [...mark(OP_PRESENT, OP_PRESENT), '-j', UDP_CHAINS.apply],
      [...AUTHORIZED, '-j', 'RETURN'],
      // Not sent by a PU: the host's own (its resolver, NTP, our own control packets).
      [...mark(0, PU_INDEX_MASK), '-j', 'RETURN'],
      [...queue],
    ],
    [UDP_CHAINS.apply]: applyChain(),
  };
}

/** filter TESSERA-REJECT: a refused datagram (REJECT_BIT without an op) gets a port unreachable. */
export function udpReject(family: Family): Rule {
  return ['-p', 'udp', ...mark(REJECT_BIT, REJECT_BIT), '-j', 'REJECT', '--reject-with', family === 'ipv4' ? 'icmp-port-unreachable' : 'icmp6-port-unreachable'];
}
