// The desired iptables state as plain data. buildRuleset() is pure: it turns "which queues,
// which PUs, which protected ports" into chains of rule argument arrays; the reconciler
// renders and installs them. docs/rules.md explains each chain and its order.
//
// Rules are written in the exact form `iptables-save` prints them back (iptables 1.8.9,
// nf_tables and legacy): `-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN`, marks as
// lower-case hex `value/mask`. The reconciler compares the saved text with this data
// literally, so a rule written in any other spelling would look "different" on every pass
// and be reinstalled forever. test/integration/rules.test.ts checks the round trip.

import { TesseraError } from '../errors.js';
import { isRulePath, type Cgroup2Ref, type NftSpec } from './nft.js';
import { UDP_CHAINS, udpChains, udpJump, udpReject } from './udp.js';
import {
  CT_AUTHORIZED,
  CT_CLIENT_PENDING,
  CT_SERVER_PENDING,
  MAX_PU_INDEX,
  CT_PENDING,
  NFMARK_MASK,
  OP_CLEAR_CLIENT_PENDING,
  OP_CLEAR_SERVER_PENDING,
  OP_MASK,
  OP_PRESENT,
  OP_SET_CLIENT_PENDING,
  OP_SET_SERVER_PENDING,
  HOST_SOCK,
  PORT_GUARD,
  PORT_SERVER,
  PU_DEST,
  PU_INDEX_MASK,
  REJECT_BIT,
  hex,
  markForPuIndex,
} from '../marks.js';

export type Family = 'ipv4' | 'ipv6';
export type TableName = 'mangle' | 'filter' | 'raw' | 'nat';

export const FAMILIES: readonly Family[] = ['ipv4', 'ipv6'];
/** Every table in which a TESSERA- chain may exist (cleanup looks in all of them). */
export const TABLES: readonly TableName[] = ['mangle', 'filter', 'raw', 'nat'];
/** Our chains are recognised by this prefix alone; nothing else is ever touched. */
export const CHAIN_PREFIX = 'TESSERA-';

/** One rule: the arguments that follow `-A <chain>`. */
export type Rule = readonly string[];

export interface TableRules {
  /** Our chains in installation order: name -> rules. */
  readonly chains: Readonly<Record<string, readonly Rule[]>>;
  /** Unconditional jumps at position 1: builtin chain -> our chain. */
  readonly jumps: Readonly<Record<string, string>>;
}

export type Ruleset = Readonly<Record<Family, Readonly<Partial<Record<TableName, TableRules>>>>> & {
  /** The contents of table inet tessera (classification, nft.ts); absent: no such table. */
  readonly nft?: NftSpec;
};

export interface RulesetSpec {
  /** NFQUEUE numbers num..num+count-1; bypass lets packets through when no worker is bound (fail-open). */
  queue: {
    num: number;
    count: number;
    bypass: boolean;
    /**
     * Benchmark only (`--accept-all --six-passes`): also queue the client's first ACK at both
     * ends, as protocol v1 did, for the six-pass floor row next to the four-pass one. The
     * handshake (protocol v2) never asks for the ACK.
     */
    ackPass?: boolean;
  };
  /**
   * PUs on the host's own stack: index (1..MAX_PU_INDEX, carried in the nfmark), net_cls
   * classid (egress), and where their processes live in the cgroup v2 hierarchy (ingress:
   * the socket lookup of nft.ts finds their sockets from the first SYN).
   */
  pus: Array<{ index: number; classid: number; cgroup2?: Cgroup2Ref }>;
  /**
   * Local TCP ports of PUs whose sockets the kernel's socket lookup cannot name (no cgroup v2
   * reference): every packet to them is judged by port, as if the lookup had named the PU.
   */
  serverPorts: number[];
  /**
   * Local TCP ports of every PU (the scan's), for what the socket lookup cannot name: a packet
   * to one of them that conntrack calls INVALID or does not track is dropped, and a SYN whose
   * lookup found no full socket (a reused 4-tuple in TIME_WAIT) is queued. Default: serverPorts.
   */
  guardPorts?: number[];
  /**
   * The ruleset of a container's own network namespace, where the whole namespace is this one
   * PU (its index): every SYN leaving it is tagged with the index (no cgroup match) and every
   * SYN addressed to it goes to the queue, whatever the port. `pus` and `serverPorts` must
   * then be empty.
   */
  namespacePu?: number;
}

