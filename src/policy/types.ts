// The policy's public types. docs/policy.md explains the language; this file is the contract
// between the policy and the datapath (src/datapath/handshake calls ingress/egress).

/** One side of a connection as the policy sees it. `labels` are canonical "k=v" strings. */
export interface Endpoint {
  readonly labels: readonly string[];
}

export interface PolicyRequest {
  /** The client; null when the peer does not run Tessera (no token). */
  readonly client: Endpoint | null;
  /** The server; null when the peer does not run Tessera. */
  readonly server: Endpoint | null;
  /** Server port (TCP or UDP). */
  readonly port: number;
  /** The flow's transport; absent: 'tcp' (every TCP caller predates UDP). */
  readonly protocol?: 'tcp' | 'udp';
  /**
   * The remote peer's IP address: the client on ingress, the server on egress. As text
   * ("10.0.0.53", "2001:db8::1") or as the 4 or 16 bytes of the packet (the datapath passes
   * a view of the header: no text is made per packet). Only external-network rules read it,
   * and only when that peer has no Tessera identity.
   */
  readonly peerAddr?: string | Uint8Array;
}

export type PolicyAction = 'allow' | 'reject' | 'observe';
export type RejectMode = 'reset' | 'drop';
export type Direction = 'ingress' | 'egress';

export interface PolicyDecision {
  /** Let the connection through. True for allow, and for reject when `audit` is true. */
  readonly allow: boolean;
  /** Id of the rule that decided ("default:reject" when no rule matched). */
  readonly ruleId: string;
  /** What the deciding rule said; with `audit` this is 'reject' while `allow` is true. */
  readonly action?: 'allow' | 'reject';
  /** The local PU runs in audit mode and this connection would have been refused. */
  readonly audit?: boolean;
  /** How to refuse, when the rule says; absent: the daemon's --reject setting. */
  readonly reject?: RejectMode;
  /** Ids of `observe` rules that matched before the deciding rule, in order. */
  readonly observed?: readonly string[];
  /** The local PU's mode when it is not enforce (src/policy/modes.ts); absent: enforce. */
  readonly mode?: 'learn' | 'audit';
}

export interface Policy {
  readonly name: string;
  /** Asked on the server's host: may this client reach this local server? */
  ingress(req: PolicyRequest): PolicyDecision;
  /** Asked on the client's host: may this local client talk to this server? */
  egress(req: PolicyRequest): PolicyDecision;
}

/** A problem found in a policy file, located by 1-based line and column. */
export interface PolicyError {
  readonly severity: 'error' | 'warning';
  /** Stable: yaml, unknown-key, missing-key, type, value, label, operator, cidr, port,
   *  duplicate-id, too-large, shadowed, redundant, cidr-conflict, never-matches, cidr-host-bits. */
  readonly code: string;
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly message: string;
  /** "file:line:column: message" (warnings: "file:line:column: warning: message"). */
  readonly text: string;
}

export interface CompileOptions {
  /** Shown in messages and used as the policy name when the file has no `name`. */
  readonly file?: string;
}

export type CompileResult = { readonly ok: true; readonly policy: Policy } | { readonly ok: false; readonly errors: readonly PolicyError[] };

export interface CheckResult {
  readonly ok: boolean;
  readonly errors: readonly PolicyError[];
  readonly warnings: readonly PolicyError[];
}

export interface ExplainQuery {
  /** Client labels; null for a peer without Tessera. */
  readonly from: readonly string[] | null;
  /** Server labels; null for a peer without Tessera. */
  readonly to: readonly string[] | null;
  readonly port: number;
  /** The flow's transport; default 'tcp'. */
  readonly protocol?: 'tcp' | 'udp';
  /** Which host's check to explain; default both (each side that runs Tessera). */
  readonly direction?: Direction | 'both';
  /** Address of the side that is null, for external-network rules. */
  readonly peerAddr?: string;
}

export interface ExplainStep {
  readonly direction: Direction;
  readonly ruleId: string;
  /** 1-based line of the rule in the file (0 for the default). */
  readonly line: number;
  readonly matched: boolean;
  readonly why: string;
}

export interface Explanation {
  /** For `both`: allowed iff every evaluated side allows; otherwise that side's decision. */
  readonly decision: PolicyDecision;
  readonly chain: readonly ExplainStep[];
  /** Per side, when that side was evaluated. */
  readonly ingress?: { readonly decision: PolicyDecision; readonly chain: readonly ExplainStep[] };
  readonly egress?: { readonly decision: PolicyDecision; readonly chain: readonly ExplainStep[] };
}
