// The daemon entry points used by src/bin: argument parsing, signals, exit codes.
// This is the only module that ends the process.

import { parseArgs } from 'node:util';
import { TesseraError, errorMessage } from '../errors.js';
import { DEFAULTS, type DaemonConfig } from './config.js';
import { startDaemon } from './daemon.js';
import { createLogger } from './log.js';
import { defaultHostId } from './trust.js';
import { cleanup } from './cleanup.js';
import { parseListenAddress } from '../api/index.js';

export { startDaemon } from './daemon.js';
export type { DaemonConfig } from './config.js';

function int(v: unknown, flag: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `${flag} must be an integer, got "${String(v)}"`);
  return n;
}

export function parseDaemonArgs(argvIn: string[]): DaemonConfig | 'help' {
  let values: Record<string, string | boolean | undefined>;
  // `--docker [SOCKET]`: parseArgs has no optional values, so take the socket here. The
  // daemon takes no positional arguments, so a following word that is not an option is it.
  const argv = [...argvIn];
  let docker: string | undefined;
  const at = argv.findIndex((a) => a === '--docker' || a.startsWith('--docker='));
  if (at >= 0) {
    const a = argv[at]!;
    if (a.startsWith('--docker=')) {
      docker = a.slice('--docker='.length);
      argv.splice(at, 1);
    } else {
      const next = argv[at + 1];
      const hasValue = next !== undefined && !next.startsWith('-');
      docker = hasValue ? next : DEFAULTS.dockerSocket;
      argv.splice(at, hasValue ? 2 : 1);
    }
    if (argv.some((x) => x === '--docker' || x.startsWith('--docker='))) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', '--docker given twice\nSee: tessera daemon --help');
  }
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        'psk-file': { type: 'string' },
        ca: { type: 'string' },
        cert: { type: 'string' },
        key: { type: 'string' },
        'host-id': { type: 'string' },
        queues: { type: 'string' },
        'queue-base': { type: 'string' },
        'fail-open': { type: 'boolean' },
        reject: { type: 'string' },
        'state-dir': { type: 'string' },
        socket: { type: 'string' },
        'cgroup-root': { type: 'string' },
        mtu: { type: 'string' },
        'token-ttl': { type: 'string' },
        'clock-skew': { type: 'string' },
        'log-level': { type: 'string' },
        'accept-all': { type: 'boolean' },
        'remove-rules-on-stop': { type: 'boolean' },
        policy: { type: 'string' },
        'metrics-listen': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `${(err as Error).message.replace(/\. To specify.*$/s, '')}\nSee: tessera daemon --help`);
  }
  if (values.help) return 'help';
  const psk = values['psk-file'] as string | undefined;
  const ca = values.ca as string | undefined;
  const cert = values.cert as string | undefined;
  const key = values.key as string | undefined;
  let trust: DaemonConfig['trust'];
  if (psk && (ca || cert || key)) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', 'choose one trust mode: --psk-file, or --ca with --cert and --key\nSee: tessera daemon --help');
  if (psk) trust = { mode: 'psk', pskFile: psk };
  else if (ca && cert && key) trust = { mode: 'ca', caFile: ca, certFile: cert, keyFile: key };
  else if (ca || cert || key) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', 'CA mode needs all of --ca, --cert and --key\nSee: tessera daemon --help');
  else throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', 'no trust configured: pass --psk-file FILE (tessera psk init) or --ca/--cert/--key (tessera ca init/issue)\nSee: tessera daemon --help');
  const reject = (values.reject as string | undefined) ?? DEFAULTS.rejectMode;
  return {
    stateDir: (values['state-dir'] as string | undefined) ?? DEFAULTS.stateDir,
    socket: (values.socket as string | undefined) ?? process.env.TESSERA_SOCKET ?? DEFAULTS.socket,
    cgroupRoot: (values['cgroup-root'] as string | undefined) ?? DEFAULTS.cgroupRoot,
    queueBase: int(values['queue-base'], '--queue-base', DEFAULTS.queueBase),
    queues: int(values.queues, '--queues', DEFAULTS.queues),
    failOpen: !!values['fail-open'],
    trust,
    hostId: (values['host-id'] as string | undefined) ?? defaultHostId(),
    rejectMode: reject as 'reset' | 'drop',
    mtu: int(values.mtu, '--mtu', DEFAULTS.mtu),
    tokenTtlSeconds: int(values['token-ttl'], '--token-ttl', DEFAULTS.tokenTtlSeconds),
    clockSkewSeconds: int(values['clock-skew'], '--clock-skew', DEFAULTS.clockSkewSeconds),
    logLevel: (values['log-level'] as string | undefined) ?? DEFAULTS.logLevel,
    datapathMode: values['accept-all'] ? 'passes' : 'handshake',
    portScanMs: DEFAULTS.portScanMs,
    removeRulesOnStop: !!values['remove-rules-on-stop'],
    ...(values.policy ? { policyFile: values.policy as string } : {}),
    ...(docker !== undefined ? { docker: { socket: docker } } : {}),
    ...(values['metrics-listen'] !== undefined ? { metricsListen: parseListenAddress(values['metrics-listen'] as string) } : {}),
  };
}

