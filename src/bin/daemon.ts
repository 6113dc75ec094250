// The privileged commands, `tessera daemon` and `tessera cleanup`: their tables (with the
// daemon's defaults), their arguments turned into a DaemonConfig, the checks made before
// anything on the system is touched, then the daemon's own entry (src/daemon/index.ts).
// Here, in the composition root, because src/cli must not import src/daemon and the
// daemon must not import src/cli (docs/architecture.md).

import { dirname } from 'node:path';
import { TesseraError, asTesseraError } from '../errors.js';
import { socket } from '../cli/commands.js';
import { ensureDir } from '../cli/fs.js';
import type { CliIo } from '../cli/output.js';
import { commandHelp, parseCommand, usageError, type CommandSpec } from '../cli/spec.js';
import type { Command } from '../cli/main.js';
import { DEFAULTS, validateConfig, type DaemonConfig } from '../daemon/config.js';
import { defaultHostId } from '../daemon/trust.js';
import { version } from '../cli/version.js';

export const daemonSpec = {
  name: 'daemon',
  summary: 'run the per-host daemon (root): datapath workers, rules, local API',
  usage: ['daemon (--psk-file FILE | --ca FILE --cert FILE --key FILE) [options]'],
  description: `Runs the per-host daemon: installs TESSERA- iptables chains, starts one datapath worker per
NFQUEUE number, and serves the local API. One daemon per network namespace and per
--cgroup-root: a second one refuses to start (TESSERA_ERR_LOCKED, naming the first).

At start it reconciles the rules in place (it never removes first) after re-adopting the
PUs still running, with their last known ports. SIGTERM or SIGINT stops it and LEAVES its
rules in place: PUs stay fail-closed (their handshakes are dropped, nothing passes
unjudged) until the next start, so a restart or an upgrade opens no window. To remove
them, pass --remove-rules-on-stop, or run tessera cleanup after the daemon has stopped.
A crash leaves them too (exit status 70 for an internal error).

Logs go to stdout: readable lines when it is a terminal, JSON lines (NDJSON) otherwise.
Key files must not be readable by group or others (chmod 600).`,
  options: [
    { name: 'psk-file', kind: 'string', arg: 'FILE', section: 'Trust (one of)', help: 'shared secret file (tessera psk init); tokens are HS256' },
    { name: 'ca', kind: 'string', arg: 'FILE', section: 'Trust (one of)', help: "the CA's public file (ca.pub.json from tessera ca init)" },
    { name: 'cert', kind: 'string', arg: 'FILE', section: 'Trust (one of)', help: "this host's certificate (HOST.cert from tessera ca issue)" },
    { name: 'key', kind: 'string', arg: 'FILE', section: 'Trust (one of)', help: "this host's private key (HOST.key.json from tessera ca issue)" },
    { name: 'host-id', kind: 'string', arg: 'NAME', defaultText: "this machine's hostname", help: 'host name in tokens, PSK mode' },
    { name: 'queues', kind: 'int', default: DEFAULTS.queues, help: 'datapath workers / NFQUEUE numbers (1..16)' },
    { name: 'queue-base', kind: 'int', default: DEFAULTS.queueBase, help: 'first NFQUEUE number' },
    {
      name: 'fail-open',
      kind: 'flag',
      help: 'let handshake packets through unauthorized when no worker reads the queue (default: fail-closed, they are dropped); a full queue drops either way',
    },
    { name: 'reject', kind: 'enum', choices: ['reset', 'drop'], default: DEFAULTS.rejectMode, help: 'how a refused connection ends: TCP reset or silence' },
    {
      name: 'udp-refusal',
      kind: 'enum',
      choices: ['drop', 'icmp'],
      default: DEFAULTS.udpRefusal,
      help: "how a refused inbound UDP datagram of a PU ends: silence (UDP has no reset), or an ICMP port unreachable from the kernel, as for a closed port. A policy rule's `reject: reset` asks for ICMP whatever this says; an outbound datagram and an exchange's control packet are always dropped silently",
    },
    { name: 'state-dir', kind: 'string', arg: 'DIR', default: DEFAULTS.stateDir, help: 'host secret and state' },
    { ...socket, defaultText: `$TESSERA_SOCKET or ${DEFAULTS.socket}`, help: 'local API socket' },
    { name: 'cgroup-root', kind: 'string', arg: 'NAME', default: DEFAULTS.cgroupRoot, help: "net_cls subtree for this daemon's PUs" },
    { name: 'mtu', kind: 'int', default: DEFAULTS.mtu, help: 'largest packet emitted after attaching a token (1280..65535)' },
    { name: 'token-ttl', kind: 'duration', default: `${DEFAULTS.tokenTtlSeconds}s`, help: 'token lifetime (60s..24h; a bare number is seconds); re-issued at half of it' },
    { name: 'clock-skew', kind: 'duration', default: `${DEFAULTS.clockSkewSeconds}s`, help: 'accepted clock difference between hosts (0..10m; a bare number is seconds)' },
    {
      name: 'policy',
      kind: 'string',
      arg: 'FILE',
      defaultText: 'the built-in same-labels policy',
      help: 'YAML policy (docs/policy.md). The file is watched and re-read on change or SIGHUP; a file with errors is refused (logged with line and column) and the running policy stays',
    },
    {
      name: 'cluster',
      kind: 'string',
      arg: 'etcd://HOST:PORT,...',
      section: 'Fleet (docs/cluster.md)',
      help: 'follow the fleet in etcd: the policy comes from signed bundles (tessera policy push), the last verified ones kept in --state-dir and enforced when etcd is away; this host publishes its applied revision and health. etcds:// for TLS. Excludes --policy',
    },
    { name: 'operator-pub', kind: 'string', arg: 'FILE', multiple: true, section: 'Fleet (docs/cluster.md)', help: 'operator public key whose signature bundles need (tessera cluster keygen); repeat during a key rotation' },
    { name: 'cluster-ca', kind: 'string', arg: 'FILE', section: 'Fleet (docs/cluster.md)', help: "CA (PEM) of etcd's TLS certificates" },
    { name: 'cluster-max-stale', kind: 'duration', section: 'Fleet (docs/cluster.md)', help: 'after this long without etcd, refuse peers whose tokens this host has not verified before (reason stale-trust), since a revocation may be missing; peers already verified and established connections continue. Default: no bound' },
    { name: 'cluster-cert', kind: 'string', arg: 'FILE', section: 'Fleet (docs/cluster.md)', help: 'TLS client certificate (PEM) for etcd' },
    { name: 'cluster-key', kind: 'string', arg: 'FILE', section: 'Fleet (docs/cluster.md)', help: 'TLS client key (PEM, mode 600) for etcd' },
    { name: 'cluster-prefix', kind: 'string', arg: 'PREFIX', default: '/tessera/v1/', section: 'Fleet (docs/cluster.md)', help: "the fleet's key prefix in etcd" },
    {
      name: 'docker',
      kind: 'string',
      arg: 'SOCKET',
      optional: true,
      implied: DEFAULTS.dockerSocket,
      help: `protect Docker containers as PUs: follow the engine on SOCKET (${DEFAULTS.dockerSocket} when left out) and make every running container a PU with its labels (docs/docker.md). Off unless given. An engine that is not reachable is retried every 5 s. Names --socket in $TESSERA_RUNTIME_FILE (default /run/tessera/docker-runtime) for the runtime shim packaging/tessera-runc, which enrolls containers before they start; kept on stop (the shim then refuses to start containers: fail-closed)`,
    },
    {
      name: 'metrics-listen',
      kind: 'addrport',
      help: 'serve Prometheus metrics, /healthz and /readyz over TCP on ADDR:PORT (a port alone: loopback). Off unless given',
    },
    {
      name: 'ui',
      kind: 'addrport',
      help: 'serve the flow map, a read-only web page of who talks to whom and what was refused (docs/ui.md), on ADDR:PORT (a port alone: loopback). Off unless given',
    },
    {
      name: 'ui-token-file',
      kind: 'string',
      arg: 'FILE',
      help: 'the secret (one word, 16+ characters, mode 600) that --ui requires beyond loopback: the page is opened once with ?token=SECRET',
    },
    {
      name: 'log-level',
      kind: 'enum',
      arg: 'LEVEL',
      choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      default: DEFAULTS.logLevel,
      help: 'fatal|error|warn|info|debug|trace|silent',
    },
    { name: 'accept-all', kind: 'flag', help: 'benchmark mode: handshake packets take their queue passes and are accepted with no token, check or policy (NOT a security mode)' },
    { name: 'six-passes', kind: 'flag', help: "benchmark mode, with --accept-all only: also queue the client's first ACK at both ends (protocol v1's six passes instead of four)" },
    {
      name: 'remove-rules-on-stop',
      kind: 'flag',
      help: 'on SIGTERM/SIGINT, remove the rules (host and container namespaces) and give adopted classids back: PUs are unprotected until the next start. Default: a stop keeps enforcement in place',
    },
  ],
} as const satisfies CommandSpec;

