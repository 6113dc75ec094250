// One authorization decision, as the datapath records it and the API serves it. A shared
// leaf so that the datapath (which makes them) and the API (which serves them) agree
// without importing each other.

export interface FlowRecord {
  /** Milliseconds since the epoch. */
  time: number;
  /** Which host's view: 'ingress' = we are the server, 'egress' = we are the client. */
  direction: 'ingress' | 'egress';
  stage: 'syn' | 'syn-ack' | 'ack';
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
  /** Ids of policy rules with action observe that matched on the way. */
  observed?: readonly string[];
}