export const CHAINS = {
  output: 'TESSERA-OUTPUT',
  prerouting: 'TESSERA-PREROUTING',
  input: 'TESSERA-INPUT',
  postrouting: 'TESSERA-POSTROUTING',
  puIn: 'TESSERA-PU-IN',
  puPort: 'TESSERA-PU-PORT',
  puGuard: 'TESSERA-PU-GUARD',
  puOut: 'TESSERA-PU-OUT',
  apply: 'TESSERA-APPLY',
  reject: 'TESSERA-REJECT',
} as const;

/** RFC 6994 experimental option kind that carries our ExID. */
const TCP_OPTION_KIND = '253';

// The mask lists flags in the order iptables-save prints them.
const tcp = ['-p', 'tcp', '-m', 'tcp'];
const SYN = [...tcp, '--tcp-flags', 'FIN,SYN,RST,ACK', 'SYN'];
const SYN_ACK = [...tcp, '--tcp-flags', 'FIN,SYN,RST,ACK', 'SYN,ACK'];
// The third packet is any segment with ACK and without SYN/RST: FIN is left out of the mask
// on purpose, or an ACK+FIN would complete a server's handshake without passing the queue.
const ACK = [...tcp, '--tcp-flags', 'SYN,RST,ACK', 'ACK'];
const RST = [...tcp, '--tcp-flags', 'RST', 'RST'];

const markMatch = (value: number, mask: number): string[] => ['-m', 'mark', '--mark', `${hex(value)}/${hex(mask)}`];
/** CONNMARK --save-mark/--restore-mark of the PU index bits only (same position in both marks). */
const puBits = ['--nfmask', hex(PU_INDEX_MASK), '--ctmask', hex(PU_INDEX_MASK)];
const connmarkMatch = (bit: number): string[] => ['-m', 'connmark', '--mark', `${hex(bit)}/${hex(bit)}`];
/**
 * A packet of a flow this host authorized and that waits for no proof: it stays in the kernel.
 * A bare SYN never does (conntrack gives a new connection its own entry; a SYN here is not
 * part of the authorized one). This is the rule bulk traffic of PUs pays per packet.
 */
const AUTHORIZED = [...tcp, '!', '--tcp-flags', 'FIN,SYN,RST,ACK', 'SYN', '-m', 'connmark', '--mark', `${hex(CT_AUTHORIZED)}/${hex(CT_AUTHORIZED | CT_PENDING)}`, '-j', 'RETURN'];
/** A reset of a flow whose handshake is under way may pass: it can only end the flow. */
const PENDING_RST = [...RST, '-m', 'connmark', '!', '--mark', `0x0/${hex(CT_PENDING)}`, '-j', 'RETURN'];
/** A packet back from a verdict (NF_REPEAT) with an op code: TESSERA-APPLY consumes it. */
const OPS = [...markMatch(OP_PRESENT, OP_PRESENT), '-j', CHAINS.apply];
/** Our nfmark bits are ours: whatever set them before our chains (SO_MARK, other rules) is undone. */
const CLEAR_OURS = ['-m', 'mark', '!', '--mark', `0x0/${hex(NFMARK_MASK)}`, '-j', 'MARK', '--set-xmark', `0x0/${hex(NFMARK_MASK)}`];

function fail(message: string): never {
  throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `ruleset: ${message}`);
}

function isInt(n: unknown, min: number, max: number): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= min && n <= max;
}

