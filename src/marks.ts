// The one place that fixes which bits of the packet mark (nfmark) and the conntrack mark
// Tessera owns. Every rule builder and the datapath read these constants; docs/rules.md
// ("Marks") describes the same layout. nfmark bits: 0xfc001fff (and UDP_CONTROL 0x02000000 in container namespaces); connmark bits: 0x8c001fff.
// Both keep off 0x00ff0000 (Tailscale's fwmark and connmark mask, bypass bit 0x80000) and
// 0xc000 (kube-proxy's 0x4000 and 0x8000). The PU index has 13 bits: up to 8,191 PUs a host.
//
// The two layouts are chosen so that neither can be mistaken for the other: software that
// copies a whole connmark into the nfmark (a common `CONNMARK --restore-mark`) produces no
// op code (an op needs OP_PRESENT, which no connmark bit of ours occupies), no REJECT_BIT and
// no PU_DEST; CT_AUTHORIZED read as HOST_SOCK only ever lands on packets of authorized flows,
// which leave our chains before that bit is read.

/**
 * nfmark: index of the PU that sent an egress packet (set by table inet tessera's output
 * chain), or that an ingress packet is addressed to (with PU_DEST). 1..8191; 0: no PU.
 */
export const PU_INDEX_MASK = 0x0000_1fff;
export const PU_INDEX_SHIFT = 0;
export const MAX_PU_INDEX = PU_INDEX_MASK >>> PU_INDEX_SHIFT;

/**
 * nfmark op codes, a 3-bit field set only by our verdicts (NF_REPEAT) and consumed by
 * TESSERA-APPLY. Every code has OP_PRESENT; the field values without it (0..3) mean "no op".
 */
export const OP_MASK = 0x1c00_0000;
export const OP_PRESENT = 0x1000_0000;
export const OP_SET_CLIENT_PENDING = 0x1000_0000;
export const OP_CLEAR_CLIENT_PENDING = 0x1400_0000;
export const OP_SET_SERVER_PENDING = 0x1800_0000;
export const OP_CLEAR_SERVER_PENDING = 0x1c00_0000;
/**
 * nfmark, ingress only, between table inet tessera's input chain and iptables' mangle INPUT:
 * the packet's destination port is in a port set. They share the op field, whose values
 * without OP_PRESENT mean "no op" (so TESSERA-APPLY never acts on them), and a verdict
 * replaces them. PORT_SERVER: a port of a PU the socket lookup cannot name (judged by port
 * for everything). PORT_GUARD: a port of any PU (for what the lookup cannot place:
 * TIME_WAIT, request sockets, untracked packets).
 */
export const PORT_SERVER = 0x0400_0000;
export const PORT_GUARD = 0x0800_0000;
/** nfmark: the verdict rejected the packet; filter-table TESSERA-REJECT answers with a TCP reset. */
export const REJECT_BIT = 0x2000_0000;
/**
 * nfmark: an ingress packet addressed to a PU's socket, found by the kernel's socket lookup
 * (nftables `socket cgroupv2`, table inet tessera) before our iptables chains run; the PU's
 * index is in PU_INDEX_MASK. A listening socket counts from its first SYN, before any scan.
 */
export const PU_DEST = 0x4000_0000;
/**
 * nfmark: the same lookup found a full socket (listening or established) that belongs to no
 * PU: the packet is the host's own, whatever PU shares its port number. Absent both bits, the
 * lookup found no full socket (a TIME_WAIT or request socket, or none), and a SYN is judged
 * by its port.
 */
export const HOST_SOCK = 0x8000_0000;
/**
 * nfmark (SO_MARK), only on the UDP exchange's control packets sent from inside a container's
 * namespace (udp/sender.ts): there every packet is the container's, and this bit is how the
 * namespace's egress rules tell ours from its own (docs/rules.md, "UDP"). Outside NFMARK_MASK:
 * TESSERA-OUTPUT must not clear it. Setting SO_MARK needs CAP_NET_ADMIN, which a container
 * that could forge it could also use to remove our rules (docs/security-model.md).
 */
export const UDP_CONTROL = 0x0200_0000;
/** Every nfmark bit Tessera may write; they are cleared when a packet enters the host's stack (TESSERA-OUTPUT, TESSERA-PREROUTING). */
export const NFMARK_MASK = (PU_INDEX_MASK | OP_MASK | REJECT_BIT | PU_DEST | HOST_SOCK) >>> 0;

// connmark: the client PU's index is saved at the same bits as in the nfmark (PU_INDEX_MASK)
// when its SYN leaves, and restored into the nfmark of the answering SYN-ACK, so the handler
// knows which local PU the connection belongs to without keeping state. The state bits sit
// where they mean nothing as nfmark bits (see the top comment).

/** connmark: our server side accepted a tagged SYN and owes the SYN-ACK / awaits the proof ACK. */
export const CT_SERVER_PENDING = 0x0400_0000;
/** connmark: our client side sent a tagged SYN and awaits the SYN-ACK / owes the proof ACK. */
export const CT_CLIENT_PENDING = 0x0800_0000;
/** connmark: this flow passed the whole handshake on this host; its packets stay in the kernel. */
export const CT_AUTHORIZED = 0x8000_0000;
export const CT_PENDING = (CT_CLIENT_PENDING | CT_SERVER_PENDING) >>> 0;
export const CTMARK_MASK = (PU_INDEX_MASK | CT_PENDING | CT_AUTHORIZED) >>> 0;

export function puIndexFromMark(mark: number): number {
  return (mark & PU_INDEX_MASK) >>> PU_INDEX_SHIFT;
}

export function markForPuIndex(index: number): number {
  return (index << PU_INDEX_SHIFT) >>> 0;
}

export const hex = (n: number): string => '0x' + (n >>> 0).toString(16);