export const cleanupSpec = {
  name: 'cleanup',
  summary: 'remove every iptables chain and net_cls cgroup Tessera created, once the daemon has stopped (root)',
  description: `Removes every iptables and ip6tables chain whose name starts with TESSERA- (and the jumps to
them) in this network namespace, and the net_cls cgroups under NAME: processes still
inside are moved out, not killed, and are then unprotected. Touches nothing else. A stopped
or crashed daemon leaves its rules in place (fail-closed); this is how they are removed.
Refuses (exit 1, TESSERA_ERR_LOCKED) while a daemon runs in this network namespace or on
this cgroup root.`,
  options: [
    { name: 'cgroup-root', kind: 'string', arg: 'NAME', default: DEFAULTS.cgroupRoot, help: 'net_cls subtree to clean' },
    { name: 'force', kind: 'flag', help: "clean up even while a daemon runs: its rules go and its PUs' processes leave their cgroups (unprotected)" },
  ],
} as const satisfies CommandSpec;

/** The daemon's settings from its command line. */
export function parseDaemonArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): DaemonConfig | 'help' {
  const parsed = parseCommand(daemonSpec, argv);
  if (parsed === 'help') return 'help';
  const v = parsed.values;
  const psk = v['psk-file'];
  const { ca, cert, key } = v;
  let trust: DaemonConfig['trust'];
  if (v['six-passes'] && !v['accept-all']) throw usageError('daemon', '--six-passes is a benchmark mode of --accept-all: pass both');
  if (psk && (ca || cert || key)) throw usageError('daemon', 'choose one trust mode: --psk-file, or --ca with --cert and --key');
  if (psk) trust = { mode: 'psk', pskFile: psk };
  else if (ca && cert && key) trust = { mode: 'ca', caFile: ca, certFile: cert, keyFile: key };
  else if (ca || cert || key) throw usageError('daemon', 'CA mode needs all of --ca, --cert and --key');
  else throw usageError('daemon', 'no trust configured: pass --psk-file FILE (tessera psk init) or --ca/--cert/--key (tessera ca init/issue)');
  const config: DaemonConfig = {
    stateDir: v['state-dir'],
    socket: v.socket ?? env.TESSERA_SOCKET ?? DEFAULTS.socket,
    cgroupRoot: v['cgroup-root'],
    queueBase: v['queue-base'],
    queues: v.queues,
    failOpen: v['fail-open'],
    trust,
    hostId: v['host-id'] ?? defaultHostId(),
    rejectMode: v.reject as 'reset' | 'drop',
    udpRefusal: v['udp-refusal'] as 'drop' | 'icmp',
    mtu: v.mtu,
    tokenTtlSeconds: v['token-ttl'] / 1000,
    clockSkewSeconds: v['clock-skew'] / 1000,
    logLevel: v['log-level'],
    datapathMode: v['accept-all'] ? (v['six-passes'] ? 'passes6' : 'passes') : 'handshake',
    portScanMs: DEFAULTS.portScanMs,
    removeRulesOnStop: v['remove-rules-on-stop'],
    ...(v.policy ? { policyFile: v.policy } : {}),
    ...(v.docker !== undefined ? { docker: { socket: v.docker } } : {}),
    ...(v.cluster !== undefined
      ? {
          cluster: {
            url: v.cluster,
            operatorPubFiles: v['operator-pub'],
            prefix: v['cluster-prefix'],
            version: version(),
            ...(v['cluster-ca'] ? { caFile: v['cluster-ca'] } : {}),
            ...(v['cluster-cert'] ? { certFile: v['cluster-cert'] } : {}),
            ...(v['cluster-key'] ? { keyFile: v['cluster-key'] } : {}),
            ...(v['cluster-max-stale'] !== undefined ? { maxStaleSeconds: v['cluster-max-stale'] / 1000 } : {}),
          },
        }
      : {}),
    ...(v['metrics-listen'] !== undefined ? { metricsListen: v['metrics-listen'] } : {}),
    ...(v.ui !== undefined ? { ui: { listen: v.ui, ...(v['ui-token-file'] ? { tokenFile: v['ui-token-file'] } : {}) } } : {}),
  };
  // Ranges and formats are checked once, in validateConfig; from the command line a value
  // out of range is a usage error (exit 2), found before anything on the system is touched.
  try {
    return validateConfig(config);
  } catch (err) {
    throw err instanceof TesseraError && err.code === 'TESSERA_ERR_INVALID_CONFIG' ? usageError('daemon', err.message) : err;
  }
}

