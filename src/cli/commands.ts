// The table of every client `tessera` command: its options, their value types, defaults and
// help. The parser, the help text and the value types are all generated from these
// (spec.ts). The privileged commands (daemon, cleanup) have theirs in src/bin/daemon.ts,
// next to the daemon's defaults: src/cli does not import src/daemon (docs/architecture.md).

import type { CommandSpec, GroupSpec, OptionSpec } from './spec.js';
import { clusterSpec, policyPush, trustSpec } from './cluster-commands.js';
import { LEARN_HELP, policyDiff, policyEdges, policyPromote, policySuggest } from './learn-commands.js';
import { REASON_CODES } from './flows-reasons.js';

export const DEFAULT_SOCKET = '/run/tessera/tessera.sock';

export const socket = {
  name: 'socket',
  kind: 'string',
  arg: 'PATH',
  defaultText: `$TESSERA_SOCKET or ${DEFAULT_SOCKET}`,
  help: 'daemon socket',
} as const satisfies OptionSpec;
const json = { name: 'json', kind: 'flag', help: 'machine-readable output (JSON), for scripts' } as const satisfies OptionSpec;

export const runSpec = {
  name: 'run',
  summary: 'run a command as a protected process (PU) with labels',
  description: `Asks the daemon to create a processing unit (PU) with these labels, moves this process into
the PU's net_cls cgroup, then runs COMMAND inside it (stdin/stdout/stderr passed through;
exit status is COMMAND's). Every connection COMMAND or its children open or accept is
authorized by label. The PU ends when its last process exits.`,
  options: [
    { name: 'label', short: 'l', kind: 'string', arg: 'KEY=VALUE', multiple: true, required: true, help: 'a label; keys starting with @ are reserved' },
    { name: 'name', kind: 'string', arg: 'NAME', defaultText: 'the command line', help: 'a name shown by tessera status' },
    socket,
  ],
  command: true,
} as const satisfies CommandSpec;

export const statusSpec = {
  name: 'status',
  summary: 'show the daemon, its health, policy, counters and PUs',
  description: `Shows the daemon's host identity, trust mode, health, policy (revision, warnings, the last
refused reload), rules, counters, and every PU with its labels, cgroup classid, processes
and listening ports.`,
  options: [json, socket],
} as const satisfies CommandSpec;

export const flowsSpec = {
  name: 'flows',
  summary: 'show recent authorization decisions (--follow to stream), filter them, revoke',
  usage: ['flows [--follow] [filters] [--limit N] [--json] [--socket PATH]', 'flows --revoke [--dry-run] [--json] [--socket PATH]'],
  description: `Shows recent authorization decisions: both identities, verdict, reason code, rule.
Filters apply to recent decisions and to followed ones alike; a filter given more than once
matches any of its values, different filters must all match. "From" is the client of the
connection, "to" the server.

Refusals are always listed; accepts only while the daemon logs at info (the default)
or someone follows (--follow, the UI): at --log-level warn they are counted, not kept
here (docs/operations.md).

A policy change applies to new connections; --revoke re-judges the established
connections this host authorized against the running policy and cuts those it now
refuses (the local socket is destroyed and the peer gets a reset).`,
  options: [
    { name: 'follow', short: 'f', kind: 'flag', help: 'keep streaming new decisions until interrupted' },
    { name: 'denied', kind: 'flag', section: 'Filters', help: 'only refused connections (same as --verdict reject --verdict drop)' },
    { name: 'verdict', kind: 'enum', choices: ['accept', 'reject', 'drop'], multiple: true, section: 'Filters', help: 'only this verdict' },
    { name: 'reason', kind: 'enum', choices: REASON_CODES, arg: 'CODE', multiple: true, section: 'Filters', help: 'only this reason code (docs/errors.md), e.g. missing-token, policy' },
    { name: 'from-label', kind: 'string', arg: 'LABELS', multiple: true, section: 'Filters', help: "the client's labels include these (key=value or key, comma-separated: all of them)" },
    { name: 'to-label', kind: 'string', arg: 'LABELS', multiple: true, section: 'Filters', help: "the server's labels include these (key=value or key, comma-separated: all of them)" },
    { name: 'port', kind: 'int', min: 1, max: 65_535, multiple: true, section: 'Filters', help: 'the server port' },
    { name: 'since', kind: 'time', section: 'Filters', help: 'only decisions since a duration ago (30s, 5m, 1h) or an ISO time' },
    { name: 'limit', kind: 'int', min: 1, max: 10_000, default: 50, help: 'how many recent decisions (after filtering)' },
    { name: 'revoke', kind: 'flag', help: 'cut established connections the current policy refuses' },
    { name: 'dry-run', kind: 'flag', help: 'with --revoke: list them, cut nothing' },
    { ...json, help: 'one JSON object per line, for scripts' },
    socket,
  ],
} as const satisfies CommandSpec;

export const caInit = {
  name: 'ca init',
  summary: 'create a CA',
  description: '',
  options: [
    { name: 'out', kind: 'string', arg: 'DIR', required: true, help: 'output directory (created if missing)' },
    { name: 'name', kind: 'string', arg: 'NAME', default: 'tessera-ca', help: 'CA name' },
    { ...json, help: 'print the files written as JSON' },
  ],
} as const satisfies CommandSpec;

