// Policy text → validated syntax tree, with every problem located by line and column.
// The YAML is read with the failsafe schema (every scalar is a string) so that `1.10`,
// `no` or `0x1F` mean exactly what is written; ports and enums are then parsed here.
// Validation is hand-written against the same shape as policy/schema.json (the published
// schema; a unit test keeps the key lists in step) because it yields better messages
// ("did you mean") and positions than a generic validator.

import { LineCounter, parseDocument, isAlias, isMap, isScalar, isSeq, type Node, type Pair, type Scalar, type YAMLMap } from 'yaml';
import { parseCidr, cidrContains, type Cidr } from './cidr.js';
import type { Op, Term } from './selector.js';
import type { PolicyAction, PolicyError, RejectMode } from './types.js';

export const TOP_KEYS = ['version', 'name', 'description', 'mode', 'modes', 'rules'] as const;
export const RULE_KEYS = [
  'id',
  'description',
  'direction',
  'from',
  'to',
  'fromNetworks',
  'toNetworks',
  'sameLabels',
  'ports',
  'action',
  'reject',
] as const;
export const MODE_KEYS = ['select', 'mode'] as const;
export const OPERATORS = ['eq', 'ne', 'in', 'notIn', 'exists'] as const;

export const MAX_TEXT = 1 << 20;
export const MAX_RULES = 10_000;

export const DIR_INGRESS = 1;
export const DIR_EGRESS = 2;

export type PeerAst =
  | { readonly kind: 'any' }
  | { readonly kind: 'labels'; readonly terms: readonly Term[] }
  | { readonly kind: 'networks'; readonly cidrs: readonly Cidr[] };

export interface RuleAst {
  readonly index: number;
  readonly id: string;
  readonly line: number;
  readonly column: number;
  /** DIR_INGRESS | DIR_EGRESS as written (`direction`). */
  readonly dirs: number;
  readonly from: PeerAst;
  readonly to: PeerAst;
  readonly same: null | true | readonly string[];
  /** Sorted, merged [lo, hi] pairs; null = every port. */
  readonly ports: Int32Array | null;
  readonly action: PolicyAction;
  readonly reject: RejectMode | undefined;
}

export interface ModeAst {
  readonly index: number;
  readonly line: number;
  readonly column: number;
  readonly terms: readonly Term[];
  readonly audit: boolean;
}

export interface PolicyAst {
  readonly name: string;
  readonly defaultAudit: boolean;
  readonly modes: readonly ModeAst[];
  readonly rules: readonly RuleAst[];
}

export interface ParseResult {
  readonly ast: PolicyAst | null;
  readonly errors: PolicyError[];
  readonly warnings: PolicyError[];
}

const USER_KEY = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/;
const SYSTEM_KEY = /^@[A-Za-z0-9][A-Za-z0-9._/:-]{0,62}$/;
const RULE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const BAD_VALUE_CHAR = /[\p{Cc}\p{Cs}]/u;
const utf8 = new TextEncoder();

