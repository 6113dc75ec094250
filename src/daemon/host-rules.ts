// The host ruleset's spec from the PUs on the host's own stack (docs/rules.md): which PUs the
// kernel's socket lookup can name (a cgroup v2 that exists), and which ports judge by number.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Cgroup2Ref, RulesetSpec } from '../rules/index.js';

export interface HostPu {
  index: number;
  classid: number;
  ports: readonly number[];
  cgroup2?: Cgroup2Ref;
  /** A container with a namespace of its own: its rules live there, not here. */
  netns?: string;
}

/**
 * A cgroup v2 is written into rules by path, which the kernel resolves when the rules load: a
 * cgroup gone with its last process (a container that just exited) would fail the whole
 * transaction, so only cgroups that exist are named (the PU ends with them anyway).
 */
const cgroupExists = (ref: Cgroup2Ref): boolean => existsSync(join('/sys/fs/cgroup', ref.path));

export function hostRulesetSpec(all: readonly HostPu[], queue: RulesetSpec['queue'], exists: (ref: Cgroup2Ref) => boolean = cgroupExists): RulesetSpec {
  const pus = all.filter((p) => !p.netns).map((p) => ({ p, cgroup2: p.cgroup2 && exists(p.cgroup2) ? p.cgroup2 : undefined }));
  const sorted = (list: number[]): number[] => [...new Set(list)].sort((a, b) => a - b);
  return {
    queue,
    pus: pus.map(({ p, cgroup2 }) => ({ index: p.index, classid: p.classid, ...(cgroup2 ? { cgroup2 } : {}) })),
    // Every packet to these ports is judged by number: PUs the lookup cannot name.
    serverPorts: sorted(pus.filter(({ cgroup2 }) => !cgroup2).flatMap(({ p }) => [...p.ports])),
    // Every PU's ports: for what the lookup cannot place (TIME_WAIT, untracked packets).
    guardPorts: sorted(pus.flatMap(({ p }) => [...p.ports])),
  };
}
