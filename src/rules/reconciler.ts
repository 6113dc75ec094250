// Drives the kernel toward a desired Ruleset: read (iptables-save), compare, and when
// anything of ours differs, rewrite all our chains of that family with one
// iptables-restore --noflush run (each table commits atomically). Only chains named TESSERA-* and the rules in
// other chains that jump to them are ever written; everything else is left as found.
//
// The iptables rules do not depend on the PUs (table inet tessera classifies), so a new PU
// changes only nft elements: one small `nft -f` transaction of element adds, no iptables-save
// and no rewrite. What is in the kernel is checked again at most every verifyMs (the daemon's
// reconcile loop calls apply every 10 s), which heals rules someone else removed — and, given a
// change signal (`generation`, generation.ts: the nf_tables generation id), only when the ruleset changed since
// the last read, or when that read is older than quietMs (a backstop, 10 min by default). So
// an idle daemon runs no iptables-save and lists no chain; a rule someone removes is still put
// back on the next pass after the change.

import { TesseraError, errorMessage } from '../errors.js';
import { FAMILIES, emptyRuleset, type Family, type Ruleset } from './ruleset.js';
import { parseSave, planFamily, renderPlan } from './restore.js';
import type { CommandRunner } from './runner.js';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import type { NftSession } from './nft-session.js';
import { NFT_DELETE, NFT_LIST_BASE, NFT_TABLE, nftModel, renderNftDelta, renderNftTable, type NftModel, type NftSpec } from './nft.js';

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
  /** Whether a cgroup v2 path (relative to /sys/fs/cgroup, as nft resolves it) exists; injectable for tests. */
  cgroupExists?: (path: string) => Promise<boolean>;
  /** Re-read what is in the kernel when the last read is older than this (ms, default 5 000); before, an unchanged desired state costs nothing. */
  verifyMs?: number;
  /**
   * A number that moves whenever the kernel's rules may have changed (undefined: unknown). With
   * it, an unchanged desired state is re-read only when the number moved since the last read,
   * or once that read is older than quietMs.
   */
  generation?: () => number | undefined;
  /** The longest time without a re-read while the generation stands still (ms, default 600 000). */
  quietMs?: number;
  /** A long-lived `nft -i` (nft-session.ts) for element deltas; without it, each is an `nft -f` process. */
  nftSession?: NftSession | null;
  now?: () => number;
}