function distance(a: string, b: string): number {
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

function show(s: string): string {
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}...` : s);
}

class Reader {
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

function offsetOf(node: Node | Pair | null | undefined, fallback: number): number {
  if (!node) return fallback;
  if ('range' in node && node.range) return node.range[0];
  if ('key' in node) return offsetOf(node.key as Node, fallback);
  return fallback;
}

/** A present value: null for a missing or empty plain value (`key:` or `key: `). */
function present(v: unknown): Node | null {
  if (v === null || v === undefined) return null;
  if (isScalar(v) && v.type === 'PLAIN' && (v.value === '' || v.value === null)) return null;
  return v as Node;
}

/** Entries of a mapping, plus the keys refused as unknown (to avoid a second "missing" error). */
class Entries extends Map<string, Entry> {
  readonly unknown: string[] = [];
}

interface Entry {
  readonly key: string;
  readonly keyNode: Scalar;
  readonly value: Node | null;
  readonly at: number;
}

export function parsePolicyText(text: string, file: string): ParseResult {
  const lc = new LineCounter();
  const r = new Reader(file, lc);
  if (typeof text !== 'string') {
    lc.addNewLine(0);
    r.report('error', 'type', 0, 'policy text must be a string');
    return { ast: null, errors: r.errors, warnings: r.warnings };
  }
  if (text.length > MAX_TEXT) {
    lc.addNewLine(0);
    r.report('error', 'too-large', 0, `policy is ${text.length} characters; at most ${MAX_TEXT} are allowed`);
    return { ast: null, errors: r.errors, warnings: r.warnings };
  }
  let doc;
  try {
    doc = parseDocument(text, { schema: 'failsafe', lineCounter: lc, prettyErrors: false, uniqueKeys: true, strict: true });
  } catch (err) {
    // The parser reports problems in doc.errors; a throw is a parser bug. Never let it escape.
    r.report('error', 'yaml', 0, `YAML parser failed: ${err instanceof Error ? err.message : String(err)}`);
    return { ast: null, errors: r.errors, warnings: r.warnings };
  }
  for (const e of doc.errors) {
    const msg = e.message.replace(/ at line \d+, column \d+:?[\s\S]*$/, '');
    r.report('error', 'yaml', e.pos[0], `YAML: ${msg}`);
  }
  if (r.errors.length > 0) return { ast: null, errors: r.errors, warnings: r.warnings };
  const ast = readPolicy(r, doc.contents as Node | null, file);
  const byPos = (a: PolicyError, b: PolicyError): number => a.line - b.line || a.column - b.column;
  // Stable sort: problems at one position keep the order they were found in.
  r.errors.sort(byPos);
  r.warnings.sort(byPos);
  return { ast: r.errors.length === 0 ? ast : null, errors: r.errors, warnings: r.warnings };
}

/** Mapping entries with key checks; null (and an error) when `node` is not a mapping. */
function entries(r: Reader, node: Node | null, allowed: readonly string[] | null, what: string, fallback: number): Entries | null {
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

function scalar(r: Reader, e: Entry, what: string): string | null {
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

function oneOf<T extends string>(r: Reader, e: Entry, what: string, choices: readonly T[]): T | null {
  const s = scalar(r, e, what);
  if (s === null) return null;
  if (!(choices as readonly string[]).includes(s)) {
    r.error('value', e.value, e.at, `${what} ${show(s)} is not one of ${choices.join(', ')}${didYouMean(s, choices)}`);
    return null;
  }
  return s as T;
}

/** A scalar or a list of scalars → list of [string, node]. */
function scalarList(r: Reader, e: Entry, what: string): Array<[string, Node]> | null {
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

function readPolicy(r: Reader, root: Node | null, file: string): PolicyAst | null {
  if (!root) {
    r.report('error', 'missing-key', 0, 'the policy is empty: it needs at least "version: 1" and "rules:"');
    return null;
  }
  const top = entries(r, root, TOP_KEYS, 'the policy', 0);
  if (!top) return null;
  const v = top.get('version');
  if (!v) r.error('missing-key', root, 0, 'missing key "version" (write version: 1)');
  else {
    const s = scalar(r, v, 'version');
    if (s !== null && s !== '1') r.error('value', v.value, v.at, `version ${show(s)} is not supported: this Tessera reads version 1`);
  }
  let name = file.replace(/^.*\//, '').replace(/\.ya?ml$/i, '') || 'policy';
  const n = top.get('name');
  if (n) {
    const s = scalar(r, n, 'name');
    if (s !== null) name = s;
  }
  const d = top.get('description');
  if (d) scalar(r, d, 'description');
  let defaultAudit = false;
  const m = top.get('mode');
  if (m) defaultAudit = oneOf(r, m, 'mode', ['enforce', 'audit'] as const) === 'audit';
  const modes: ModeAst[] = [];
  const ms = top.get('modes');
  if (ms) {
    if (!ms.value || !isSeq(ms.value)) r.error('type', ms.value, ms.at, 'modes must be a list of {select, mode}');
    else {
      ms.value.items.forEach((item, i) => {
        const mode = readMode(r, item as Node | null, i, offsetOf(ms.value, ms.at));
        if (mode) modes.push(mode);
      });
    }
  }
  const rules: RuleAst[] = [];
  const rs = top.get('rules');
  if (!rs) r.error('missing-key', root, 0, 'missing key "rules" (a list; write rules: [] for a policy that refuses everything)');
  else if (!rs.value || !isSeq(rs.value)) r.error('type', rs.value, rs.at, 'rules must be a list');
  else if (rs.value.items.length > MAX_RULES) r.error('too-large', rs.value, rs.at, `${rs.value.items.length} rules; at most ${MAX_RULES} are allowed`);
  else {
    const ids = new Map<string, number>();
    rs.value.items.forEach((item, i) => {
      const rule = readRule(r, item as Node | null, i, offsetOf(rs.value, rs.at));
      if (!rule) return;
      const prev = ids.get(rule.id);
      if (prev !== undefined) {
        r.report('error', 'duplicate-id', offsetOf(item as Node, 0), `rule id ${show(rule.id)} is already used by the rule at line ${prev}`);
        return;
      }
      ids.set(rule.id, rule.line);
      rules.push(rule);
    });
  }
  return { name, defaultAudit, modes, rules };
}

function readMode(r: Reader, node: Node | null, index: number, fallback: number): ModeAst | null {
  const what = `modes[${index}]`;
  const e = entries(r, node, MODE_KEYS, what, fallback);
  if (!e) return null;
  const at = offsetOf(node, fallback);
  const sel = e.get('select');
  const mode = e.get('mode');
  if (!sel) r.error('missing-key', node, at, `${what}: missing key "select" (a label selector; {} selects every PU)`);
  if (!mode) r.error('missing-key', node, at, `${what}: missing key "mode" (enforce or audit)`);
  if (!sel || !mode) return null;
  const terms = readSelector(r, sel, 'select');
  const m = oneOf(r, mode, 'mode', ['enforce', 'audit'] as const);
  if (!terms || !m) return null;
  const pos = r.at(at);
  return { index, line: pos.line, column: pos.column, terms, audit: m === 'audit' };
}

function readRule(r: Reader, node: Node | null, index: number, fallback: number): RuleAst | null {
  const what = `rules[${index}]`;
  const errorsBefore = r.errors.length;
  const e = entries(r, node, RULE_KEYS, 'a rule', fallback);
  if (!e) return null;
  const at = offsetOf(node, fallback);
  const pos = r.at(at);

  let id = `rule-${index + 1}`;
  const idE = e.get('id');
  if (idE) {
    const s = scalar(r, idE, 'id');
    if (s !== null) {
      if (!RULE_ID.test(s)) r.error('value', idE.value, idE.at, `rule id ${show(s)}: use 1..64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit`);
      else id = s;
    }
  }
  const desc = e.get('description');
  if (desc) scalar(r, desc, 'description');

  let dirs = DIR_INGRESS | DIR_EGRESS;
  const dE = e.get('direction');
  if (dE) {
    const dv = oneOf(r, dE, 'direction', ['ingress', 'egress', 'both'] as const);
    if (dv === 'ingress') dirs = DIR_INGRESS;
    else if (dv === 'egress') dirs = DIR_EGRESS;
  }

  let action: PolicyAction | null = null;
  const aE = e.get('action');
  if (aE) action = oneOf(r, aE, 'action', ['allow', 'reject', 'observe'] as const);
  else if (!e.unknown.some((k) => didYouMean(k, ['action']) !== '')) {
    // (A misspelt "action" was already reported as an unknown key with a suggestion.)
    r.error('missing-key', node, at, `${what}${idE ? ` (${id})` : ''}: missing key "action" (allow, reject or observe)`);
  }

  let reject: RejectMode | undefined;
  const rjE = e.get('reject');
  if (rjE) {
    reject = oneOf(r, rjE, 'reject', ['reset', 'drop'] as const) ?? undefined;
    if (action && action !== 'reject') r.error('value', rjE.keyNode, rjE.at, `reject: applies only to action: reject (this rule's action is ${action})`);
  }

  const from = readPeer(r, e, 'from', 'fromNetworks');
  const to = readPeer(r, e, 'to', 'toNetworks');
  if (from && to && from.kind === 'networks' && to.kind === 'networks') {
    r.error('value', e.get('toNetworks')!.keyNode, at, 'a rule cannot have networks on both sides: one side is always a local PU (use from or to for it)');
  }

  let same: null | true | string[] = null;
  const sE = e.get('sameLabels');
  if (sE) {
    if (sE.value && isSeq(sE.value)) {
      const keys = scalarList(r, sE, 'sameLabels');
      if (keys) {
        same = [];
        for (const [k, kn] of keys) {
          if (!USER_KEY.test(k) && !SYSTEM_KEY.test(k)) r.error('label', kn, sE.at, `sameLabels: ${show(k)} is not a label key`);
          else same.push(k);
        }
      }
    } else {
      const b = oneOf(r, sE, 'sameLabels', ['true', 'false'] as const);
      if (b === 'true') same = true;
    }
    if (same !== null && ((from && from.kind === 'networks') || (to && to.kind === 'networks'))) {
      r.error('value', sE.keyNode, sE.at, 'sameLabels compares the labels of two Tessera PUs: it cannot be combined with fromNetworks/toNetworks');
    }
  }

  let ports: Int32Array | null = null;
  const pE = e.get('ports');
  if (pE) ports = readPorts(r, pE);

  if (r.errors.length > errorsBefore || !action || !from || !to) return null;
  return { index, id, line: pos.line, column: pos.column, dirs, from, to, same, ports, action, reject };
}