function validate(spec: RulesetSpec): void {
  const { num, count, bypass } = spec.queue ?? ({} as RulesetSpec['queue']);
  if (!isInt(num, 0, 65535)) fail(`queue.num must be an integer 0..65535, got ${String(num)}`);
  if (!isInt(count, 1, 65536 - num)) fail(`queue.count must be an integer 1..${65536 - num} (queues num..num+count-1 must exist), got ${String(count)}`);
  if (typeof bypass !== 'boolean') fail('queue.bypass must be a boolean');
  const indexes = new Set<number>();
  const classids = new Set<number>();
  for (const pu of spec.pus) {
    if (!isInt(pu.index, 1, MAX_PU_INDEX)) fail(`PU index must be 1..${MAX_PU_INDEX} (it must fit the nfmark PU bits), got ${String(pu.index)}`);
    // classid 0 means "no class": every socket outside a net_cls cgroup would match it.
    if (!isInt(pu.classid, 1, 0xffff_ffff)) fail(`PU classid must be 1..0xffffffff, got ${String(pu.classid)}`);
    if (pu.cgroup2 && !isRulePath(pu.cgroup2.cgroup)) fail(`PU cgroup ${JSON.stringify(pu.cgroup2.cgroup)} must be a relative path without . or ..`);
    if (pu.cgroup2 && !isRulePath(pu.cgroup2.path)) fail(`PU cgroup path ${JSON.stringify(pu.cgroup2.path)} must be relative, without . or ..`);
    if (pu.cgroup2 && !isInt(pu.cgroup2.level, 1, 64)) fail(`PU cgroup level must be 1..64, got ${String(pu.cgroup2.level)}`);
    if (indexes.has(pu.index)) fail(`PU index ${pu.index} is used twice`);
    if (classids.has(pu.classid)) fail(`classid ${hex(pu.classid)} is used twice`);
    indexes.add(pu.index);
    classids.add(pu.classid);
  }
  for (const p of [...spec.serverPorts, ...(spec.guardPorts ?? [])]) if (!isInt(p, 1, 65535)) fail(`server port must be 1..65535, got ${String(p)}`);
  if (spec.namespacePu !== undefined) {
    if (!isInt(spec.namespacePu, 1, MAX_PU_INDEX)) fail(`namespacePu must be a PU index 1..${MAX_PU_INDEX}, got ${String(spec.namespacePu)}`);
    if (spec.pus.length > 0 || spec.serverPorts.length > 0 || (spec.guardPorts ?? []).length > 0) fail('a namespace ruleset (namespacePu) takes no pus or serverPorts: the namespace is the PU');
  }
}

function queueTarget(q: RulesetSpec['queue']): string[] {
  // --queue-balance hashes on addresses only, symmetrically, so both directions of a flow
  // (and every handshake packet of it) reach the same worker.
  const t = q.count === 1 ? ['-j', 'NFQUEUE', '--queue-num', String(q.num)] : ['-j', 'NFQUEUE', '--queue-balance', `${q.num}:${q.num + q.count - 1}`];
  return q.bypass ? [...t, '--queue-bypass'] : t;
}

