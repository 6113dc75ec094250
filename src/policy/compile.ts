// Syntax tree → the Policy the datapath calls once per handshake decision. Evaluation is a
// scan of the rules that apply to the direction, in file order; per rule the cheap tests
// come first (port ranges, then Map lookups on cached label info). Decisions are frozen
// objects built here, so an evaluation without observe rules allocates nothing.

import { cidrHas, parseAddressInto, v4Mapped, wordsFromBytes, type Cidr } from './cidr.js';
import { parsePolicyText } from './parse.js';
import { DIR_EGRESS, DIR_INGRESS, PROTO_TCP, PROTO_UDP, type PeerAst, type PolicyAst, type RuleAst } from './ast.js';
import { compileTerms, labelInfo, termsMatch, type CompiledTerm, type LabelInfo } from './selector.js';
import { hasLaxModes, modeOf, type PuMode } from './modes.js';
import type { CompileOptions, CompileResult, Endpoint, Policy, PolicyDecision, PolicyRequest } from './types.js';

export const DEFAULT_RULE_ID = 'default:reject';

/** 0 any peer, 1 Tessera PU by labels, 2 peer without Tessera by address. */
export interface PeerMatcher {
  readonly kind: 0 | 1 | 2;
  readonly terms: readonly CompiledTerm[];
  readonly v4: readonly Cidr[];
  readonly v6: readonly Cidr[];
}

export interface CompiledRule {
  readonly ast: RuleAst;
  /** Directions where the rule can match: networks only ever describe the remote side. */
  readonly dirs: number;
  readonly ports: Int32Array | null;
  readonly client: PeerMatcher;
  readonly server: PeerMatcher;
  readonly same: null | true | readonly string[];
  /** 0 allow, 1 reject, 2 observe */
  readonly action: 0 | 1 | 2;
  readonly decision: PolicyDecision;
  /** The reject decision for a local PU in audit mode. */
  readonly auditDecision: PolicyDecision;
  /** The decision for a local PU in learn mode (a refusal let through), and the allow decisions
   *  of PUs in learn or audit mode (they carry `mode`, which the flow record shows). */
  readonly learnDecision: PolicyDecision;
  readonly allowAudit: PolicyDecision;
  readonly allowLearn: PolicyDecision;
}

export interface CompiledMode {
  readonly terms: readonly CompiledTerm[];
  readonly audit: boolean;
  readonly mode: PuMode;
}

export interface CompiledPolicy {
  readonly ast: PolicyAst;
  readonly rules: readonly CompiledRule[];
  readonly ingressRules: readonly CompiledRule[];
  readonly egressRules: readonly CompiledRule[];
  readonly modes: readonly CompiledMode[];
  readonly defaultAudit: boolean;
  readonly defaultMode: PuMode;
  /** Some PU may run in learn or audit mode: the evaluator asks each PU's mode. */
  readonly lax: boolean;
  readonly defaultDecision: PolicyDecision;
  readonly defaultAuditDecision: PolicyDecision;
  readonly defaultLearnDecision: PolicyDecision;
}

/** Compiled form of each Policy made here: explain() needs the rules behind the closures. */
export const compiledOf = new WeakMap<Policy, CompiledPolicy>();

function peerMatcher(p: PeerAst): PeerMatcher {
  if (p.kind === 'any') return { kind: 0, terms: [], v4: [], v6: [] };
  if (p.kind === 'labels') return { kind: 1, terms: compileTerms(p.terms), v4: [], v6: [] };
  return { kind: 2, terms: [], v4: p.cidrs.filter((c) => c.family === 4), v6: p.cidrs.filter((c) => c.family === 6) };
}

function effectiveDirs(rule: RuleAst): number {
  let d = rule.dirs;
  // On ingress the server is the local PU; a network can only describe the remote client.
  if (rule.to.kind === 'networks') d &= ~DIR_INGRESS;
  if (rule.from.kind === 'networks') d &= ~DIR_EGRESS;
  return d;
}