function readPeer(r: Reader, e: Entries, labelsKey: 'from' | 'to', netKey: 'fromNetworks' | 'toNetworks'): PeerAst | null {
  const l = e.get(labelsKey);
  const n = e.get(netKey);
  if (l && n) {
    r.error('value', n.keyNode, n.at, `use ${labelsKey} (Tessera PUs by label) or ${netKey} (peers without Tessera), not both: write two rules`);
    readSelector(r, l, labelsKey); // for its errors
  } else if (l) {
    const terms = readSelector(r, l, labelsKey);
    return terms ? { kind: 'labels', terms } : null;
  }
  if (n) {
    const items = scalarList(r, n, netKey);
    if (!items) return null;
    const cidrs: Cidr[] = [];
    for (const [s, node] of items) {
      const c = parseCidr(s.trim());
      if (typeof c === 'string') {
        r.error('cidr', node, n.at, `${netKey}: ${c}`);
        continue;
      }
      if (c.hostBits) {
        r.report('warning', 'cidr-host-bits', offsetOf(node, n.at), `${netKey}: ${show(s)} has host bits set; it means ${c.text}`);
      }
      for (const prev of cidrs) {
        if (cidrContains(prev, c)) r.report('warning', 'redundant', offsetOf(node, n.at), `${netKey}: ${c.text} is inside ${prev.text}, listed before it`);
        else if (cidrContains(c, prev)) r.report('warning', 'redundant', offsetOf(node, n.at), `${netKey}: ${c.text} contains ${prev.text}, listed before it`);
      }
      cidrs.push(c);
    }
    return cidrs.length === items.length && !l ? { kind: 'networks', cidrs } : null;
  }
  return { kind: 'any' };
}

