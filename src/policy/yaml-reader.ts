// Reading policy YAML with positions: a Reader that collects located errors and warnings,
// and the checked accessors parse.ts builds the tree with (mappings with known keys, single
// values, one-of choices, value lists), each reporting "did you mean" for a near miss.

import { LineCounter, isAlias, isMap, isScalar, isSeq, type Node, type Pair, type Scalar, type YAMLMap } from 'yaml';
import type { PolicyError } from './types.js';

export function distance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  let prev = Array.from({ length: n + 1 }, (_, j) => j);
  for (let i = 1; i <= m; i++) {
    const cur = [i];
    for (let j = 1; j <= n; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[n]!;
}

/** ' (did you mean "x"?)' when one candidate is close, else ''. */
export function didYouMean(word: string, candidates: readonly string[]): string {
  let best = '';
  let bestD = Infinity;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const d = distance(w, c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return bestD <= Math.max(1, Math.min(2, Math.floor(word.length / 3))) ? ` (did you mean "${best}"?)` : '';
}

export function show(s: string): string {
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}...` : s);
}

export class Reader {
  readonly errors: PolicyError[] = [];
  readonly warnings: PolicyError[] = [];
  constructor(
    readonly file: string,
    readonly lc: LineCounter,
  ) {}

  at(offset: number): { line: number; column: number } {
    const p = this.lc.linePos(offset);
    return { line: p.line, column: p.col };
  }

  report(severity: 'error' | 'warning', code: string, offset: number, message: string): void {
    const { line, column } = this.at(offset);
    const text = `${this.file}:${line}:${column}: ${severity === 'warning' ? 'warning: ' : ''}${message}`;
    const e: PolicyError = Object.freeze({ severity, code, file: this.file, line, column, message, text });
    (severity === 'error' ? this.errors : this.warnings).push(e);
  }

  error(code: string, node: Node | Pair | null | undefined, fallback: number, message: string): void {
    this.report('error', code, offsetOf(node, fallback), message);
  }
}

export function offsetOf(node: Node | Pair | null | undefined, fallback: number): number {
  if (!node) return fallback;
  if ('range' in node && node.range) return node.range[0];
  if ('key' in node) return offsetOf(node.key as Node, fallback);
  return fallback;
}

/** A present value: null for a missing or empty plain value (`key:` or `key: `). */
export function present(v: unknown): Node | null {
  if (v === null || v === undefined) return null;
  if (isScalar(v) && v.type === 'PLAIN' && (v.value === '' || v.value === null)) return null;
  return v as Node;
}

/** Entries of a mapping, plus the keys refused as unknown (to avoid a second "missing" error). */
export class Entries extends Map<string, Entry> {
  readonly unknown: string[] = [];
}

export interface Entry {
  readonly key: string;
  readonly keyNode: Scalar;
  readonly value: Node | null;
  readonly at: number;
}

/** Mapping entries with key checks; null (and an error) when `node` is not a mapping. */
export function entries(r: Reader, node: Node | null, allowed: readonly string[] | null, what: string, fallback: number): Entries | null {
  if (node !== null && isAlias(node)) {
    r.error('type', node, fallback, `${what}: aliases (*name) are not supported in policy files; repeat the value`);
    return null;
  }
  if (!node || !isMap(node)) {
    r.error('type', node, fallback, `${what} must be a mapping (key: value)`);
    return null;
  }
  const out = new Entries();
  for (const pair of (node as YAMLMap).items) {
    const k = pair.key as Node | null;
    const at = offsetOf(k, offsetOf(node, fallback));
    if (!k || !isScalar(k) || typeof k.value !== 'string') {
      r.error('type', k, at, `${what}: keys must be plain strings`);
      continue;
    }
    const key = k.value;
    if (key === '<<') {
      r.error('type', k, at, `${what}: merge keys (<<) are not supported in policy files`);
      continue;
    }
    if (allowed && !allowed.includes(key)) {
      r.error('unknown-key', k, at, `unknown key ${show(key)} in ${what}${didYouMean(key, allowed)}`);
      out.unknown.push(key);
      continue;
    }
    const v = pair.value as Node | null;
    if (v !== null && isAlias(v)) {
      r.error('type', v, at, `${key}: aliases (*name) are not supported in policy files; repeat the value`);
      continue;
    }
    out.set(key, { key, keyNode: k, value: present(v), at });
  }
  return out;
}

export function scalar(r: Reader, e: Entry, what: string): string | null {
  if (!e.value) {
    r.error('value', e.keyNode, e.at, `${what}: a value is required`);
    return null;
  }
  if (!isScalar(e.value) || typeof e.value.value !== 'string') {
    r.error('type', e.value, e.at, `${what} must be a single value, not a ${isSeq(e.value) ? 'list' : 'mapping'}`);
    return null;
  }
  return e.value.value;
}

export function oneOf<T extends string>(r: Reader, e: Entry, what: string, choices: readonly T[]): T | null {
  const s = scalar(r, e, what);
  if (s === null) return null;
  if (!(choices as readonly string[]).includes(s)) {
    r.error('value', e.value, e.at, `${what} ${show(s)} is not one of ${choices.join(', ')}${didYouMean(s, choices)}`);
    return null;
  }
  return s as T;
}

/** A scalar or a list of scalars → list of [string, node]. */
export function scalarList(r: Reader, e: Entry, what: string): Array<[string, Node]> | null {
  if (!e.value) {
    r.error('value', e.keyNode, e.at, `${what}: a value is required`);
    return null;
  }
  if (isScalar(e.value) && typeof e.value.value === 'string') return [[e.value.value, e.value]];
  if (!isSeq(e.value)) {
    r.error('type', e.value, e.at, `${what} must be a value or a list of values`);
    return null;
  }
  const out: Array<[string, Node]> = [];
  for (const item of e.value.items as Array<Node | null>) {
    if (!item || !isScalar(item) || typeof item.value !== 'string' || (item.type === 'PLAIN' && item.value === '')) {
      r.error('type', item, offsetOf(e.value, e.at), `${what}: each item must be a single value`);
      return null;
    }
    out.push([item.value, item]);
  }
  if (out.length === 0) {
    r.error('value', e.value, e.at, `${what}: the list is empty`);
    return null;
  }
  return out;
}
