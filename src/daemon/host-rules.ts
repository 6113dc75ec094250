// The host ruleset's spec from the PUs on the host's own stack (docs/rules.md): which PUs the
// kernel's socket lookup can name (a cgroup v2 reference), and which ports judge by number.
// Pure and O(PUs): whether a cgroup still exists is the reconciler's question (asked only of
// the cgroups that come or go), since nft resolves a path when it loads it.

import type { Cgroup2Ref, RulesetSpec } from '../rules/index.js';

export interface HostPu {
  index: number;
  classid: number;
  ports: readonly number[];
  cgroup2?: Cgroup2Ref;
  /** A container with a namespace of its own: its rules live there, not here. */
  netns?: string;
}

export function hostRulesetSpec(all: readonly HostPu[], queue: RulesetSpec['queue']): RulesetSpec {
  const pus = all.filter((p) => !p.netns);
  const sorted = (list: number[]): number[] => [...new Set(list)].sort((a, b) => a - b);
  return {
    queue,
    pus: pus.map((p) => ({ index: p.index, classid: p.classid, ...(p.cgroup2 ? { cgroup2: p.cgroup2 } : {}) })),
    // Every packet to these ports is judged by number: PUs the lookup cannot name.
    serverPorts: sorted(pus.filter((p) => !p.cgroup2).flatMap((p) => [...p.ports])),
    // Every PU's ports: for what the lookup cannot place (TIME_WAIT, untracked packets).
    guardPorts: sorted(pus.flatMap((p) => [...p.ports])),
  };
}