function checkLabelKey(r: Reader, key: string, node: Node, at: number, what: string): boolean {
  if (USER_KEY.test(key) || SYSTEM_KEY.test(key)) return true;
  let hint = '';
  if (key.startsWith('!')) hint = `; for "not equal" write ${key.slice(1)}: {ne: value}, for "no such label" ${key.slice(1)}: {exists: false}`;
  r.error('label', node, at, `${what}: ${show(key)} is not a label key (1..63 of A-Z a-z 0-9 . _ / - starting with a letter or digit; system keys start with @)${hint}`);
  return false;
}

function checkValue(r: Reader, value: string, node: Node, at: number, what: string): boolean {
  if (BAD_VALUE_CHAR.test(value)) {
    r.error('label', node, at, `${what}: label value ${show(value)} contains a control character`);
    return false;
  }
  if (utf8.encode(value).length > 255) {
    r.error('label', node, at, `${what}: label value is longer than 255 bytes`);
    return false;
  }
  return true;
}

/**
 * A selector mapping: `key: value` (equals), `key: [a, b]` (in), or `key: {op: ...}` with
 * operators eq, ne, in, notIn, exists (several operators on one key must all hold).
 */
function readSelector(r: Reader, e: Entry, what: string): Term[] | null {
  if (!e.value) {
    r.error('value', e.keyNode, e.at, `${what}: a label selector is required; write {} to select every Tessera PU`);
    return null;
  }
  const m = entries(r, e.value, null, what, e.at);
  if (!m) return null;
  const terms: Term[] = [];
  let ok = true;
  for (const { key, keyNode, value, at } of m.values()) {
    if (!checkLabelKey(r, key, keyNode, at, what)) {
      ok = false;
      continue;
    }
    const where = `${what}.${key}`;
    if (!value) {
      r.error('value', keyNode, at, `${where}: a value is required (write ${key}: "" for the empty value, ${key}: {exists: true} for any value)`);
      ok = false;
      continue;
    }
    if (isScalar(value) && typeof value.value === 'string') {
      if (!checkValue(r, value.value, value, at, where)) ok = false;
      terms.push({ key, op: 'eq', values: [value.value] });
      continue;
    }
    if (isSeq(value)) {
      const vals = scalarList(r, { key, keyNode, value, at }, where);
      if (!vals) {
        ok = false;
        continue;
      }
      for (const [v, vn] of vals) if (!checkValue(r, v, vn, at, where)) ok = false;
      terms.push({ key, op: 'in', values: [...new Set(vals.map(([v]) => v))] });
      continue;
    }
    const ops = entries(r, value, OPERATORS, `operators of ${where}`, at);
    if (!ops) {
      ok = false;
      continue;
    }
    if (ops.size === 0 && ops.unknown.length === 0) {
      r.error('operator', value, at, `${where}: no operator (use eq, ne, in, notIn or exists)`);
      ok = false;
    }
    for (const op of ops.values()) {
      const t = readOperator(r, op, key, where);
      if (t) terms.push(t);
      else ok = false;
    }
  }
  return ok ? terms : null;
}

