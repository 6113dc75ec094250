// Per-PU modes (docs/learning.md, docs/policy.md "Modes"): the policy file's `mode` (the
// default) and `modes` list (selector → mode, first match wins) say how each LOCAL PU's
// checks are applied:
//
//   learn    allow everything; a refusal the rules would make is let through, recorded as
//            reason `learn`; the edges are observed for `tessera policy suggest`
//   audit    the same, recorded as reason `audit` (what enforcing would refuse)
//   enforce  refusals are enforced (the default)
//
// Conflict rule: a mode governs only the check made for its own PU on its own host (the
// server's ingress check, the client's egress check). A connection needs both ends to allow
// it, so between PUs in different modes the stricter end decides: an enforcing server still
// refuses a learning client, and a learning server does not make its enforcing clients lax.
// Pure.

import { termsMatch, type CompiledTerm, type LabelInfo } from './selector.js';

export const PU_MODES = ['learn', 'audit', 'enforce'] as const;
export type PuMode = (typeof PU_MODES)[number];

/** learn → audit → enforce (`tessera policy promote`); enforce stays enforce. */
export function nextMode(m: PuMode): PuMode {
  return m === 'learn' ? 'audit' : 'enforce';
}

export interface ModeTable {
  readonly modes: ReadonlyArray<{ readonly terms: readonly CompiledTerm[]; readonly mode: PuMode }>;
  readonly defaultMode: PuMode;
}

/** The mode of a local PU (null: no PU, the default applies). */
export function modeOf(p: ModeTable, local: LabelInfo | null): PuMode {
  if (local !== null) {
    for (const m of p.modes) if (termsMatch(m.terms, local.map)) return m.mode;
  }
  return p.defaultMode;
}

/** True when some PU may run in a mode other than enforce (the evaluator then asks modeOf). */
export function hasLaxModes(p: ModeTable): boolean {
  return p.defaultMode !== 'enforce' || p.modes.some((m) => m.mode !== 'enforce');
}
