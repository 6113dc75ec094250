// Drives the kernel toward a desired Ruleset: read (iptables-save), compare, and when
// anything of ours differs, rewrite all our chains of that family with one
// iptables-restore --noflush run (each table commits atomically). Only chains named TESSERA-* and the rules in
// other chains that jump to them are ever written; everything else is left as found.

import { TesseraError, errorMessage } from '../errors.js';
import { FAMILIES, emptyRuleset, type Family, type Ruleset } from './ruleset.js';
import { parseSave, planFamily, renderPlan } from './restore.js';
import type { CommandRunner } from './runner.js';
import { NFT_DELETE, NFT_TABLE } from './nft.js';

/** The subset of a pino logger the reconciler uses. */
export interface RulesLog {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface ReconcilerOptions {
  runner: CommandRunner;
  /** Families to manage (default both). */
  families?: Family[];
  log?: RulesLog;
  /** Insist that each jump is the first rule of its builtin chain, and move it back if not (default true). */
  jumpsFirst?: boolean;
  /** Per-command timeout (ms, default 30 000). */
  timeoutMs?: number;
}

export interface ApplyResult {
  /** A transaction was committed in at least one family. */
  changed: boolean;
  /** Families that could not be managed (no ip6tables, no IPv6 in the kernel); logged as warnings. */
  skipped: Family[];
}

export interface RemoveResult {
  /** Chains plus jump rules removed, over all families and tables. */
  removed: number;
  skipped: Family[];
}

export interface Reconciler {
  apply(ruleset: Ruleset): Promise<ApplyResult>;
  removeAll(): Promise<RemoveResult>;
}

const TOOLS: Record<Family, { save: string; restore: string }> = {
  ipv4: { save: 'iptables-save', restore: 'iptables-restore' },
  ipv6: { save: 'ip6tables-save', restore: 'ip6tables-restore' },
};

// Signs that a family (in practice IPv6) is not available here, rather than that our rules are wrong.
const UNAVAILABLE = /Address family not supported|Protocol not supported|Table does not exist|can't initialize ip6tables table|Could not fetch rule set generation id/i;

const silent: RulesLog = { debug() {}, info() {}, warn() {} };

export function createReconciler(options: ReconcilerOptions): Reconciler {
  const { runner } = options;
  const families = [...new Set(options.families ?? FAMILIES)];
  for (const f of families) {
    if (!FAMILIES.includes(f)) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `reconciler: unknown family ${String(f)}; use 'ipv4' or 'ipv6'`);
  }
  if (!runner || typeof runner.run !== 'function') throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', 'reconciler: a CommandRunner is required (createCommandRunner())');
  const log = options.log ?? silent;
  const jumpsFirst = options.jumpsFirst ?? true;
  const timeoutMs = options.timeoutMs ?? 30_000;
  // Warn once per family, not on every pass.
  const warned = new Set<Family>();
  // apply() and removeAll() read then write: two at once would act on a stale read.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(f: () => Promise<T>): Promise<T> => {
    const p = queue.then(f, f);
    queue = p.catch(() => {});
    return p;
  };

  /** Returns the saved text, or undefined when the family is unavailable (only IPv6 may be). */
  async function save(family: Family): Promise<string | undefined> {
    try {
      return (await runner.run([TOOLS[family].save], { timeoutMs })).stdout;
    } catch (err) {
      if (family === 'ipv6' && isUnavailable(err)) {
        if (!warned.has(family)) {
          warned.add(family);
          log.warn({ family, err: errorMessage(err) }, 'IPv6 rules cannot be managed here; continuing with IPv4 only: IPv6 connections are NOT enforced');
        }
        return undefined;
      }
      throw err;
    }
  }

  // table inet tessera: what we last wrote, and how nft listed it right after. A later listing
  // that differs means someone changed or removed it, and it is written again.
  let nftWritten: string | undefined;
  let nftListing: string | undefined;
  const NFT_LIST = ['nft', 'list', 'table', 'inet', NFT_TABLE];
  const absent = (err: unknown): boolean => /No such file or directory/.test(errorMessage(err));

  async function nftList(): Promise<string | null> {
    try {
      return (await runner.run(NFT_LIST, { timeoutMs })).stdout;
    } catch (err) {
      if (absent(err)) return null;
      throw err;
    }
  }

  /** Bring table inet tessera to `text` (undefined: no table). Returns whether it wrote. */
  async function reconcileNft(text: string | undefined): Promise<boolean> {
    if (text === undefined) {
      let current: string | null;
      try {
        current = await nftList();
      } catch (err) {
        // No nft binary: there is no table of ours to remove either.
        if (err instanceof TesseraError && err.code === 'TESSERA_ERR_PREREQ') return false;
        throw err;
      }
      if (current === null) return false;
      await runner.run(['nft', '-f', '-'], { input: NFT_DELETE, timeoutMs }).catch((err: unknown) => {
        if (!absent(err)) throw err;
      });
      nftWritten = nftListing = undefined;
      return true;
    }
    const current = await nftList();
    if (current !== null && text === nftWritten && current === nftListing) return false;
    log.info({ reason: current === null ? 'absent' : text === nftWritten ? 'changed by someone else' : 'new desired state' }, `rewriting table inet ${NFT_TABLE}`);
    try {
      await runner.run(['nft', '-f', '-'], { input: text, timeoutMs });
    } catch (err) {
      throw new TesseraError('TESSERA_ERR_RULES', `nft: table inet ${NFT_TABLE} was refused: ${errorMessage(err)}\ninput was:\n${text}`, { cause: err });
    }
    nftWritten = text;
    nftListing = (await nftList()) ?? undefined;
    return true;
  }

  async function reconcile(ruleset: Ruleset, reason: string): Promise<{ changed: boolean; removed: number; skipped: Family[] }> {
    let changed = false;
    let removed = 0;
    const skipped: Family[] = [];
    for (const family of families) {
      // A second attempt re-reads the state: someone (Docker, an admin) may have changed a
      // rule between our save and our restore, which makes a `-D` fail the transaction.
      for (let attempt = 1; ; attempt++) {
        const text = await save(family);
        if (text === undefined) {
          skipped.push(family);
          break;
        }
        const plan = planFamily(parseSave(text), ruleset[family], { jumpsFirst });
        if (plan.differences.length === 0) break;
        const input = renderPlan(plan);
        log.info({ family, reason, attempt, differences: plan.differences }, 'rewriting TESSERA chains');
        log.debug({ family, input }, 'iptables-restore input');
        try {
          await runner.run([TOOLS[family].restore, '-w', '5', '--noflush'], { input, timeoutMs });
        } catch (err) {
          if (family === 'ipv6' && isUnavailable(err)) {
            if (!warned.has(family)) {
              warned.add(family);
              log.warn({ family, err: errorMessage(err) }, 'IPv6 rules cannot be installed here; continuing with IPv4 only: IPv6 connections are NOT enforced');
            }
            skipped.push(family);
            break;
          }
          if (err instanceof TesseraError && err.code === 'TESSERA_ERR_RULES') {
            if (attempt < 2) {
              log.warn({ family, err: err.message }, 'iptables-restore failed; re-reading the state and trying once more');
              continue;
            }
            throw new TesseraError(
              'TESSERA_ERR_RULES',
              `${family}: ${err.message}\n(tables before the failing one may already be committed; the next apply repairs them)\ninput was:\n${input}`,
              { cause: err },
            );
          }
          throw err;
        }
        changed = true;
        removed += plan.removedChains + plan.unlinked;
        break;
      }
    }
    if (await reconcileNft(ruleset.nft)) {
      changed = true;
      if (ruleset.nft === undefined) removed++;
    }
    return { changed, removed, skipped };
  }

  return {
    apply(ruleset) {
      return serial(async () => {
        const r = await reconcile(ruleset, 'apply');
        return { changed: r.changed, skipped: r.skipped };
      });
    },
    removeAll() {
      return serial(async () => {
        const r = await reconcile(emptyRuleset(), 'removeAll');
        return { removed: r.removed, skipped: r.skipped };
      });
    },
  };
}

function isUnavailable(err: unknown): boolean {
  if (!(err instanceof TesseraError)) return false;
  return err.code === 'TESSERA_ERR_PREREQ' || UNAVAILABLE.test(err.message);
}
