// The daemon's entry points, run by the one runner (src/cli/main.ts, ended by src/bin):
// arguments from the command's table, signals, and the exit status the daemon ends with.

import { dirname } from 'node:path';
import { TesseraError, asTesseraError, exitCodeOf } from '../errors.js';
import { daemonSpec, cleanupSpec } from '../cli/commands.js';
import { printHelp } from '../cli/common.js';
import { ensureDir } from '../cli/fs.js';
import type { CliIo } from '../cli/output.js';
import { parseCommand, usageError } from '../cli/spec.js';
import { DEFAULTS, validateConfig, type DaemonConfig } from './config.js';
import { startDaemon } from './daemon.js';
import { createLogger } from './log.js';
import { defaultHostId } from './trust.js';
import { cleanup } from './cleanup.js';

export { startDaemon } from './daemon.js';
export type { DaemonConfig } from './config.js';

/** The daemon's settings from its command line (the table in src/cli/commands.ts). */
export function parseDaemonArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): DaemonConfig | 'help' {
  const parsed = parseCommand(daemonSpec, argv);
  if (parsed === 'help') return 'help';
  const v = parsed.values;
  const psk = v['psk-file'];
  const { ca, cert, key } = v;
  let trust: DaemonConfig['trust'];
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
    mtu: v.mtu,
    tokenTtlSeconds: v['token-ttl'] / 1000,
    clockSkewSeconds: v['clock-skew'] / 1000,
    logLevel: v['log-level'],
    datapathMode: v['accept-all'] ? 'passes' : 'handshake',
    portScanMs: DEFAULTS.portScanMs,
    removeRulesOnStop: v['remove-rules-on-stop'],
    ...(v.policy ? { policyFile: v.policy } : {}),
    ...(v.docker !== undefined ? { docker: { socket: v.docker } } : {}),
    ...(v['metrics-listen'] !== undefined ? { metricsListen: v['metrics-listen'] } : {}),
  };
  // Ranges and formats are checked once, in validateConfig; from the command line a value
  // out of range is a usage error (exit 2), found before anything on the system is touched.
  try {
    return validateConfig(config);
  } catch (err) {
    throw err instanceof TesseraError && err.code === 'TESSERA_ERR_INVALID_CONFIG' ? usageError('daemon', err.message) : err;
  }
}

/** A directory the daemon needs, made with ensureDir; an error names the option it came from. */
function makeDir(flag: string, path: string): void {
  try {
    ensureDir(path, 0o700);
  } catch (err) {
    const e = asTesseraError(err);
    throw new TesseraError(e.code, `${flag}: ${e.message}`, { cause: err });
  }
}

/**
 * `tessera daemon ...`: runs until SIGTERM/SIGINT, then returns 0 with its rules left in
 * place (fail-closed) unless --remove-rules-on-stop. A crash (uncaught exception) removes
 * nothing and returns 70 (TESSERA_ERR_INTERNAL): the kernel keeps dropping PUs' handshakes
 * until a daemon reads the queues. The runner (src/bin) ends the process with the status.
 */
export async function runDaemon(argv: string[], io: CliIo): Promise<number> {
  const config = parseDaemonArgs(argv);
  if (config === 'help') return printHelp('daemon', io);
  if (process.getuid?.() !== 0) throw new TesseraError('TESSERA_ERR_PREREQ', 'must run as root (iptables, NFQUEUE, cgroups)');
  const log = createLogger(config.logLevel);
  let crash: (status: number) => void = () => {};
  const crashed = new Promise<number>((resolve) => (crash = resolve));
  // From here on any uncaught exception, during the start too, is a crash: exit 70.
  process.on('uncaughtException', (err) => {
    // Nothing is undone here: rules, cgroups and classids stay, so the kernel fails closed
    // (queues without a reader drop) until the daemon is started again.
    log.fatal({ err: err.stack }, 'uncaught exception: exiting with the rules left in place (fail-closed until restarted)');
    log.flush?.();
    crash(exitCodeOf('TESSERA_ERR_INTERNAL'));
  });
  let daemon: Awaited<ReturnType<typeof startDaemon>>;
  try {
    // Made here, one component at a time: Node's recursive mkdir spins on paths under /proc.
    makeDir('--state-dir', config.stateDir);
    makeDir('--socket', dirname(config.socket));
    const started = await Promise.race([startDaemon(config, log), crashed]);
    if (typeof started === 'number') return started;
    daemon = started;
  } catch (err) {
    const e = asTesseraError(err);
    // In the log for collectors; a person at a terminal reads the runner's line on stderr.
    if (!process.stdout.isTTY) log.fatal({ code: e.code, err: e.message }, 'tessera daemon failed to start');
    throw e;
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
  return Promise.race([d.stopped.then(() => 0), crashed]);
}

/** `tessera cleanup`. */
export async function runCleanup(argv: string[], io: CliIo): Promise<number> {
  const parsed = parseCommand(cleanupSpec, argv);
  if (parsed === 'help') return printHelp('cleanup', io);
  const { values } = parsed;
  if (process.getuid?.() !== 0) throw new TesseraError('TESSERA_ERR_PREREQ', 'must run as root');
  try {
    await cleanup(values['cgroup-root'], (l) => io.out(l), { force: values.force });
    return 0;
  } catch (err) {
    if (err instanceof TesseraError && err.code === 'TESSERA_ERR_LOCKED') {
      throw new TesseraError(
        'TESSERA_ERR_LOCKED',
        `refused: ${err.message}. Stop the daemon first (its rules stay when it stops; run cleanup then), or pass --force to remove a running daemon's rules and move its PUs' processes out of their cgroups (they are then unprotected)`,
        { cause: err },
      );
    }
    throw err;
  }
}