function buildMangle(spec: RulesetSpec): TableRules {
  const queue = queueTarget(spec.queue);
  const ns = spec.namespacePu;
  const setIndex = (index: number): string[] => ['-j', 'MARK', '--set-xmark', `${hex(markForPuIndex(index))}/${hex(PU_INDEX_MASK)}`];
  // --fail-open chooses availability: with no worker bound, handshakes pass unjudged, so the
  // flows they start are never marked authorized. Refusing their later packets would make
  // fail-open fail closed after all; in that mode the refusing rules are left out.
  const refuse = (rules: Rule[]): Rule[] => (spec.queue.bypass ? [] : rules);
  return {
    chains: {
      // Entry of locally sent packets (before POSTROUTING) and of received ones (before
      // INPUT): an nfmark bit of ours set by anyone else is cleared, so a process with
      // SO_MARK cannot claim a PU index or an op code. NF_REPEAT re-enters only the hook it
      // came from, so our own verdict marks are never cleared here.
      [CHAINS.output]: [CLEAR_OURS],
      [CHAINS.prerouting]: [CLEAR_OURS],
      // Ingress, after DNAT: the port is the one the local socket listens on.
      [CHAINS.input]: [
        OPS,
        AUTHORIZED,
        // Our client's SYN-ACK: bring back the PU index saved with its SYN (TESSERA-APPLY),
        // so the worker knows the local PU without keeping state. CONNMARK does not end
        // the chain; the queue rule below then sees the restored nfmark.
        [...SYN_ACK, ...connmarkMatch(CT_CLIENT_PENDING), '-j', 'CONNMARK', '--restore-mark', ...puBits],
        [...SYN_ACK, ...connmarkMatch(CT_CLIENT_PENDING), ...queue],
        // The handshake's third packet never goes to userspace: the server's flow became
        // AUTHORIZED when its SYN-ACK left. An ACK (or data) while the flow still waits for
        // that SYN-ACK cannot come from the client the SYN-ACK has not reached yet: dropped.
        ...(spec.queue.ackPass ? [[...ACK, ...connmarkMatch(CT_SERVER_PENDING), ...queue]] : refuse([[...ACK, ...connmarkMatch(CT_SERVER_PENDING), '-j', 'DROP']])),
        // A tagged SYN to any local port: the worker strips the token before TCP sees it.
        [...SYN, '-m', 'tcp', '--tcp-option', TCP_OPTION_KIND, ...queue],
        PENDING_RST,
        // Everything else addressed to a PU: its SYNs are judged, the rest is refused. A PU's
        // socket is named by the kernel's socket lookup (PU_DEST, set by table inet tessera
        // just before this hook) from its first SYN, and a socket the lookup names as not a
        // PU's is left alone even on a PU's port number.
        [...markMatch(PU_DEST, PU_DEST), '-j', CHAINS.puPort],
        // The lookup names no TIME_WAIT or request socket. The last ACK of a handshake meets a
        // request socket, but its SYN was judged, so its connmark is pending (queued above) or
        // authorized — unless conntrack does not track it or calls it INVALID: to a PU's port,
        // refused. A SYN meets a TIME_WAIT socket when a client reuses a 4-tuple, and TCP then
        // hands it to the listener: when the lookup found no full socket (neither PU_DEST nor
        // HOST_SOCK), a SYN to a PU's port is judged as that PU's.
        // The ports come from table inet tessera's port sets (PORT_GUARD, PORT_SERVER): one
        // hash lookup each, whatever the number of PUs and ports.
        ...(ns !== undefined
          ? [['-p', 'tcp', '-j', CHAINS.puIn]]
          : [
              ['-p', 'tcp', '-m', 'conntrack', '--ctstate', 'INVALID,UNTRACKED', ...markMatch(PORT_GUARD, PORT_GUARD), '-j', CHAINS.puPort],
              [...SYN, ...markMatch(PORT_GUARD, PORT_GUARD | HOST_SOCK), '-j', CHAINS.puPort],
              // A PU the lookup cannot name (no cgroup v2): every packet to its ports.
              ['-p', 'tcp', ...markMatch(PORT_SERVER, PORT_SERVER), '-j', CHAINS.puPort],
            ]),
      ],
      ...(ns !== undefined ? { [CHAINS.puIn]: [['-j', CHAINS.puPort]] } : {}),
      [CHAINS.puPort]: [[...SYN, ...queue], ...refuse([['-j', 'DROP']])],
      // Egress.
      [CHAINS.postrouting]: [
        OPS,
        // Our server's SYN-ACK, the first and every retransmission: the first ends the server
        // side's pending state (AUTHORIZED), and a retransmitted one (the first was lost, the
        // client's SYN came again) must carry its block too, so it is queued also when the
        // flow is already authorized. Hence before AUTHORIZED. A client-side flow never sends
        // a SYN-ACK (a simultaneous open is never authorized).
        [...SYN_ACK, '-m', 'connmark', '!', '--mark', `0x0/${hex(CT_SERVER_PENDING | CT_AUTHORIZED)}`, ...queue],
        AUTHORIZED,
        // v1's six passes (benchmark only): the client's first ACK. Without it, an ACK of a
        // flow still pending falls through to the PU's DROP below.
        ...(spec.queue.ackPass ? [[...ACK, ...connmarkMatch(CT_CLIENT_PENDING), ...queue]] : []),
        // A container namespace: every packet is the PU's. On the host, table inet tessera's
        // output chain set the sending PU's index (one map lookup).
        ...(ns !== undefined ? [['-p', 'tcp', '-j', CHAINS.puOut]] : []),
        // The host's own traffic: not a PU's, never touched.
        [...markMatch(0, PU_INDEX_MASK), '-j', 'RETURN'],
        // A PU's SYN, with or without payload (TCP Fast Open): judged by a worker.
        [...SYN, ...queue],
        PENDING_RST,
        // A reset answering the peer (conntrack's reply direction): our own REJECT's answer to
        // a refused SYN (attached to that SYN's flow, which never became pending), or a closed
        // port's. It can only end the peer's attempt.
        [...RST, '-m', 'conntrack', '--ctdir', 'REPLY', '-j', 'RETURN'],
        // Any other packet of a PU outside an authorized flow: a crossed SYN answered in a
        // simultaneous open, data on a flow conntrack does not track, ...: refused.
        ...refuse([['-j', 'DROP']]),
      ],
      ...(ns !== undefined ? { [CHAINS.puOut]: [setIndex(ns)] } : {}),
      [CHAINS.apply]: [
        [...markMatch(OP_SET_CLIENT_PENDING, OP_MASK), '-j', 'CONNMARK', '--set-xmark', `${hex(CT_CLIENT_PENDING)}/${hex(CT_CLIENT_PENDING)}`],
        // The client SYN's verdict keeps the PU index in the nfmark: save it in the connmark
        // (same bits) before the MARK rule below clears it.
        [...markMatch(OP_SET_CLIENT_PENDING, OP_MASK), '-j', 'CONNMARK', '--save-mark', ...puBits],
        [...markMatch(OP_CLEAR_CLIENT_PENDING, OP_MASK), '-j', 'CONNMARK', '--set-xmark', `${hex(CT_AUTHORIZED)}/${hex(CT_CLIENT_PENDING | CT_AUTHORIZED)}`],
        // Not on a flow already authorized: a retransmitted SYN can wait in the queue while the
        // client's ACK (never queued) passes and establishes the connection; the established
        // socket answers that SYN with an ACK, never a SYN-ACK, so a pending bit set now would
        // never be cleared and every later packet of the client would be dropped.
        [...markMatch(OP_SET_SERVER_PENDING, OP_MASK), '-m', 'connmark', '--mark', `0x0/${hex(CT_AUTHORIZED)}`, '-j', 'CONNMARK', '--set-xmark', `${hex(CT_SERVER_PENDING)}/${hex(CT_SERVER_PENDING)}`],
        [...markMatch(OP_CLEAR_SERVER_PENDING, OP_MASK), '-j', 'CONNMARK', '--set-xmark', `${hex(CT_AUTHORIZED)}/${hex(CT_SERVER_PENDING | CT_AUTHORIZED)}`],
        // Consume the op and PU bits so the packet cannot loop; REJECT_BIT stays for the filter table.
        ['-j', 'MARK', '--set-xmark', `0x0/${hex(OP_MASK | PU_INDEX_MASK)}`],
        // The verdict was already given for this packet: end the mangle hook here, or the
        // queue rules below would send it to userspace a second time.
        ['-j', 'ACCEPT'],
      ],
    },
    jumps: { OUTPUT: CHAINS.output, PREROUTING: CHAINS.prerouting, INPUT: CHAINS.input, POSTROUTING: CHAINS.postrouting },
  };
}

