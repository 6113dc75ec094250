// The policy's syntax tree and the language's key lists: what parse.ts produces and
// compile.ts, check.ts and explain.ts read. policy/schema.json publishes the same shape (a
// unit test keeps the key lists in step).

import type { Cidr } from './cidr.js';
import type { Term } from './selector.js';
import type { PolicyAction, PolicyError, RejectMode } from './types.js';
import type { PuMode } from './modes.js';

export const TOP_KEYS = ['version', 'name', 'description', 'mode', 'modes', 'rules'] as const;
export const RULE_KEYS = [
  'id',
  'description',
  'direction',
  'from',
  'to',
  'fromNetworks',
  'toNetworks',
  'sameLabels',
  'ports',
  'action',
  'reject',
  'protocol',
] as const;
export const MODE_KEYS = ['select', 'mode'] as const;
export const OPERATORS = ['eq', 'ne', 'in', 'notIn', 'exists'] as const;

export const MAX_TEXT = 1 << 20;
export const MAX_RULES = 10_000;

export const DIR_INGRESS = 1;
export const DIR_EGRESS = 2;
/** Rule protocols (RuleAst.protocols), a bit each; a rule without `protocol:` has both. */
export const PROTO_TCP = 1;
export const PROTO_UDP = 2;
export const PROTO_ANY = PROTO_TCP | PROTO_UDP;

export type PeerAst =
  | { readonly kind: 'any' }
  | { readonly kind: 'labels'; readonly terms: readonly Term[] }
  | { readonly kind: 'networks'; readonly cidrs: readonly Cidr[] };

export interface RuleAst {
  readonly index: number;
  readonly id: string;
  readonly line: number;
  readonly column: number;
  /** DIR_INGRESS | DIR_EGRESS as written (`direction`). */
  readonly dirs: number;
  readonly from: PeerAst;
  readonly to: PeerAst;
  readonly same: null | true | readonly string[];
  /** Sorted, merged [lo, hi] pairs; null = every port. */
  readonly ports: Int32Array | null;
  /** PROTO_TCP | PROTO_UDP as written (`protocol`); PROTO_ANY when absent. */
  readonly protocols: number;
  readonly action: PolicyAction;
  readonly reject: RejectMode | undefined;
}

export interface ModeAst {
  readonly index: number;
  readonly line: number;
  readonly column: number;
  readonly terms: readonly Term[];
  /** mode !== 'enforce': refusals are let through. */
  readonly audit: boolean;
  readonly mode: PuMode;
}

export interface PolicyAst {
  readonly name: string;
  readonly defaultAudit: boolean;
  readonly defaultMode: PuMode;
  readonly modes: readonly ModeAst[];
  readonly rules: readonly RuleAst[];
}

export interface ParseResult {
  readonly ast: PolicyAst | null;
  readonly errors: PolicyError[];
  readonly warnings: PolicyError[];
}
