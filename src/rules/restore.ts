// Text formats of iptables-restore and iptables-save, and the diff between the saved state
// and the desired one. Pure: no I/O. The reconciler feeds it `iptables-save` output and
// sends the rendered transaction to `iptables-restore --noflush`.
//
// Facts this relies on (iptables 1.8.9, checked on nf_tables; see docs/rules.md):
// - with --noflush, a chain declaration `:TESSERA-X - [0:0]` creates the chain or flushes
//   an existing one, within the same atomic transaction;
// - `-D <chain> <rule>` deletes the first rule with that exact spec, and fails the whole
//   transaction when there is none (so a state that changed since the save aborts the
//   transaction instead of deleting something else, unlike deletion by number);
// - `-X` of a chain flushed earlier in the transaction succeeds once no rule refers to it;
// - each table's COMMIT is its own kernel transaction: when a later table fails, earlier
//   tables of the same input stay committed. The next reconcile pass sees and repairs it.

import { CHAIN_PREFIX, TABLES, type Rule, type Ruleset, type TableName, type TableRules, type Family } from './ruleset.js';

/** One table as printed by iptables-save. */
export interface SavedTable {
  /** Every chain declared in the table, builtin or not, in printed order. */
  readonly chains: string[];
  /** Rules per chain, each as the text after `-A <chain> `, in order. */
  readonly rules: Map<string, string[]>;
}

export type SavedState = Map<string, SavedTable>;

export const isOurs = (chain: string): boolean => chain.startsWith(CHAIN_PREFIX);

/** The text of a rule as iptables-save prints it. */
export const ruleText = (rule: Rule): string => rule.join(' ');

/** Parse iptables-save / ip6tables-save output. Unknown lines are ignored. */
export function parseSave(text: string): SavedState {
  const state: SavedState = new Map();
  let current: SavedTable | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (line.startsWith('*')) {
      current = { chains: [], rules: new Map() };
      state.set(line.slice(1).trim(), current);
    } else if (!current) {
      continue;
    } else if (line.startsWith(':')) {
      const name = line.slice(1).split(' ')[0] ?? '';
      if (name) {
        current.chains.push(name);
        if (!current.rules.has(name)) current.rules.set(name, []);
      }
    } else if (line.startsWith('-A ')) {
      const rest = line.slice(3);
      const sp = rest.indexOf(' ');
      const chain = sp < 0 ? rest : rest.slice(0, sp);
      const body = sp < 0 ? '' : rest.slice(sp + 1);
      let list = current.rules.get(chain);
      if (!list) current.rules.set(chain, (list = []));
      list.push(body);
    } else if (line === 'COMMIT') {
      current = undefined;
    }
  }
  return state;
}

/** Split a saved rule into arguments, honouring the double quotes iptables-save uses for comments. */
export function tokenize(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inQuote = false;
  let has = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inQuote) {
      if (c === '\\' && i + 1 < text.length) cur += text[++i];
      else if (c === '"') inQuote = false;
      else cur += c;
    } else if (c === '"') {
      inQuote = true;
      has = true;
    } else if (c === ' ' || c === '\t') {
      if (has) out.push(cur);
      cur = '';
      has = false;
    } else {
      cur += c;
      has = true;
    }
  }
  if (has) out.push(cur);
  return out;
}

/** The chain a rule jumps or goes to, if any. */
export function targetOf(ruleBody: string): string | undefined {
  const t = tokenize(ruleBody);
  for (let i = 0; i < t.length - 1; i++) if (t[i] === '-j' || t[i] === '-g') return t[i + 1];
  return undefined;
}

/** What the transaction for one table must do. */
interface TablePlan {
  table: string;
  /** Our chains to (re)declare, which creates or flushes them. */
  declare: string[];
  /** Rules in foreign chains that refer to one of our chains: [chain, body]. */
  unlink: Array<[string, string]>;
  /** Rules to append: [chain, body]. */
  append: Array<[string, string]>;
  /** Jumps to insert at position 1: [builtin, ourChain]. */
  link: Array<[string, string]>;
  /** Our chains to delete (stale). */
  remove: string[];
}

export interface FamilyPlan {
  /** Human-readable reasons the state differs; empty when it matches. */
  differences: string[];
  tables: TablePlan[];
  /** Jump rules deleted from foreign chains that are not put back (counted by removeAll). */
  unlinked: number;
  /** Stale chains removed. */
  removedChains: number;
}