export function compileAst(ast: PolicyAst): CompiledPolicy {
  const rules: CompiledRule[] = ast.rules.map((r) => {
    const action = r.action === 'allow' ? 0 : r.action === 'reject' ? 1 : 2;
    const base = { ruleId: r.id, ...(r.reject ? { reject: r.reject } : {}) };
    const decision: PolicyDecision = Object.freeze(
      action === 0 ? { allow: true, ruleId: r.id, action: 'allow' as const, audit: false } : { allow: false, ...base, action: 'reject' as const, audit: false },
    );
    const auditDecision: PolicyDecision = Object.freeze({ allow: true, ...base, action: 'reject' as const, audit: true, mode: 'audit' as const });
    const learnDecision: PolicyDecision = Object.freeze({ ...auditDecision, mode: 'learn' as const });
    return {
      ast: r,
      dirs: effectiveDirs(r),
      ports: r.ports,
      client: peerMatcher(r.from),
      server: peerMatcher(r.to),
      same: r.same,
      action: action as 0 | 1 | 2,
      decision,
      auditDecision,
      learnDecision,
      allowAudit: Object.freeze({ ...decision, mode: 'audit' as const }),
      allowLearn: Object.freeze({ ...decision, mode: 'learn' as const }),
    };
  });
  const modes = ast.modes.map((m) => ({ terms: compileTerms(m.terms), audit: m.audit, mode: m.mode }));
  return {
    ast,
    rules,
    ingressRules: rules.filter((r) => r.dirs & DIR_INGRESS),
    egressRules: rules.filter((r) => r.dirs & DIR_EGRESS),
    modes,
    defaultAudit: ast.defaultAudit,
    defaultMode: ast.defaultMode,
    lax: hasLaxModes({ modes, defaultMode: ast.defaultMode }),
    defaultDecision: Object.freeze({ allow: false, ruleId: DEFAULT_RULE_ID, action: 'reject' as const, audit: false }),
    defaultAuditDecision: Object.freeze({ allow: true, ruleId: DEFAULT_RULE_ID, action: 'reject' as const, audit: true, mode: 'audit' as const }),
    defaultLearnDecision: Object.freeze({ allow: true, ruleId: DEFAULT_RULE_ID, action: 'reject' as const, audit: true, mode: 'learn' as const }),
  };
}

export function portMatches(ports: Int32Array | null, port: number): boolean {
  if (ports === null) return true;
  for (let i = 0; i < ports.length; i += 2) {
    if (port < ports[i]!) return false;
    if (port <= ports[i + 1]!) return true;
  }
  return false;
}

/** The peer address parsed once per evaluation; family 0 when absent or not an address. */
export interface PeerAddr {
  family: 0 | 4 | 6;
  mapped: boolean;
  readonly words: Uint32Array;
  readonly v4: Uint32Array;
}

export function newPeerAddr(): PeerAddr {
  return { family: 0, mapped: false, words: new Uint32Array(4), v4: new Uint32Array(1) };
}

export function setPeerAddr(a: PeerAddr, addr: string | Uint8Array | undefined): void {
  a.family = typeof addr === 'string' ? parseAddressInto(addr, a.words) : addr === undefined ? 0 : wordsFromBytes(addr, a.words);
  a.mapped = a.family === 6 && v4Mapped(a.words);
  if (a.family === 4) a.v4[0] = a.words[0]!;
  else if (a.mapped) a.v4[0] = a.words[3]!;
}

export function networkMatches(m: PeerMatcher, a: PeerAddr): boolean {
  if (a.family === 0) return false;
  if (a.family === 4 || a.mapped) {
    for (const c of m.v4) if (cidrHas(c, 4, a.v4)) return true;
  }
  if (a.family === 6) {
    for (const c of m.v6) if (cidrHas(c, 6, a.words)) return true;
  }
  return false;
}

export function sameMatches(same: true | readonly string[], c: LabelInfo, s: LabelInfo): boolean {
  if (same === true) return c.user === s.user;
  for (const k of same) {
    const v = c.map.get(k);
    if (v === undefined || v !== s.map.get(k)) return false;
  }
  return true;
}

