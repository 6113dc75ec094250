// One authorization decision, as the datapath records it and the API serves it. A shared
// leaf so that the datapath (which makes them) and the API (which serves them) agree
// without importing each other.

export interface FlowRecord {
  /** Milliseconds since the epoch. */
  time: number;
  /** Which host's view: 'ingress' = we are the server, 'egress' = we are the client. */
  direction: 'ingress' | 'egress';
  /** TCP: the handshake packet that decided. UDP: 'hello' / 'reply' / 'confirm' (the exchange's control packets) or 'datagram' (no exchange: a network rule, or a refusal of an untagged datagram). */
  stage: 'syn' | 'syn-ack' | 'ack' | 'hello' | 'reply' | 'confirm' | 'datagram';
  verdict: 'accept' | 'reject' | 'drop';
  /** A reason code of docs/errors.md. */
  reason: string;
  ruleId: string;
  localPu: string | null;
  localLabels: readonly string[] | null;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  remoteHost: string | null;
  remotePu: string | null;
  remoteLabels: readonly string[] | null;
  /** The transport; absent: 'tcp' (records made before UDP existed). */
  protocol?: 'tcp' | 'udp';
  /** Ids of policy rules with action observe that matched on the way. */
  observed?: readonly string[];
  /** The local PU's mode when it is not enforce (learn or audit; docs/learning.md). Absent: enforce. */
  mode?: 'learn' | 'audit';
}

/**
 * The one text form of an IP address at buf[offset..offset+length), for everything shown to
 * a person (flow records, logs, policy CIDRs): a dotted quad, or RFC 5952 IPv6 (lower case,
 * the longest run of two or more zero groups, the first if tied, as "::"). The datapath
 * passes addresses as bytes and formats them only here, where they are shown.
 */
export function formatAddress(buf: Uint8Array, offset: number, length: 4 | 16): string {
  if (length === 4) return `${buf[offset]!}.${buf[offset + 1]!}.${buf[offset + 2]!}.${buf[offset + 3]!}`;
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((buf[offset + i]! << 8) | buf[offset + i + 1]!);
  // RFC 5952 4.2: compress the longest run (first if tied) of two or more zero groups.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number): string => g.slice(from, to).map((x) => x.toString(16)).join(':');
  return best < 0 ? hex(0, 8) : `${hex(0, best)}::${hex(best + bestLen, 8)}`;
}
