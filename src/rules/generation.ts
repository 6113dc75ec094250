// A cheap signal that the kernel's rules may have changed, so that an idle daemon does not
// re-read them on a clock (issue 17): the nf_tables ruleset generation id of the daemon's
// network namespace, read through the addon (NFT_MSG_GETGEN, ~4 µs, no process). Every
// committed nf_tables transaction moves it; with iptables-nft (checked once: `iptables -V`
// says "nf_tables") that includes every iptables change, so one id covers our iptables
// chains and table inet tessera alike. The reconciler re-reads only when the id moved since
// its last read, or on its slow backstop (reconciler.ts, quietMs).
//
// Unavailable (an addon built before nftGeneration, iptables-legacy, a refused request):
// undefined, and the reconciler reads on its clock as before. The id is per network
// namespace of the calling thread: only for a reconciler whose runner has no prefix.

import { errorMessage } from '../errors.js';
import type { CommandRunner } from './runner.js';

export type RulesGeneration = () => number | undefined;

/** `read`: the addon's generation reader (src/datapath/native.ts nftGenerationReader), or null when it has none. */
export async function rulesGeneration(runner: CommandRunner, log: { warn(obj: object, msg?: string): void } | undefined, read: (() => number) | null): Promise<RulesGeneration | undefined> {
  if (!read) return undefined;
  try {
    read();
  } catch (err) {
    log?.warn({ err: errorMessage(err) }, 'the nf_tables generation id cannot be read: rules are re-read every 10 s');
    return undefined;
  }
  const version = await runner.run(['iptables', '-V']).then(
    (r) => r.stdout,
    () => '',
  );
  if (!/nf_tables/.test(version)) {
    log?.warn({ version: version.trim() }, 'iptables is not iptables-nft: its rules are re-read every 10 s');
    return undefined;
  }
  return () => {
    try {
      return read();
    } catch {
      return undefined;
    }
  };
}
