// Rule transaction latency (issue 12 item 6): a PU coming, as the reconciler applies it (one
// nft element delta), through an `nft` process per transaction against one long-lived
// `nft -i` (src/rules/nft-session.ts), in a network namespace of its own with N PUs already
// in table inet tessera. Both modes alternate round by round in the same run; medians.
//
//   flock /tmp/tessera-itest.lock npx tsx bench/nft-tx.ts [--pus 1000] [--rounds 4] [--per-round 25]
//
// As root. It re-runs itself inside the namespace (`ip netns exec`), so that each `nft` is the
// process's own child as in the daemon, and deletes the namespace at the end.

import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { buildRuleset, createCommandRunner, createNftSession, createReconciler, type RulesetSpec } from '../src/rules/index.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

async function inside(): Promise<void> {
  const n = arg('--pus', 1000);
  const rounds = arg('--rounds', 4);
  const per = arg('--per-round', 25);
  const runner = createCommandRunner();
  const pu = (i: number): RulesetSpec['pus'][number] => ({ index: i, classid: 0x7e550000 + i });
  const spec = (count: number): RulesetSpec => ({ queue: { num: 0, count: 1, bypass: false }, serverPorts: [], pus: Array.from({ length: count }, (_, i) => pu(i + 1)) });
  const times: Record<'process' | 'session', number[]> = { process: [], session: [] };
  for (let r = 0; r < rounds; r++) {
    for (const mode of r % 2 ? (['session', 'process'] as const) : (['process', 'session'] as const)) {
      const session = mode === 'session' ? createNftSession({ runner }) : null;
      const rec = createReconciler({ runner, nftSession: session, verifyMs: 3_600_000, cgroupExists: async () => true });
      await rec.apply(buildRuleset(spec(n))); // the whole table: not timed
      for (let k = 1; k <= per; k++) {
        const ruleset = buildRuleset(spec(n + k));
        const t0 = performance.now();
        const res = await rec.apply(ruleset);
        times[mode].push(performance.now() - t0);
        if (!res.changed) throw new Error('nothing was written');
      }
      session?.stop();
      await rec.removeAll();
    }
  }
  const row = (m: 'process' | 'session'): string => `| ${m === 'process' ? '`nft -f` process per transaction' : 'one long-lived `nft -i`'} | ${median(times[m]).toFixed(2)} | ${pct(times[m], 0.9).toFixed(2)} | ${times[m].length} |`;
  process.stdout.write(
    [`nft transaction (one PU added) at ${n} PUs: ${rounds} rounds x ${per}, modes alternating`, '', '| | p50 (ms) | p90 (ms) | samples |', '|---|---:|---:|---:|', row('process'), row('session'), ''].join('\n'),
  );
}

if (process.argv.includes('--inside')) {
  await inside();
} else {
  const ns = `idl-ntx${process.pid % 1000}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('ip', ['netns', 'exec', ns, process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), '--inside', ...process.argv.slice(2)], { stdio: 'inherit' });
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}
