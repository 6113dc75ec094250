// Policy text → validated syntax tree, with every problem located by line and column.
// The YAML is read with the failsafe schema (every scalar is a string) so that `1.10`,
// `no` or `0x1F` mean exactly what is written; ports and enums are then parsed here.
// Validation is hand-written against the same shape as policy/schema.json (the published
// schema; a unit test keeps the key lists in step) because it yields better messages
// ("did you mean") and positions than a generic validator.
//
// Split: ast.ts (the tree and the key lists), yaml-reader.ts (located errors and checked
// accessors), this file (the language: policy, modes, rules, peers, selectors, ports).

import { LineCounter, parseDocument, isScalar, isSeq, type Node } from 'yaml';
import { parseCidr, cidrContains, type Cidr } from './cidr.js';
import type { Op, Term } from './selector.js';
import { PU_MODES, type PuMode } from './modes.js';
import type { PolicyAction, PolicyError, RejectMode } from './types.js';
import { DIR_EGRESS, DIR_INGRESS, PROTO_ANY, PROTO_TCP, PROTO_UDP, MAX_RULES, MAX_TEXT, MODE_KEYS, OPERATORS, RULE_KEYS, TOP_KEYS, type ModeAst, type ParseResult, type PeerAst, type PolicyAst, type RuleAst } from './ast.js';
import { Entries, Reader, didYouMean, entries, offsetOf, oneOf, scalar, scalarList, show, type Entry } from './yaml-reader.js';

const USER_KEY = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/;
const SYSTEM_KEY = /^@[A-Za-z0-9][A-Za-z0-9._/:-]{0,62}$/;
const RULE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const BAD_VALUE_CHAR = /[\p{Cc}\p{Cs}]/u;
const utf8 = new TextEncoder();

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
  let defaultMode: PuMode = 'enforce';
  const m = top.get('mode');
  if (m) defaultMode = oneOf(r, m, 'mode', PU_MODES) ?? 'enforce';
  const defaultAudit = defaultMode !== 'enforce';
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
  return { name, defaultAudit, defaultMode, modes, rules };
}

function readMode(r: Reader, node: Node | null, index: number, fallback: number): ModeAst | null {
  const what = `modes[${index}]`;
  const e = entries(r, node, MODE_KEYS, what, fallback);
  if (!e) return null;
  const at = offsetOf(node, fallback);
  const sel = e.get('select');
  const mode = e.get('mode');
  if (!sel) r.error('missing-key', node, at, `${what}: missing key "select" (a label selector; {} selects every PU)`);
  if (!mode) r.error('missing-key', node, at, `${what}: missing key "mode" (learn, audit or enforce)`);
  if (!sel || !mode) return null;
  const terms = readSelector(r, sel, 'select');
  const m = oneOf(r, mode, 'mode', PU_MODES);
  if (!terms || !m) return null;
  const pos = r.at(at);
  return { index, line: pos.line, column: pos.column, terms, audit: m !== 'enforce', mode: m };
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
  // protocol: tcp, udp or any (the default): a rule about identities holds for both.
  let protocols = PROTO_ANY;
  const prE = e.get('protocol');
  if (prE) {
    const p = oneOf(r, prE, 'protocol', ['tcp', 'udp', 'any'] as const);
    protocols = p === 'tcp' ? PROTO_TCP : p === 'udp' ? PROTO_UDP : PROTO_ANY;
  }

  if (r.errors.length > errorsBefore || !action || !from || !to) return null;
  return { index, id, line: pos.line, column: pos.column, dirs, from, to, same, ports, protocols, action, reject };
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
