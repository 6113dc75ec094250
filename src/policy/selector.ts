// Label selectors: a conjunction of terms on label keys. Matching runs per handshake, so a
// label set is turned once into a Map (cached per array object: token claims and PU tables
// hand the same frozen array every time) and each term is one Map lookup.
// The analysis half (normal forms, implication, satisfiability) serves `check`.

export type Op = 'eq' | 'ne' | 'in' | 'notIn' | 'exists' | 'notExists';

export interface Term {
  readonly key: string;
  readonly op: Op;
  /** eq/ne: one value; in/notIn: the set; exists/notExists: empty. */
  readonly values: readonly string[];
}

export interface CompiledTerm {
  readonly key: string;
  /** 0 eq, 1 ne, 2 in, 3 notIn, 4 exists, 5 notExists */
  readonly op: number;
  readonly value: string;
  readonly set: ReadonlySet<string> | null;
}

/** What the policy needs to know about one label array. */
export interface LabelInfo {
  readonly map: ReadonlyMap<string, string>;
  /** User labels ("k=v" without '@' keys) sorted and joined: equal strings = equal sets. */
  readonly user: string;
}

const infoCache = new WeakMap<readonly string[], LabelInfo>();

function buildInfo(labels: readonly string[]): LabelInfo {
  const map = new Map<string, string>();
  const user: string[] = [];
  for (const l of labels) {
    if (typeof l !== 'string') continue;
    const eq = l.indexOf('=');
    if (eq <= 0) continue;
    const key = l.slice(0, eq);
    map.set(key, l.slice(eq + 1));
    if (key.charCodeAt(0) !== 64 /* @ */) user.push(l);
  }
  user.sort();
  return { map, user: user.join('\n') };
}

/** LabelInfo for an array; cached by identity (arrays are treated as immutable). */
export function labelInfo(labels: readonly string[]): LabelInfo {
  let info = infoCache.get(labels);
  if (info === undefined) {
    info = buildInfo(labels);
    infoCache.set(labels, info);
  }
  return info;
}

const OP_CODE: Record<Op, number> = { eq: 0, ne: 1, in: 2, notIn: 3, exists: 4, notExists: 5 };

export function compileTerms(terms: readonly Term[]): CompiledTerm[] {
  return terms.map((t) => ({
    key: t.key,
    op: OP_CODE[t.op],
    value: t.values[0] ?? '',
    set: t.op === 'in' || t.op === 'notIn' ? new Set(t.values) : null,
  }));
}

export function termMatches(t: CompiledTerm, map: ReadonlyMap<string, string>): boolean {
  const v = map.get(t.key);
  switch (t.op) {
    case 0:
      return v === t.value;
    case 1:
      return v !== t.value;
    case 2:
      return v !== undefined && t.set!.has(v);
    case 3:
      return v === undefined || !t.set!.has(v);
    case 4:
      return v !== undefined;
    default:
      return v === undefined;
  }
}

export function termsMatch(terms: readonly CompiledTerm[], map: ReadonlyMap<string, string>): boolean {
  for (let i = 0; i < terms.length; i++) if (!termMatches(terms[i]!, map)) return false;
  return true;
}

/** "app=api", "env in (prod, staging)", "tier!=web", "team exists", ... for messages. */
export function describeTerm(t: Term): string {
  switch (t.op) {
    case 'eq':
      return `${t.key}=${t.values[0]}`;
    case 'ne':
      return `${t.key}!=${t.values[0]}`;
    case 'in':
      return `${t.key} in (${t.values.join(', ')})`;
    case 'notIn':
      return `${t.key} notIn (${t.values.join(', ')})`;
    case 'exists':
      return `${t.key} exists`;
    case 'notExists':
      return `${t.key} does not exist`;
  }
}

export function describeTerms(terms: readonly Term[]): string {
  return terms.length === 0 ? 'any PU' : terms.map(describeTerm).join(', ');
}

// ---- analysis: each key's terms reduce to the set of states it allows ----
// A state is "absent" or a value. The allowed values are finite (`include`) or all but a
// finite set (`exclude`); conjunction, implication and emptiness are then exact.

interface KeyForm {
  absentOk: boolean;
  /** null: every value except `exclude`; a set: only these values. */
  include: Set<string> | null;
  exclude: Set<string>;
}

function termForm(t: Term): KeyForm {
  switch (t.op) {
    case 'eq':
    case 'in':
      return { absentOk: false, include: new Set(t.values), exclude: new Set() };
    case 'ne':
    case 'notIn':
      return { absentOk: true, include: null, exclude: new Set(t.values) };
    case 'exists':
      return { absentOk: false, include: null, exclude: new Set() };
    case 'notExists':
      return { absentOk: true, include: new Set(), exclude: new Set() };
  }
}

function meet(a: KeyForm, b: KeyForm): KeyForm {
  const absentOk = a.absentOk && b.absentOk;
  if (a.include && b.include) return { absentOk, include: new Set([...a.include].filter((v) => b.include!.has(v))), exclude: new Set() };
  if (a.include) return { absentOk, include: new Set([...a.include].filter((v) => !b.exclude.has(v))), exclude: new Set() };
  if (b.include) return { absentOk, include: new Set([...b.include].filter((v) => !a.exclude.has(v))), exclude: new Set() };
  return { absentOk, include: null, exclude: new Set([...a.exclude, ...b.exclude]) };
}

export type SelectorForm = Map<string, KeyForm>;

export function selectorForm(terms: readonly Term[]): SelectorForm {
  const m: SelectorForm = new Map();
  for (const t of terms) {
    const f = termForm(t);
    const prev = m.get(t.key);
    m.set(t.key, prev ? meet(prev, f) : f);
  }
  return m;
}

function formEmpty(f: KeyForm): boolean {
  return !f.absentOk && f.include !== null && f.include.size === 0;
}

/** True when some label set satisfies every term. */
export function satisfiable(form: SelectorForm): boolean {
  for (const f of form.values()) if (formEmpty(f)) return false;
  return true;
}

/** Can one label set satisfy both selectors? */
export function intersects(a: SelectorForm, b: SelectorForm): boolean {
  const keys = new Set([...a.keys(), ...b.keys()]);
  for (const k of keys) {
    const fa = a.get(k);
    const fb = b.get(k);
    const f = fa && fb ? meet(fa, fb) : (fa ?? fb)!;
    if (formEmpty(f)) return false;
  }
  return true;
}

function formSubset(b: KeyForm, a: KeyForm): boolean {
  if (b.absentOk && !a.absentOk) return false;
  if (b.include) {
    for (const v of b.include) {
      if (a.include ? !a.include.has(v) : a.exclude.has(v)) return false;
    }
    return true;
  }
  if (a.include) return false; // b allows infinitely many values
  for (const v of a.exclude) if (!b.exclude.has(v)) return false;
  return true;
}

/** Does every label set matching `b` also match `a`? (b ⊆ a; b assumed satisfiable) */
export function implies(b: SelectorForm, a: SelectorForm): boolean {
  for (const [k, fa] of a) {
    const fb = b.get(k) ?? { absentOk: true, include: null, exclude: new Set<string>() };
    if (!formSubset(fb, fa)) return false;
  }
  return true;
}