/** Stale cgroup elements (their cgroup went before their PU) tolerated before the table is rewritten whole. */
const STALE_LIMIT = 256;

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
/** Of those, the ones that say the kernel has no IPv6 at all. */
const NO_IPV6_KERNEL = /Address family not supported|Protocol not supported/i;

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
  const verifyMs = options.verifyMs ?? 5_000;
  const now = options.now ?? Date.now;
  const quietMs = options.quietMs ?? 600_000;
  const generation = options.generation ?? ((): number | undefined => undefined);
  /** Whether a read taken at `at` (generation `gen` just before it) still stands: recent, or nothing changed since. */
  const fresh = (at: number, gen: number | undefined): boolean => {
    const age = now() - at;
    if (age < verifyMs) return true;
    const g = generation();
    return g !== undefined && gen === g && age < quietMs;
  };
  const cgroupExists =
    options.cgroupExists ??
    ((path: string) =>
      access(join('/sys/fs/cgroup', path)).then(
        () => true,
        () => false,
      ));
  // Per family: the desired state last committed (or found in place) and when it was last read.
  const applied = new Map<Family, { key: string; at: number; gen: number | undefined }>();
  // Warn once per family, not on every pass.
  const warned = new Set<Family>();
  // apply() and removeAll() read then write: two at once would act on a stale read.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(f: () => Promise<T>): Promise<T> => {
    const p = queue.then(f, f);
    queue = p.catch(() => {});
    return p;
  };

  /**
   * Whether IPv6 may be left alone after `err`: only when this kernel has no IPv6 at all (then
   * there is nothing to enforce), or when removing (nothing of ours can be there). An IPv6
   * stack that ip6tables cannot manage would leave PUs reachable over IPv6: that is an error.
   */
  function ipv6Skippable(err: unknown, removing: boolean): boolean {
    if (!isUnavailable(err)) return false;
    if (NO_IPV6_KERNEL.test(errorMessage(err))) {
      if (!warned.has('ipv6')) {
        warned.add('ipv6');
        log.warn({ family: 'ipv6', err: errorMessage(err) }, 'this kernel has no IPv6: managing IPv4 only');
      }
      return true;
    }
    if (removing) return true;
    throw new TesseraError(
      'TESSERA_ERR_PREREQ',
      `IPv6 is on in this kernel but ip6tables cannot manage it (${errorMessage(err)}): PUs would be reachable over IPv6 without Tessera. Install iptables (it brings ip6tables), or turn IPv6 off: sysctl -w net.ipv6.conf.all.disable_ipv6=1`,
      { cause: err },
    );
  }

  /** Returns the saved text, or undefined when the family is to be left alone (only IPv6 may be). */
  async function save(family: Family, removing: boolean): Promise<string | undefined> {
    try {
      return (await runner.run([TOOLS[family].save], { timeoutMs })).stdout;
    } catch (err) {
      if (family === 'ipv6' && ipv6Skippable(err, removing)) return undefined;
      throw err;
    }
  }

  // table inet tessera: what we last wrote (the model, the per-index chains that exist, stale
  // elements left behind) and how nft listed the base chains right after. A later listing that
  // differs (or no table) means someone changed or removed it: it is written again, whole.
  let nft: { model: NftModel; chains: Set<number>; stale: number; listing: string | null; at: number; gen: number | undefined } | undefined;
  const absent = (err: unknown): boolean => /No such file or directory/.test(errorMessage(err));

  async function nftListBase(): Promise<string | null> {
    try {
      let out = '';
      for (const argv of NFT_LIST_BASE) out += (await runner.run(argv, { timeoutMs })).stdout;
      return out;
    } catch (err) {
      if (absent(err)) return null;
      throw err;
    }
  }

  async function nftRun(text: string): Promise<void> {
    try {
      await runner.run(['nft', '-f', '-'], { input: text, timeoutMs });
    } catch (err) {
      const shown = text.length > 4000 ? `${text.slice(0, 4000)}\n... (${text.length} characters)` : text;
      throw new TesseraError('TESSERA_ERR_RULES', `nft: table inet ${NFT_TABLE} was refused: ${errorMessage(err)}\ninput was:\n${shown}`, { cause: err });
    }
  }

  /** An element delta: through the session when there is one (a failure there rewrites the table, below). */
  async function nftDeltaRun(text: string): Promise<void> {
    const session = options.nftSession;
    if (!session || !session.fits(text)) return nftRun(text);
    await session.run(text);
  }

  /** The cgroup keys (`level path`) of `keys` whose cgroup is gone; checked in parallel, bounded. */
  async function goneOf(keys: Iterable<string>): Promise<Set<string>> {
    const list = [...keys];
    const gone = new Set<string>();
    for (let i = 0; i < list.length; i += 64) {
      const chunk = list.slice(i, i + 64);
      const ok = await Promise.all(chunk.map((k) => cgroupExists(k.slice(k.indexOf(' ') + 1))));
      chunk.forEach((k, j) => ok[j] || gone.add(k));
    }
    return gone;
  }

  /** Bring table inet tessera to `spec` (undefined: no table). Returns whether it wrote. */
  async function reconcileNft(spec: NftSpec | undefined): Promise<boolean> {
    if (spec === undefined) {
      let current: string | null;
      try {
        current = await nftListBase();
      } catch (err) {
        // No nft binary: there is no table of ours to remove either.
        if (err instanceof TesseraError && err.code === 'TESSERA_ERR_PREREQ') return false;
        throw err;
      }
      nft = undefined;
      if (current === null) return false;
      await runner.run(['nft', '-f', '-'], { input: NFT_DELETE, timeoutMs }).catch((err: unknown) => {
        if (!absent(err)) throw err;
      });
      return true;
    }
    const next = nftModel(spec);
    if (nft && !fresh(nft.at, nft.gen)) {
      const gen = generation();
      const listing = await nftListBase();
      if (listing === null || listing !== nft.listing) {
        log.info({ reason: listing === null ? 'absent' : 'changed by someone else' }, `rewriting table inet ${NFT_TABLE}`);
        nft = undefined;
      } else {
        nft.at = now();
        nft.gen = gen;
      }
    }
    if (nft && nft.stale <= STALE_LIMIT) {
      // Only the cgroups that come or go are checked: nft must not be asked to resolve a gone one.
      const touched = [...next.cgroups.keys()].filter((k) => nft!.model.cgroups.get(k) !== next.cgroups.get(k));
      touched.push(...[...nft.model.cgroups.keys()].filter((k) => !next.cgroups.has(k)));
      const gone = await goneOf(touched);
      const delta = renderNftDelta(nft, next, gone);
      if (delta) {
        if (delta.text === '') return false;
        try {
          await nftDeltaRun(delta.text);
          const stale = [...nft.model.cgroups.keys()].filter((k) => gone.has(k) && next.cgroups.get(k) !== nft!.model.cgroups.get(k)).length;
          for (const k of gone) next.cgroups.delete(k);
          nft = { ...nft, model: next, chains: delta.chains, stale: nft.stale + stale };
          log.debug({ input: delta.text }, `table inet ${NFT_TABLE}: elements changed`);
          return true;
        } catch (err) {
          // A cgroup that went meanwhile, or a table changed behind our back: rewrite it whole.
          log.warn({ err: errorMessage(err).split('\n')[0] }, `table inet ${NFT_TABLE}: element update refused; rewriting the table`);
        }
      }
    }
    for (const k of await goneOf(next.cgroups.keys())) next.cgroups.delete(k);
    log.info({ reason: nft === undefined ? 'first write or repair' : 'cgroup depths or stale elements' }, `rewriting table inet ${NFT_TABLE}`);
    await nftRun(renderNftTable(next));
    const gen = generation();
    nft = { model: next, chains: new Set(next.indexes), stale: 0, listing: await nftListBase(), at: now(), gen };
    return true;
  }

  async function reconcile(ruleset: Ruleset, reason: string): Promise<{ changed: boolean; removed: number; skipped: Family[] }> {
    let changed = false;
    let removed = 0;
    const skipped: Family[] = [];
    for (const family of families) {
      // A second attempt re-reads the state: someone (Docker, an admin) may have changed a
      // rule between our save and our restore, which makes a `-D` fail the transaction.
      // Unchanged since it was last read, and read recently: nothing to do (no iptables-save).
      const key = JSON.stringify(ruleset[family]);
      const last = applied.get(family);
      applied.delete(family);
      if (last && last.key === key && fresh(last.at, last.gen)) {
        applied.set(family, last);
        continue;
      }
      for (let attempt = 1; ; attempt++) {
        // Taken before the read: a change during it moves the generation past this one.
        const gen = generation();
        const text = await save(family, reason === 'removeAll');
        if (text === undefined) {
          skipped.push(family);
          break;
        }
        const plan = planFamily(parseSave(text), ruleset[family], { jumpsFirst });
        if (plan.differences.length === 0) {
          applied.set(family, { key, at: now(), gen });
          break;
        }
        const input = renderPlan(plan);
        log.info({ family, reason, attempt, differences: plan.differences }, 'rewriting TESSERA chains');
        log.debug({ family, input }, 'iptables-restore input');
        try {
          await runner.run([TOOLS[family].restore, '-w', '5', '--noflush'], { input, timeoutMs });
        } catch (err) {
          if (family === 'ipv6' && ipv6Skippable(err, reason === 'removeAll')) {
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
        // Our own write moves the generation: the next pass after verifyMs reads once more.
        applied.set(family, { key, at: now(), gen });
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
