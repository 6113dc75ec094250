// `tessera policy check`: errors from parsing, then warnings from comparing rules pairwise.
// Coverage is decided exactly for one earlier rule against one later rule (selectors reduce
// to per-key sets of allowed states, CIDR blocks nest or are disjoint); a rule covered only by
// several earlier rules together is not reported. A warning never claims more than is true.

import { cidrContains, type Cidr } from './cidr.js';
import { compileAst, type CompiledRule } from './compile.js';
import { parsePolicyText } from './parse.js';
import type { PeerAst } from './ast.js';
import { implies, intersects, satisfiable, selectorForm, type SelectorForm } from './selector.js';
import type { CheckResult, CompileOptions, PolicyError } from './types.js';

type PeerForm =
  | { readonly kind: 'any' }
  | { readonly kind: 'labels'; readonly form: SelectorForm }
  | { readonly kind: 'networks'; readonly cidrs: readonly Cidr[] };

function peerForm(p: PeerAst): PeerForm {
  if (p.kind === 'labels') return { kind: 'labels', form: selectorForm(p.terms) };
  return p;
}

function coversPeer(a: PeerForm, b: PeerForm): boolean {
  if (a.kind === 'any') return true;
  if (a.kind === 'labels') return b.kind === 'labels' && implies(b.form, a.form);
  return b.kind === 'networks' && b.cidrs.every((cb) => a.cidrs.some((ca) => cidrContains(ca, cb)));
}

function peersIntersect(a: PeerForm, b: PeerForm): boolean {
  if (a.kind === 'any' || b.kind === 'any') return true;
  if (a.kind === 'labels' && b.kind === 'labels') return intersects(a.form, b.form);
  if (a.kind === 'networks' && b.kind === 'networks') return a.cidrs.some((x) => b.cidrs.some((y) => cidrContains(x, y) || cidrContains(y, x)));
  return false;
}

function portsCover(a: Int32Array | null, b: Int32Array | null): boolean {
  if (a === null) return true;
  if (b === null) return false;
  for (let j = 0; j < b.length; j += 2) {
    let inside = false;
    for (let i = 0; i < a.length; i += 2) if (a[i]! <= b[j]! && b[j + 1]! <= a[i + 1]!) inside = true;
    if (!inside) return false;
  }
  return true;
}

function portsIntersect(a: Int32Array | null, b: Int32Array | null): boolean {
  if (a === null || b === null) return true;
  for (let i = 0; i < a.length; i += 2) for (let j = 0; j < b.length; j += 2) if (a[i]! <= b[j + 1]! && b[j]! <= a[i + 1]!) return true;
  return false;
}

function sameImplied(a: CompiledRule['same'], b: CompiledRule['same']): boolean {
  if (a === null) return true;
  if (b === null) return false;
  if (a === true) return b === true;
  return b !== true && a.every((k) => b.includes(k));
}

function outcome(r: CompiledRule): string {
  return r.ast.action === 'reject' && r.ast.reject ? `reject (${r.ast.reject})` : r.ast.action;
}

interface Analyzed {
  readonly rule: CompiledRule;
  readonly from: PeerForm;
  readonly to: PeerForm;
  readonly satisfiable: boolean;
}

