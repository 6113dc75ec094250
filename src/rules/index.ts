// Kernel plumbing: iptables rules as data, the reconciler that installs them, the one
// command runner, net_cls and cgroup v2 cgroups for process PUs, and the nftables socket
// lookup (table inet tessera). See docs/rules.md.

export { buildRuleset, type Ruleset, type RulesetSpec, type Family, type TableName, type TableRules, type Rule } from './ruleset.js';
export { createReconciler, type Reconciler, type ReconcilerOptions, type ApplyResult, type RemoveResult, type RulesLog } from './reconciler.js';
export { createCommandRunner, type CommandRunner, type CommandRunnerOptions, type RunResult, type LineStream } from './runner.js';
export { createNftSession, type NftSession } from './nft-session.js';
export { rulesGeneration, type RulesGeneration } from './generation.js';
export { createNetCls, classidFor, type NetCls, type NetClsOptions } from './cgroups.js';
export { buildNftTable, type Cgroup2Ref } from './nft.js';
