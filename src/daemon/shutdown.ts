// The daemon's stop, in the order that keeps enforcement (docs/architecture.md, "Lifecycle"):
// stop taking work (timers, watchers, API and probe servers), write the PU state while every
// PU is still known, hold the host rules unless removal is asked for, stop container PUs
// (their namespaces' rules go first when asked, before the queues that serve them), let the
// last rule transaction end, stop the workers, remove the host rules only when asked, and
// release the locks last. Idempotent: a second call returns the first stop.

import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';

export interface ShutdownSteps {
  log: Logger;
  /** Removal asked for by configuration (--remove-rules-on-stop). */
  removeRulesOnStop: boolean;
  /** Timers, watchers, servers: nothing new starts after these. */
  quiesce(): Promise<void>;
  saveState(): void;
  holdRules(): void;
  stopContainers?(opts: { removeRules: boolean }): Promise<void>;
  /** The rule transaction in progress, if any. */
  syncIdle(): Promise<void>;
  stopDatapath(): Promise<void>;
  removeRules(): Promise<{ removed: number }>;
  releaseLocks(): Promise<void>;
}

export interface Shutdown {
  stop(reason: string, opts?: { removeRules?: boolean }): Promise<void>;
  readonly stopped: Promise<void>;
}

export function createShutdown(s: ShutdownSteps): Shutdown {
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  let stopping: Promise<void> | null = null;
  async function run(reason: string, removeRules: boolean): Promise<void> {
    const { log } = s;
    log.info({ reason, removeRules }, 'stopping');
    await s.quiesce().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'closing servers failed'));
    // Written while every PU is still known: the next start re-adopts them with their ports.
    s.saveState();
    // Keeping enforcement: no rule transaction from here on, whatever changes in memory.
    if (!removeRules) s.holdRules();
    await s.stopContainers?.({ removeRules }).catch((err: unknown) => log.error({ err: errorMessage(err) }, 'stopping container PUs failed'));
    await s.syncIdle();
    await s.stopDatapath().catch(() => {});
    if (removeRules) {
      const r = await s.removeRules().catch((err: unknown) => {
        log.error({ err: errorMessage(err) }, 'removing rules failed: run tessera cleanup');
        return null;
      });
      log.info({ removed: r?.removed ?? 0 }, 'rules removed (--remove-rules-on-stop); PU cgroups kept for re-adoption; stopped');
    } else {
      log.info('stopped; rules left in place: PUs stay fail-closed (their handshakes are dropped) until the next start; tessera cleanup removes them');
    }
    await s.releaseLocks();
    resolveStopped();
  }
  return {
    stop(reason, opts = {}) {
      stopping ??= run(reason, opts.removeRules ?? s.removeRulesOnStop);
      return stopping;
    },
    stopped,
  };
}
