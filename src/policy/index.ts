// Policy decides whether a client may open a TCP connection to a server. It is pure: the
// datapath asks, the policy answers from labels and the port. Issue #5 grows this into a
// rule language; the interface stays.

/** One side of a connection as the policy sees it. `labels` are canonical "k=v" strings. */
export interface Endpoint {
  readonly labels: readonly string[];
}

export interface PolicyRequest {
  /** The client; null when the peer does not run Tessera (no token). */
  readonly client: Endpoint | null;
  /** The server; null when the peer does not run Tessera. */
  readonly server: Endpoint | null;
  /** Server TCP port. */
  readonly port: number;
}

export interface PolicyDecision {
  readonly allow: boolean;
  /** Stable id of the rule that decided, for flow records and `tessera policy explain`. */
  readonly ruleId: string;
}

export interface Policy {
  readonly name: string;
  /** Asked on the server's host: may this client reach this local server? */
  ingress(req: PolicyRequest): PolicyDecision;
  /** Asked on the client's host: may this local client talk to this server? */
  egress(req: PolicyRequest): PolicyDecision;
}

const ALLOW_SAME: PolicyDecision = Object.freeze({ allow: true, ruleId: 'default:same-labels' });
const DENY_DIFFERENT: PolicyDecision = Object.freeze({ allow: false, ruleId: 'default:labels-differ' });
const DENY_UNPROTECTED: PolicyDecision = Object.freeze({ allow: false, ruleId: 'default:peer-unprotected' });

/** User labels are those whose key does not start with '@' (system labels are added by monitors). */
function userLabelKey(labels: readonly string[]): string {
  let key = '';
  for (const l of labels) if (l.charCodeAt(0) !== 64 /* @ */) key += l + '\n';
  return key;
}

function sameLabels(req: PolicyRequest): PolicyDecision {
  if (!req.client || !req.server) return DENY_UNPROTECTED;
  return userLabelKey(req.client.labels) === userLabelKey(req.server.labels) ? ALLOW_SAME : DENY_DIFFERENT;
}

/**
 * The built-in policy used when no policy file is given: two PUs may talk iff both are
 * protected and their user labels are equal (the seeds' walkthrough semantics).
 */
export function createDefaultPolicy(): Policy {
  return { name: 'default (same user labels)', ingress: sameLabels, egress: sameLabels };
}
