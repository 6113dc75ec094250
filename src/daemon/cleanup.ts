// `tessera cleanup`: remove everything Tessera owns in this network namespace (TESSERA-
// chains, their jumps) and its net_cls subtree; touch nothing else. It holds the daemon's
// locks while it works (lock.ts), so it refuses while a daemon runs — removing a live
// daemon's rules and moving its PUs' processes out of their cgroups would leave them
// unprotected — unless forced.

import { createCommandRunner, createNetCls, createReconciler } from '../rules/index.js';
import { acquireLocks } from './lock.js';

export async function cleanup(cgroupRoot: string, out: (line: string) => void, opts: { force?: boolean } = {}): Promise<void> {
  const locks = opts.force ? null : await acquireLocks({ cgroupRoot, role: 'cleanup' });
  try {
    const runner = createCommandRunner();
    const r = await createReconciler({ runner }).removeAll();
    out(`removed ${r.removed} TESSERA chain(s) and jump(s)${r.skipped.length ? ` (skipped: ${r.skipped.join(', ')} not available)` : ''}`);
    const netcls = createNetCls({ root: cgroupRoot, runner });
    const n = await netcls.removeAll();
    out(`removed ${n} net_cls cgroup(s) under ${cgroupRoot}`);
  } finally {
    await locks?.release();
  }
}
