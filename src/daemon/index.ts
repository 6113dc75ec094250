// The daemon's entry points: its lifetime (signals, crash) and the exit status it ends with,
// returned to the one runner (src/cli/main.ts, through src/bin, which ends the process).
// Its arguments are parsed from the command's table in src/bin/daemon.ts.

import { TesseraError, asTesseraError, exitCodeOf } from '../errors.js';
import type { DaemonConfig } from './config.js';
import { startDaemon } from './daemon.js';
import { createLogger } from './log.js';
import { cleanup } from './cleanup.js';

export { startDaemon } from './daemon.js';
export type { DaemonConfig } from './config.js';

/**
 * `tessera daemon ...`: runs until SIGTERM/SIGINT, then returns 0 with its rules left in
 * place (fail-closed) unless --remove-rules-on-stop. A crash (uncaught exception) removes
 * nothing and returns 70 (TESSERA_ERR_INTERNAL): the kernel keeps dropping PUs' handshakes
 * until a daemon reads the queues. The runner (src/bin) ends the process with the status.
 */
export async function runDaemon(config: DaemonConfig): Promise<number> {
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

/** `tessera cleanup`: refuses while a daemon runs unless forced (cleanup.ts). */
export async function runCleanup(cgroupRoot: string, opts: { force: boolean; out: (line: string) => void }): Promise<number> {
  try {
    await cleanup(cgroupRoot, opts.out, { force: opts.force });
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