function readOperator(r: Reader, e: Entry, key: string, where: string): Term | null {
  const what = `${where}.${e.key}`;
  switch (e.key) {
    case 'eq':
    case 'ne': {
      const s = scalar(r, e, what);
      if (s === null || !checkValue(r, s, e.value!, e.at, what)) return null;
      return { key, op: e.key as Op, values: [s] };
    }
    case 'in':
    case 'notIn': {
      const vals = scalarList(r, e, what);
      if (!vals) return null;
      for (const [v, vn] of vals) if (!checkValue(r, v, vn, e.at, what)) return null;
      return { key, op: e.key as Op, values: [...new Set(vals.map(([v]) => v))] };
    }
    default: {
      const b = oneOf(r, e, what, ['true', 'false'] as const);
      if (b === null) return null;
      return { key, op: b === 'true' ? 'exists' : 'notExists', values: [] };
    }
  }
}

function readPorts(r: Reader, e: Entry): Int32Array | null {
  const items = scalarList(r, e, 'ports');
  if (!items) return null;
  const ranges: Array<[number, number]> = [];
  let ok = true;
  for (const [raw, node] of items) {
    const s = raw.trim();
    const m = /^([0-9]{1,5})(?:\s*-\s*([0-9]{1,5}))?$/.exec(s);
    if (!m) {
      r.error('port', node, e.at, `ports: ${show(raw)} is not a port: write a number 1..65535 or a range like 8000-8080`);
      ok = false;
      continue;
    }
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (lo < 1 || lo > 65535 || hi < 1 || hi > 65535) {
      r.error('port', node, e.at, `ports: ${show(raw)} is out of range: ports are 1..65535`);
      ok = false;
      continue;
    }
    if (lo > hi) {
      r.error('port', node, e.at, `ports: bad port range ${show(raw)}: the first port must not exceed the second (write ${hi}-${lo})`);
      ok = false;
      continue;
    }
    ranges.push([lo, hi]);
  }
  if (!ok) return null;
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: number[] = [];
  for (const [lo, hi] of ranges) {
    const last = merged.length - 1;
    if (last > 0 && lo <= merged[last]! + 1) merged[last] = Math.max(merged[last]!, hi);
    else merged.push(lo, hi);
  }
  if (merged.length === 2 && merged[0] === 1 && merged[1] === 65535) return null;
  return Int32Array.from(merged);
}