function requireRoot(why: string): void {
  if (process.getuid?.() !== 0) throw new TesseraError('TESSERA_ERR_PREREQ', `must run as root (${why})`);
}

/** A directory the daemon needs, made one component at a time; an error names its option. */
function makeDir(flag: string, path: string): void {
  try {
    ensureDir(path, 0o700);
  } catch (err) {
    const e = asTesseraError(err);
    throw new TesseraError(e.code, `${flag}: ${e.message}`, { cause: err });
  }
}

async function daemonCommand(argv: string[], io: CliIo): Promise<number> {
  const config = parseDaemonArgs(argv);
  if (config === 'help') return io.out(commandHelp(daemonSpec)), 0;
  requireRoot('iptables, NFQUEUE, cgroups');
  // Made here: Node's recursive mkdir (used further in) spins forever on paths under /proc.
  makeDir('--state-dir', config.stateDir);
  makeDir('--socket', dirname(config.socket));
  return (await import('../daemon/index.js')).runDaemon(config);
}

async function cleanupCommand(argv: string[], io: CliIo): Promise<number> {
  const parsed = parseCommand(cleanupSpec, argv);
  if (parsed === 'help') return io.out(commandHelp(cleanupSpec)), 0;
  requireRoot('iptables, cgroups');
  return (await import('../daemon/index.js')).runCleanup(parsed.values['cgroup-root'], { force: parsed.values.force, out: (l) => io.out(l) });
}

/** The privileged commands for the runner. The daemon's modules load only when one runs. */
export const PRIVILEGED: readonly Command[] = [
  { spec: daemonSpec, run: daemonCommand },
  { spec: cleanupSpec, run: cleanupCommand },
];
