// Policy decides whether a client may open a TCP connection to a server. It is pure: the
// datapath asks, the policy answers from labels, the port and (for peers without Tessera)
// the peer's address. docs/policy.md is the language reference.

import { TesseraError } from '../errors.js';
import { compilePolicy } from './compile.js';
import { DEFAULT_POLICY_TEXT } from './default-policy.js';
import type { CompileOptions, Policy } from './types.js';

export type {
  Endpoint,
  PolicyRequest,
  PolicyDecision,
  Policy,
  PolicyAction,
  RejectMode,
  Direction,
  PolicyError,
  CompileOptions,
  CompileResult,
  CheckResult,
  ExplainQuery,
  ExplainStep,
  Explanation,
} from './types.js';
export { compilePolicy } from './compile.js';
export { check } from './check.js';
export { explain } from './explain.js';
export { DEFAULT_POLICY_TEXT } from './default-policy.js';

/** compilePolicy, throwing TESSERA_ERR_POLICY with every error (one per line) on failure. */
export function loadPolicy(text: string, opts: CompileOptions = {}): Policy {
  const r = compilePolicy(text, opts);
  if (r.ok) return r.policy;
  throw new TesseraError('TESSERA_ERR_POLICY', r.errors.map((e) => e.text).join('\n'), { cause: r.errors });
}

/**
 * The built-in policy used when no policy file is given (policy/default.yaml): two PUs may
 * talk iff both are protected and their user labels are equal (the seeds' walkthrough).
 */
export function createDefaultPolicy(): Policy {
  return loadPolicy(DEFAULT_POLICY_TEXT, { file: 'policy/default.yaml' });
}
