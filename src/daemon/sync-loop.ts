// The sync loop: push the current PUs to the workers and the host rules to the kernel,
// coalesced and one transaction at a time. A failed transaction degrades health (shown in
// `tessera status` and /readyz) until a later one succeeds; the daemon retries on every change
// and on its reconcile timer.

import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { StatusResponse } from '../api/index.js';
import { buildRuleset, type Reconciler, type RulesetSpec } from '../rules/index.js';
import type { HealthService } from './health.js';
import { hostRulesetSpec } from './host-rules.js';
import type { Pu } from './pus.js';

export type RulesStatus = StatusResponse['rules'];

export interface SyncLoopOptions {
  /** Post what changed in the PUs to the workers (O(changes); nothing when nothing changed). */
  pushWorkers(): void;
  /** Apply the host rules for the current PUs; resolves whether the kernel changed. */
  applyRules(): Promise<boolean>;
  /** Persist the PUs (after a run that was not held; asynchronous and coalesced by the store). */
  save(): void;
  health: HealthService;
  log: Logger;
  count(name: 'rule_transactions'): void;
  /** How often the caller retries, for the log line. */
  retryEverySeconds: number;
  now?: () => Date;
}

export interface SyncLoop {
  /**
   * Resolves once every change made before the call is applied, so a new PU's rules exist
   * before its first process may send a packet; rejects when the last transaction failed
   * (the caller must not treat the PU as protected).
   */
  sync(): Promise<void>;
  /** For callers that do not wait: a failure is already logged and shown in status. */
  syncInBackground(): void;
  /**
   * While held, a run updates the workers but leaves the kernel's host rules as they are: at
   * start (the previous run's rules stay in force until every running PU is known again) and
   * at a stop that keeps enforcement (no partial ruleset while PUs are dropped from memory).
   */
  hold(held: boolean): void;
  /** The run in progress, if any (a stop waits for it). */
  idle(): Promise<void>;
  rules(): RulesStatus;
}

export function createSyncLoop(o: SyncLoopOptions): SyncLoop {
  const now = o.now ?? (() => new Date());
  let held = true;
  let changePending = false;
  let syncing: Promise<void> | null = null;
  // `since` is when the current state (ok or failing) began; `lastFailure` stays after a recovery.
  let rules: RulesStatus = { ok: true, since: now().toISOString() };

  function result(err: unknown): void {
    const at = now().toISOString();
    if (err === null) {
      o.health.setReady('rules', true);
      if (rules.ok) return;
      o.health.recover('rules');
      o.log.info({ failingSince: rules.since }, 'rules applied again');
      rules = { ok: true, since: at, ...(rules.lastFailure ? { lastFailure: rules.lastFailure } : {}) };
      return;
    }
    const error = errorMessage(err).split('\n')[0]!;
    o.log.error({ err: errorMessage(err) }, `applying rules failed; retried on the next change and every ${o.retryEverySeconds} s`);
    o.health.degrade('rules', `applying host rules failed: ${error} (new PUs are refused; retried)`);
    o.health.setReady('rules', false);
    rules = { ok: false, error, since: rules.ok ? at : rules.since, lastFailure: { error, at } };
  }

  function sync(): Promise<void> {
    changePending = true;
    if (!syncing) {
      syncing = (async () => {
        // Never run synchronously inside the caller: a held run has no await, and would
        // finish before `syncing` is even set, so the caller's next change (a re-adopted
        // PU's ports, set right after its creation) would find a stale `syncing` and be lost.
        await null;
        let failure: unknown = null;
        try {
          while (changePending) {
            changePending = false;
            o.pushWorkers();
            if (held) continue;
            try {
              if (await o.applyRules()) o.count('rule_transactions');
              failure = null;
            } catch (err) {
              failure = err;
            }
            result(failure);
          }
        } finally {
          // In the same tick as the last check of changePending: a change after it starts a new run.
          syncing = null;
        }
        // Not while held: at start the file still describes every PU of the last run (a
        // crash now must not lose those not re-adopted yet); at a stop it was just written.
        if (!held) o.save();
        if (failure) throw failure;
      })();
    }
    return syncing;
  }

  return {
    sync,
    syncInBackground: () => void sync().catch(() => {}),
    hold(h) {
      held = h;
    },
    idle: () => (syncing ?? Promise.resolve()).catch(() => {}),
    rules: () => ({ ...rules }),
  };
}

/**
 * The host rules for `pus()`; once the transaction commits, each PU's ports of that moment
 * become its protectedPorts (what status shows: a client waiting for a port there must not
 * reach it before its queue rule exists). A failed transaction changes none of them.
 */
export function hostRulesApplier(pus: () => Pu[], reconciler: Pick<Reconciler, 'apply'>, queue: RulesetSpec['queue']): () => Promise<boolean> {
  return async () => {
    // Containers with a namespace of their own have their rules there, not here.
    const applying = pus()
      .filter((p) => !p.netns)
      .map((p) => [p, p.ports] as const);
    const r = await reconciler.apply(buildRuleset(hostRulesetSpec(applying.map(([p]) => p), queue)));
    for (const [p, ports] of applying) p.protectedPorts = ports;
    return r.changed;
  };
}