function buildFilter(): TableRules {
  return {
    chains: {
      [CHAINS.reject]: [['-p', 'tcp', ...markMatch(REJECT_BIT, REJECT_BIT), '-j', 'REJECT', '--reject-with', 'tcp-reset']],
    },
    // Ingress verdicts are given in mangle INPUT, so only filter INPUT sees REJECT_BIT.
    jumps: { INPUT: CHAINS.reject },
  };
}

/** The complete desired state for both families. Pure; throws TESSERA_ERR_INVALID_ARGUMENT on a bad spec. */
export function buildRuleset(spec: RulesetSpec): Ruleset {
  validate(spec);
  // Same rules for both families today; bridge PUs (-d IP) will make them differ.
  const tables = (): Partial<Record<TableName, TableRules>> => ({ mangle: buildMangle(spec), filter: buildFilter() });
  // UDP (issue 13): chains of its own, entered first from INPUT and POSTROUTING, on the host
  // and in a container's namespace (there every datagram is the one PU's: udp.ts).
  const withUdp = (family: Family, t: Partial<Record<TableName, TableRules>>): Partial<Record<TableName, TableRules>> => {
    if (!t.mangle || !t.filter) return t;
    const queue = queueTarget(spec.queue);
    const m = t.mangle.chains;
    const mangle: TableRules = {
      chains: {
        ...m,
        [CHAINS.input]: [udpJump(UDP_CHAINS.in), ...m[CHAINS.input]!],
        [CHAINS.postrouting]: [udpJump(UDP_CHAINS.out), ...m[CHAINS.postrouting]!],
        ...udpChains(family, queue, spec.namespacePu),
      },
      jumps: t.mangle.jumps,
    };
    const filter: TableRules = { chains: { ...t.filter.chains, [CHAINS.reject]: [...t.filter.chains[CHAINS.reject]!, udpReject(family)] }, jumps: t.filter.jumps };
    return { ...t, mangle, filter };
  };
  // A container namespace is all one PU: no lookup needed there.
  const nft: NftSpec = { pus: spec.pus, serverPorts: spec.serverPorts, guardPorts: spec.guardPorts ?? spec.serverPorts };
  return { ipv4: withUdp('ipv4', tables()), ipv6: withUdp('ipv6', tables()), ...(spec.namespacePu === undefined ? { nft } : {}) };
}

/** A ruleset with no chains: the reconciler then removes everything of ours. */
export function emptyRuleset(): Ruleset {
  return { ipv4: {}, ipv6: {} };
}
