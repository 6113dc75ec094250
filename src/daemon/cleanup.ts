// `tessera cleanup`: remove everything Tessera owns in this network namespace (TESSERA-
// chains, their jumps) and its net_cls subtree; touch nothing else.

import { createCommandRunner, createNetCls, createReconciler } from '../rules/index.js';

export async function cleanup(cgroupRoot: string, out: (line: string) => void): Promise<void> {
  const runner = createCommandRunner();
  const r = await createReconciler({ runner }).removeAll();
  out(`removed ${r.removed} TESSERA chain(s) and jump(s)${r.skipped.length ? ` (skipped: ${r.skipped.join(', ')} not available)` : ''}`);
  const netcls = createNetCls({ root: cgroupRoot, runner });
  const n = await netcls.removeAll();
  out(`removed ${n} net_cls cgroup(s) under ${cgroupRoot}`);
}