export const caIssue = {
  name: 'ca issue',
  summary: 'issue a host certificate',
  description: '',
  options: [
    { name: 'ca', kind: 'string', arg: 'DIR/ca.json', required: true, help: 'the CA private file' },
    { name: 'host', kind: 'string', arg: 'HOST', required: true, help: 'host name the certificate is for' },
    { name: 'out', kind: 'string', arg: 'DIR', required: true, help: 'output directory (created if missing)' },
    { name: 'days', kind: 'int', min: 1, max: 3650, default: 365, help: 'certificate validity in days' },
    { ...json, help: 'print the files written as JSON' },
  ],
} as const satisfies CommandSpec;

export const caSpec = {
  name: 'ca',
  summary: 'create a CA and issue host certificates (CA trust mode)',
  description: `init writes DIR/ca.json (the CA private key: keep it offline) and DIR/ca.pub.json (give it
to every daemon as --ca). issue writes DIR/HOST.cert and DIR/HOST.key.json for one host
(give them to that host's daemon as --cert and --key). Files are written with mode 600 and
never overwritten.`,
  subcommands: [caInit, caIssue],
} as const satisfies GroupSpec;

export const pskInit = {
  name: 'psk init',
  summary: 'create a pre-shared key file',
  description: '',
  options: [{ name: 'out', kind: 'string', arg: 'FILE', required: true, help: 'where to write the key' }, { ...json, help: 'print the file written as JSON' }],
} as const satisfies CommandSpec;

export const pskSpec = {
  name: 'psk',
  summary: 'create a pre-shared key file (PSK trust mode)',
  description: `Writes a new random 32-byte pre-shared key to FILE (mode 600, never overwritten). Give the
same file to every daemon as --psk-file.`,
  subcommands: [pskInit],
} as const satisfies GroupSpec;

export const policyCheck = {
  name: 'policy check',
  summary: 'validate a policy file',
  description: '',
  options: [json],
  positionals: { name: 'FILE', min: 1, max: 1 },
} as const satisfies CommandSpec;

export const policyExplain = {
  name: 'policy explain',
  summary: 'explain a decision',
  usage: ['policy explain --from LABELS --to LABELS --port N [--protocol tcp|udp] [--peer ADDR]\n                         [--direction both|ingress|egress] [--policy FILE] [--json] [--socket PATH]'],
  description: '',
  options: [
    { name: 'from', kind: 'string', arg: 'LABELS', multiple: true, help: "the client's labels (key=value,...), or none for a peer without Tessera; needed" },
    { name: 'to', kind: 'string', arg: 'LABELS', multiple: true, help: "the server's labels (key=value,...), or none for a peer without Tessera; needed" },
    { name: 'port', kind: 'int', min: 1, max: 65_535, required: true, help: 'the server port' },
    { name: 'protocol', kind: 'enum', arg: 'P', choices: ['tcp', 'udp'], default: 'tcp', help: 'the transport: tcp or udp' },
    { name: 'peer', kind: 'string', arg: 'ADDR', help: 'the address of a peer without Tessera (network rules)' },
    { name: 'direction', kind: 'enum', arg: 'D', choices: ['both', 'ingress', 'egress'], default: 'both', help: 'both, ingress (server side) or egress (client side)' },
    { name: 'policy', kind: 'string', arg: 'FILE', defaultText: "the running daemon's policy", help: 'explain against this file' },
    json,
    socket,
  ],
} as const satisfies CommandSpec;

export const policyShow = {
  name: 'policy show',
  summary: "show the running daemon's policy",
  description: '',
  options: [json, socket],
} as const satisfies CommandSpec;

export const policySpec = {
  name: 'policy',
  summary: 'check a policy file, explain a decision, show the running policy, learn one',
  description: `check validates a policy file: schema and semantic errors with line and column, and
warnings for rules that can never decide (shadowed) and conflicting networks. Exit status 1
when there are errors.
explain prints the decision for a client (--from) calling a server (--to) on a port, and
the rules that produced it, for the server's ingress and the client's egress check. LABELS
are key=value pairs separated by commas (or repeated flags), or "none" for a peer without
Tessera (then --peer ADDR is its address). It uses --policy FILE, or the running daemon's.
show prints the running daemon's policy.
push validates FILE, signs it with the operator key and stores it in the fleet's etcd,
where every daemon started with --cluster applies it (docs/cluster.md).
${LEARN_HELP}`,
  subcommands: [policyCheck, policyExplain, policyShow, policyPush, policySuggest, policyDiff, policyPromote, policyEdges],
} as const satisfies GroupSpec;

export const versionSpec = { name: 'version', summary: 'print the version', description: 'Prints the version of this tessera.', options: [json] } as const satisfies CommandSpec;

/** The client commands. */
export const COMMANDS: readonly (CommandSpec | GroupSpec)[] = [runSpec, statusSpec, flowsSpec, policySpec, clusterSpec, trustSpec, caSpec, pskSpec, versionSpec];

/** The order of the main help, privileged commands included. */
export const ORDER = ['daemon', 'run', 'status', 'flows', 'cleanup', 'policy', 'cluster', 'trust', 'ca', 'psk', 'version'];

export const MAIN_INTRO = `tessera — identity-based network authorization for containers and Linux processes

Usage: tessera <command> [options]`;

export const MAIN_OUTRO = `Run 'tessera <command> --help' for the options of a command; 'tessera --version' for the version.
The CLI finds the daemon through --socket or TESSERA_SOCKET (default ${DEFAULT_SOCKET}).`;