export interface DiffOptions {
  /** Require every jump to be the first rule of its builtin chain (default true). */
  jumpsFirst?: boolean;
}

/**
 * Compare one family's saved state with the desired tables and plan one iptables-restore
 * input that rewrites all of our chains (atomically per table, so there is never a window
 * without them).
 * Foreign chains and rules are never touched, except rules in them that refer to our chains.
 */
export function planFamily(saved: SavedState, desired: Partial<Record<TableName, TableRules>>, opts: DiffOptions = {}): FamilyPlan {
  const jumpsFirst = opts.jumpsFirst ?? true;
  const differences: string[] = [];
  const tables: TablePlan[] = [];
  let unlinked = 0;
  let removedChains = 0;
  const names = new Set<string>([...TABLES, ...(Object.keys(desired) as TableName[])]);
  for (const table of names) {
    const want = desired[table as TableName];
    const have = saved.get(table);
    const wantChains = want ? Object.keys(want.chains) : [];
    const wantJumps = want ? Object.entries(want.jumps) : [];
    const haveOurs = have ? have.chains.filter(isOurs) : [];
    if (!want && haveOurs.length === 0) continue;

    const plan: TablePlan = { table, declare: [], unlink: [], append: [], link: [], remove: [] };
    const stale = haveOurs.filter((c) => !wantChains.includes(c));
    for (const c of stale) differences.push(`${table}: stale chain ${c}`);
    for (const c of wantChains) {
      const got = have?.rules.get(c);
      const exp = want!.chains[c]!.map(ruleText);
      if (!have?.chains.includes(c)) differences.push(`${table}: missing chain ${c}`);
      else if (!sameList(got ?? [], exp)) differences.push(`${table}: chain ${c} differs`);
    }
    // Every rule in a foreign chain that refers to one of ours.
    const refs: Array<[string, string, number]> = [];
    if (have) {
      for (const [chain, rules] of have.rules) {
        if (isOurs(chain)) continue;
        rules.forEach((body, i) => {
          const target = targetOf(body);
          if (target && isOurs(target)) refs.push([chain, body, i]);
        });
      }
    }
    for (const [from, to] of wantJumps) {
      const mine = refs.filter(([c, b]) => c === from && b === `-j ${to}`);
      if (mine.length === 0) differences.push(`${table}: missing jump ${from} -> ${to}`);
      else if (mine.length > 1) differences.push(`${table}: jump ${from} -> ${to} present ${mine.length} times`);
      else if (jumpsFirst && mine[0]![2] !== 0) differences.push(`${table}: jump ${from} -> ${to} is rule ${mine[0]![2] + 1}, not 1`);
    }
    for (const [chain, body] of refs) {
      const expected = wantJumps.some(([from, to]) => chain === from && body === `-j ${to}`);
      if (!expected) differences.push(`${table}: unexpected reference ${chain}: ${body}`);
    }

    plan.declare = [...wantChains, ...stale];
    plan.unlink = refs.map(([c, b]) => [c, b]);
    unlinked += refs.length - refs.filter(([c, b]) => wantJumps.some(([f, t]) => c === f && b === `-j ${t}`)).length;
    for (const c of wantChains) for (const r of want!.chains[c]!) plan.append.push([c, ruleText(r)]);
    plan.link = wantJumps;
    plan.remove = stale;
    removedChains += stale.length;
    tables.push(plan);
  }
  return { differences, tables, unlinked, removedChains };
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Render a plan as iptables-restore --noflush input: one COMMIT (atomic) per table, one process per family. */
export function renderPlan(plan: FamilyPlan): string {
  const lines: string[] = [];
  for (const t of plan.tables) {
    lines.push(`*${t.table}`);
    for (const c of t.declare) lines.push(`:${c} - [0:0]`);
    for (const [c, b] of t.unlink) lines.push(`-D ${c} ${b}`);
    for (const [c, b] of t.append) lines.push(`-A ${c} ${b}`);
    for (const [from, to] of t.link) lines.push(`-I ${from} 1 -j ${to}`);
    for (const c of t.remove) lines.push(`-X ${c}`);
    lines.push('COMMIT');
  }
  return lines.length ? lines.join('\n') + '\n' : '';
}

/** Render a ruleset for one family from scratch (as if nothing of ours existed yet). */
export function renderRuleset(ruleset: Ruleset, family: Family): string {
  return renderPlan(planFamily(new Map(), ruleset[family]));
}