/**
 * `tessera daemon ...`: runs until SIGTERM/SIGINT, then exits leaving its rules in place
 * (fail-closed) unless --remove-rules-on-stop. A crash (uncaught exception) removes nothing
 * and exits 70: the kernel keeps dropping PUs' handshakes until a daemon reads the queues.
 */
export async function runDaemon(argv: string[], help: string): Promise<never> {
  let config: DaemonConfig | 'help';
  try {
    config = parseDaemonArgs(argv);
  } catch (err) {
    process.stderr.write(`tessera daemon: ${errorMessage(err)}\n`);
    process.exit(2);
  }
  if (config === 'help') {
    process.stdout.write(help + '\n');
    process.exit(0);
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('tessera daemon: must run as root (iptables, NFQUEUE, cgroups) [TESSERA_ERR_PREREQ]\n');
    process.exit(1);
  }
  const log = createLogger(config.logLevel);
  // From here on any uncaught exception, during the start too, is a crash: exit 70.
  process.on('uncaughtException', (err) => {
    // Nothing is undone here: rules, cgroups and classids stay, so the kernel fails closed
    // (queues without a reader drop) until the daemon is started again.
    log.fatal({ err: err.stack }, 'uncaught exception: exiting with the rules left in place (fail-closed until restarted)');
    log.flush?.();
    process.exit(70);
  });
  let daemon;
  try {
    daemon = await startDaemon(config, log);
  } catch (err) {
    const code = err instanceof TesseraError ? err.code : 'internal';
    log.fatal({ code, err: errorMessage(err) }, 'tessera daemon failed to start');
    process.stderr.write(`tessera daemon: ${errorMessage(err)} [${code}]\n`);
    process.exit(1);
  }
  const d = daemon;
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => void d.stop(sig));
  process.on('SIGHUP', () => void d.reloadPolicy('SIGHUP'));
  // Test-only (test/integration/restart.test.ts): an exception thrown from a timer, so the
  // uncaught-exception path above runs for real. Never set it in production.
  const crashAfterMs = Number(process.env.TESSERA_TEST_CRASH_AFTER_MS ?? 0);
  if (crashAfterMs > 0) {
    setTimeout(() => {
      throw new Error(`TESSERA_TEST_CRASH_AFTER_MS=${crashAfterMs}: test-only crash`);
    }, crashAfterMs);
  }
  await d.stopped;
  process.exit(0);
}

/** `tessera cleanup`. */
export async function runCleanup(argv: string[], help: string): Promise<never> {
  let root = 'tessera';
  let force = false;
  try {
    const { values } = parseArgs({ args: argv, strict: true, options: { 'cgroup-root': { type: 'string' }, force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
    if (values.help) {
      process.stdout.write(help + '\n');
      process.exit(0);
    }
    root = (values['cgroup-root'] as string | undefined) ?? root;
    force = !!values.force;
  } catch (err) {
    process.stderr.write(`tessera cleanup: ${(err as Error).message}\nSee: tessera cleanup --help\n`);
    process.exit(2);
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('tessera cleanup: must run as root [TESSERA_ERR_PREREQ]\n');
    process.exit(1);
  }
  try {
    await cleanup(root, (l) => process.stdout.write(l + '\n'), { force });
    process.exit(0);
  } catch (err) {
    if (err instanceof TesseraError && err.code === 'TESSERA_ERR_LOCKED') {
      process.stderr.write(
        `tessera cleanup: refused: ${err.message}.\nStop the daemon first (its rules stay when it stops; run cleanup then), or pass --force to remove a running daemon's rules and move its PUs' processes out of their cgroups (they are then unprotected) [${err.code}]\n`,
      );
      process.exit(1);
    }
    process.stderr.write(`tessera cleanup: ${errorMessage(err)}\n`);
    process.exit(1);
  }
}