function analyze(rules: readonly CompiledRule[], file: string): PolicyError[] {
  const out: PolicyError[] = [];
  const warn = (r: CompiledRule, code: string, message: string): void => {
    const { line, column } = r.ast;
    out.push(Object.freeze({ severity: 'warning' as const, code, file, line, column, message, text: `${file}:${line}:${column}: warning: ${message}` }));
  };
  const list: Analyzed[] = rules.map((rule) => {
    const from = peerForm(rule.ast.from);
    const to = peerForm(rule.ast.to);
    const sat = (from.kind !== 'labels' || satisfiable(from.form)) && (to.kind !== 'labels' || satisfiable(to.form));
    return { rule, from, to, satisfiable: sat && rule.dirs !== 0 };
  });
  for (const b of list) {
    const rb = b.rule;
    const name = JSON.stringify(rb.ast.id);
    if (rb.dirs === 0) {
      const side = rb.ast.to.kind === 'networks' ? 'toNetworks describes the server' : 'fromNetworks describes the client';
      warn(rb, 'never-matches', `rule ${name} never matches: ${side}, which is a remote peer only on ${rb.ast.to.kind === 'networks' ? 'egress' : 'ingress'}, but the rule's direction excludes it`);
      continue;
    }
    if (!b.satisfiable) {
      warn(rb, 'never-matches', `rule ${name} never matches: its label selector contradicts itself`);
      continue;
    }
    for (const a of list) {
      const ra = a.rule;
      if (ra === rb) break;
      if (ra.action === 2 || !a.satisfiable) continue;
      const covered =
        (rb.dirs & ~ra.dirs) === 0 &&
        (rb.ast.protocols & ~ra.ast.protocols) === 0 &&
        portsCover(ra.ports, rb.ports) &&
        coversPeer(a.from, b.from) &&
        coversPeer(a.to, b.to) &&
        sameImplied(ra.same, rb.same);
      const where = `rule ${JSON.stringify(ra.ast.id)} (line ${ra.ast.line})`;
      if (covered) {
        if (rb.action === 2) warn(rb, 'shadowed', `rule ${name} (observe) never runs: ${where} decides every connection it matches first (${outcome(ra)})`);
        else if (outcome(ra) !== outcome(rb)) {
          warn(rb, 'shadowed', `rule ${name} (${outcome(rb)}) is shadowed: ${where} matches every connection it matches and says ${outcome(ra)} first`);
        } else warn(rb, 'redundant', `rule ${name} is redundant: ${where} already says ${outcome(ra)} for every connection it matches`);
        break;
      }
      if (rb.action === 2 || outcome(ra) === outcome(rb)) continue;
      if ((ra.dirs & rb.dirs) === 0 || (ra.ast.protocols & rb.ast.protocols) === 0 || !portsIntersect(ra.ports, rb.ports)) continue;
      for (const side of ['from', 'to'] as const) {
        const pa = a[side];
        const pb = b[side];
        const other = side === 'from' ? 'to' : 'from';
        if (pa.kind !== 'networks' || pb.kind !== 'networks' || !peersIntersect(a[other], b[other])) continue;
        const hit = pb.cidrs.flatMap((cb) => pa.cidrs.filter((ca) => cidrContains(ca, cb)).map((ca) => [ca, cb] as const))[0];
        if (hit) {
          warn(
            rb,
            'cidr-conflict',
            `${side}Networks ${hit[1].text} of rule ${name} (${outcome(rb)}) lies inside ${hit[0].text} of ${where} (${outcome(ra)}): ` +
              `where both rules apply, ${JSON.stringify(ra.ast.id)} decides first; move ${name} above it if it is an exception`,
          );
          break;
        }
      }
    }
  }
  return out;
}

/** Errors (schema, YAML) and warnings (shadowed, redundant, conflicting CIDRs, dead rules). */
export function check(text: string, opts: CompileOptions = {}): CheckResult {
  const file = opts.file ?? 'policy.yaml';
  const parsed = parsePolicyText(text, file);
  if (!parsed.ast) return { ok: false, errors: parsed.errors, warnings: parsed.warnings };
  const compiled = compileAst(parsed.ast);
  const warnings = [...parsed.warnings, ...analyze(compiled.rules, file)];
  for (const m of parsed.ast.modes) {
    if (!satisfiable(selectorForm(m.terms))) {
      warnings.push(
        Object.freeze({
          severity: 'warning' as const,
          code: 'never-matches',
          file,
          line: m.line,
          column: m.column,
          message: `modes[${m.index}] never matches: its label selector contradicts itself`,
          text: `${file}:${m.line}:${m.column}: warning: modes[${m.index}] never matches: its label selector contradicts itself`,
        }),
      );
    }
  }
  warnings.sort((x, y) => x.line - y.line || x.column - y.column);
  return { ok: true, errors: [], warnings };
}
