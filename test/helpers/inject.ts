// Rule-transaction failures on demand: shims for the tools the reconciler runs, found first on
// a daemon's PATH, that fail with "<tool>: injected failure" while a marker file exists and run
// the real tool otherwise. A PU's own transaction is an nft element update (the iptables rules
// do not depend on PUs), a ruleset repair an iptables-restore: both are shimmed.

import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../scripts/lib/netns.js';

export const RULE_TOOLS = ['iptables-restore', 'ip6tables-restore', 'nft'] as const;

/** Writes the shims into `binDir`; returns the PATH a daemon should be started with. */
export async function failingRuleTools(binDir: string, failMarker: string, tools: readonly string[] = RULE_TOOLS): Promise<string> {
  mkdirSync(binDir, { recursive: true });
  for (const tool of tools) {
    const real = (await run(['sh', '-c', `command -v ${tool}`])).stdout.trim();
    if (!real) throw new Error(`${tool} is not installed: cannot shim it`);
    const file = join(binDir, tool);
    writeFileSync(file, `#!/bin/sh\nif [ -e ${failMarker} ]; then echo "${tool}: injected failure" >&2; exit 1; fi\nexec ${real} "$@"\n`);
    chmodSync(file, 0o755);
  }
  return `${binDir}:${process.env.PATH ?? ''}`;
}
