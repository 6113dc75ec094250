// The learn-mode commands' tables (docs/learning.md): `tessera policy suggest|diff|promote`.
// Help and parsing are generated from these (spec.ts).

import type { CommandSpec, OptionSpec } from './spec.js';

const socketOpt = { name: 'socket', kind: 'string', arg: 'PATH', defaultText: '$TESSERA_SOCKET or /run/tessera/tessera.sock', help: 'daemon socket' } as const satisfies OptionSpec;
const jsonOpt = { name: 'json', kind: 'flag', help: 'machine-readable output (JSON), for scripts' } as const satisfies OptionSpec;
const since = { name: 'since', kind: 'duration', arg: 'DURATION', defaultText: 'every recorded edge', help: 'only edges seen within this long before now (90s, 5m, 1h30m)' } as const satisfies OptionSpec;
const edges = { name: 'edges', kind: 'string', arg: 'FILE', multiple: true, defaultText: "the running daemon's (and its cluster's)", help: "read observed edges from saved tables (a daemon's <state-dir>/edges.json); repeat to merge several hosts'" } as const satisfies OptionSpec;

export const policySuggest = {
  name: 'policy suggest',
  summary: 'suggest a least-privilege policy from the observed edges',
  description: '',
  options: [
    since,
    { name: 'out', kind: 'string', arg: 'FILE', defaultText: 'standard output', help: 'write the policy here (refuses to overwrite)' },
    { name: 'max-cidrs', kind: 'int', min: 1, max: 256, default: 8, help: 'at most this many CIDR blocks per family per rule for peers without Tessera' },
    { name: 'rare', kind: 'int', min: 1, max: 1_000_000, default: 3, help: 'flag edges seen fewer times than this as rare' },
    edges,
    jsonOpt,
    socketOpt,
  ],
} as const satisfies CommandSpec;

export const policyDiff = {
  name: 'policy diff',
  summary: 'replay the observed edges through a policy file',
  description: '',
  options: [since, edges, jsonOpt, socketOpt],
  positionals: { name: 'FILE', min: 1, max: 1 },
} as const satisfies CommandSpec;

export const policyEdges = {
  name: 'policy edges',
  summary: 'print the observed edges (the table suggest and diff read)',
  description: '',
  options: [{ name: 'out', kind: 'string', arg: 'FILE', defaultText: 'standard output', help: 'write the table here (refuses to overwrite), to merge with --edges elsewhere' }, socketOpt],
} as const satisfies CommandSpec;

export const policyPromote = {
  name: 'policy promote',
  summary: 'move PUs along learn → audit → enforce in the policy file',
  description: '',
  options: [
    { name: 'policy', kind: 'string', arg: 'FILE', defaultText: "the running daemon's --policy file", help: 'the policy file to edit' },
    { name: 'to', kind: 'enum', arg: 'MODE', choices: ['learn', 'audit', 'enforce'], defaultText: 'the next mode', help: 'set this mode instead of the next one' },
    { name: 'dry-run', kind: 'flag', help: 'print the new file instead of writing it' },
    jsonOpt,
    socketOpt,
  ],
  positionals: { name: 'SELECTOR', min: 1, max: 1 },
} as const satisfies CommandSpec;

export const LEARN_HELP = `suggest writes a least-privilege policy from the edges the daemon observed (every mode
observes; learn mode lets everything through while it does): labels generalized across
replicas and restarts, server ports only, peers without Tessera as CIDR blocks, rare
edges flagged, evidence as comments (docs/learning.md).
diff replays the observed edges through FILE: which of them it would refuse and by which
rule, which of its rules no edge used, and what changes against the running policy; exit
status 1 when FILE would refuse an observed edge.
promote moves the PUs a SELECTOR (app=api,env=prod) names from learn to audit to enforce
by editing the policy file's modes list; the daemon reloads it without a restart.
edges prints the daemon's observed edge table as JSON (give saved tables of several hosts
to suggest or diff with --edges when there is no cluster store to merge them).`;
