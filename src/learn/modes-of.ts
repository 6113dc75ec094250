// Each PU's mode under a policy, for `tessera status` (src/policy/modes.ts decides). Pure.

import { compiledOf } from '../policy/compile.js';
import { modeOf, type PuMode } from '../policy/modes.js';
import { labelInfo } from '../policy/selector.js';
import type { Policy } from '../policy/index.js';

export function puModes(policy: Policy, pus: ReadonlyArray<{ id: string; labels: readonly string[] }>): Record<string, PuMode> {
  const p = compiledOf.get(policy);
  const out: Record<string, PuMode> = {};
  for (const pu of pus) out[pu.id] = p ? modeOf(p, labelInfo(pu.labels)) : 'enforce';
  return out;
}