export function isAudit(p: CompiledPolicy, local: LabelInfo | null): boolean {
  return modeOf(p, local) !== 'enforce';
}

/** The deciding rule's decision (null: the default) for a local PU in mode `mode`. */
export function decisionIn(p: CompiledPolicy, r: CompiledRule | null, mode: PuMode): PolicyDecision {
  if (r === null) return mode === 'enforce' ? p.defaultDecision : mode === 'audit' ? p.defaultAuditDecision : p.defaultLearnDecision;
  if (r.action === 0) return mode === 'enforce' ? r.decision : mode === 'audit' ? r.allowAudit : r.allowLearn;
  return mode === 'enforce' ? r.decision : mode === 'audit' ? r.auditDecision : r.learnDecision;
}

function info(e: Endpoint | null): LabelInfo | null {
  return e === null || e === undefined ? null : labelInfo(e.labels);
}

function withObserved(d: PolicyDecision, observed: string[] | null): PolicyDecision {
  return observed === null ? d : Object.freeze({ ...d, observed: Object.freeze(observed) });
}

function evaluator(p: CompiledPolicy, dir: number): (req: PolicyRequest) => PolicyDecision {
  const list = dir === DIR_INGRESS ? p.ingressRules : p.egressRules;
  const ingress = dir === DIR_INGRESS;
  const addr = newPeerAddr();
  return (req) => {
    const port = req.port;
    const proto = req.protocol === 'udp' ? PROTO_UDP : PROTO_TCP;
    const ci = info(req.client);
    const si = info(req.server);
    const remote = ingress ? ci : si;
    let addrParsed = false;
    let observed: string[] | null = null;
    for (let i = 0; i < list.length; i++) {
      const r = list[i]!;
      if (r.ports !== null && !portMatches(r.ports, port)) continue;
      if ((r.ast.protocols & proto) === 0) continue;
      const cm = r.client;
      if (cm.kind === 1) {
        if (ci === null || !termsMatch(cm.terms, ci.map)) continue;
      } else if (cm.kind === 2) {
        if (remote !== null) continue;
        if (!addrParsed) {
          setPeerAddr(addr, req.peerAddr);
          addrParsed = true;
        }
        if (!networkMatches(cm, addr)) continue;
      }
      const sm = r.server;
      if (sm.kind === 1) {
        if (si === null || !termsMatch(sm.terms, si.map)) continue;
      } else if (sm.kind === 2) {
        if (remote !== null) continue;
        if (!addrParsed) {
          setPeerAddr(addr, req.peerAddr);
          addrParsed = true;
        }
        if (!networkMatches(sm, addr)) continue;
      }
      if (r.same !== null && (ci === null || si === null || !sameMatches(r.same, ci, si))) continue;
      if (r.action === 2) {
        (observed ??= []).push(r.ast.id);
        continue;
      }
      if (!p.lax) return withObserved(r.decision, observed);
      return withObserved(decisionIn(p, r, modeOf(p, ingress ? si : ci)), observed);
    }
    return withObserved(decisionIn(p, null, p.lax ? modeOf(p, ingress ? si : ci) : 'enforce'), observed);
  };
}

export function policyFrom(p: CompiledPolicy): Policy {
  const policy: Policy = Object.freeze({ name: p.ast.name, ingress: evaluator(p, DIR_INGRESS), egress: evaluator(p, DIR_EGRESS) });
  compiledOf.set(policy, p);
  return policy;
}

/** Policy text → a Policy, or every error found (never throws). */
export function compilePolicy(text: string, opts: CompileOptions = {}): CompileResult {
  const file = opts.file ?? 'policy.yaml';
  const parsed = parsePolicyText(text, file);
  if (!parsed.ast) return { ok: false, errors: parsed.errors };
  return { ok: true, policy: policyFrom(compileAst(parsed.ast)) };
}
