// `tessera policy explain`: the same evaluation as compile.ts, written the slow way so that
// every rule on the path says why it matched or not. A property test checks that explain's
// decision always equals the fast path's.

import { TesseraError } from '../errors.js';
import { DIR_EGRESS, DIR_INGRESS, PROTO_ANY, PROTO_TCP, PROTO_UDP, type PeerAst, type RuleAst } from './ast.js';
import {
  compiledOf,
  decisionIn,
  networkMatches,
  newPeerAddr,
  portMatches,
  sameMatches,
  setPeerAddr,
  type CompiledPolicy,
  type CompiledRule,
  type PeerMatcher,
} from './compile.js';
import { modeOf } from './modes.js';
import { describeTerm, describeTerms, labelInfo, termMatches, type LabelInfo } from './selector.js';
import type { Direction, ExplainQuery, ExplainStep, Explanation, Policy, PolicyDecision } from './types.js';

function portsText(ports: Int32Array | null): string {
  if (ports === null) return 'any port';
  const parts: string[] = [];
  for (let i = 0; i < ports.length; i += 2) parts.push(ports[i] === ports[i + 1] ? `${ports[i]}` : `${ports[i]}-${ports[i + 1]}`);
  return parts.join(', ');
}

function peerText(p: PeerAst): string {
  if (p.kind === 'any') return 'any peer';
  if (p.kind === 'labels') return `{${describeTerms(p.terms)}}`;
  return p.cidrs.map((c) => c.text).join(', ');
}

function protoText(p: number): string {
  return p === PROTO_ANY ? 'tcp and udp' : p === PROTO_UDP ? 'udp' : 'tcp';
}

function ruleText(r: RuleAst): string {
  const same = r.same === null ? '' : r.same === true ? ', same user labels' : `, same ${r.same.join(', ')}`;
  return `${r.action}${r.reject ? ` (${r.reject})` : ''}: from ${peerText(r.from)} to ${peerText(r.to)}, ${portsText(r.ports)}${r.protocols === PROTO_ANY ? '' : ` (${protoText(r.protocols)})`}${same}`;
}

/** Why a side does not match, or null when it matches. */
function peerMismatch(
  side: 'from' | 'to',
  m: PeerMatcher,
  ast: PeerAst,
  li: LabelInfo | null,
  remote: boolean,
  addrText: string | undefined,
  addr: ReturnType<typeof newPeerAddr>,
): string | null {
  const who = side === 'from' ? 'client' : 'server';
  if (m.kind === 0) return null;
  if (m.kind === 1 && ast.kind === 'labels') {
    if (li === null) return `${side}: the ${who} has no Tessera identity, and ${side} selects Tessera PUs`;
    for (let i = 0; i < m.terms.length; i++) {
      if (!termMatches(m.terms[i]!, li.map)) {
        const t = ast.terms[i]!;
        const have = li.map.get(t.key);
        return `${side}: ${who} ${have === undefined ? `has no label ${t.key}` : `has ${t.key}=${have}`}, the rule needs ${describeTerm(t)}`;
      }
    }
    return null;
  }
  if (!remote) return `${side}Networks: the ${who} is the local PU here; networks describe only remote peers`;
  if (li !== null) return `${side}Networks: the ${who} runs Tessera; networks match only peers without Tessera`;
  if (addrText === undefined) return `${side}Networks: no peer address given`;
  setPeerAddr(addr, addrText);
  if (addr.family === 0) return `${side}Networks: ${JSON.stringify(addrText)} is not an IP address`;
  if (!networkMatches(m, addr)) return `${side}Networks: ${addrText} is not in ${peerText(ast)}`;
  return null;
}

function explainSide(p: CompiledPolicy, dir: number, q: ExplainQuery): { decision: PolicyDecision; chain: ExplainStep[] } {
  const direction: Direction = dir === DIR_INGRESS ? 'ingress' : 'egress';
  const ingress = dir === DIR_INGRESS;
  const ci = q.from === null ? null : labelInfo(q.from);
  const si = q.to === null ? null : labelInfo(q.to);
  const local = ingress ? si : ci;
  const addr = newPeerAddr();
  const chain: ExplainStep[] = [];
  const observed: string[] = [];
  const step = (r: CompiledRule, matched: boolean, why: string): void => {
    chain.push({ direction, ruleId: r.ast.id, line: r.ast.line, matched, why });
  };
  const finish = (d: PolicyDecision): { decision: PolicyDecision; chain: ExplainStep[] } => {
    let decision = d;
    if (observed.length > 0) decision = Object.freeze({ ...d, observed: Object.freeze([...observed]) });
    if (d.audit) {
      const last = chain[chain.length - 1]!;
      chain[chain.length - 1] = { ...last, why: `${last.why}; the local PU runs in ${d.mode ?? 'audit'} mode: the refusal is recorded and the connection let through` };
    }
    return { decision, chain };
  };
  for (const r of p.rules) {
    const a = r.ast;
    if (!(r.dirs & dir)) {
      const why =
        a.dirs & dir
          ? `${direction}: ${a.from.kind === 'networks' ? 'fromNetworks' : 'toNetworks'} describe the remote peer, which on ${direction} is the ${ingress ? 'client' : 'server'}`
          : `applies to ${a.dirs === DIR_INGRESS ? 'ingress' : 'egress'} only`;
      step(r, false, why);
      continue;
    }
    if (!portMatches(r.ports, q.port)) {
      step(r, false, `port ${q.port} is not in ${portsText(r.ports)}`);
      continue;
    }
    if ((a.protocols & (q.protocol === 'udp' ? PROTO_UDP : PROTO_TCP)) === 0) {
      step(r, false, `protocol ${q.protocol ?? 'tcp'}: the rule is for ${protoText(a.protocols)} only`);
      continue;
    }
    const fm = peerMismatch('from', r.client, a.from, ci, ingress, q.peerAddr, addr);
    if (fm !== null) {
      step(r, false, fm);
      continue;
    }
    const tm = peerMismatch('to', r.server, a.to, si, !ingress, q.peerAddr, addr);
    if (tm !== null) {
      step(r, false, tm);
      continue;
    }
    if (r.same !== null) {
      if (ci === null || si === null) {
        step(r, false, 'sameLabels: both sides must be Tessera PUs');
        continue;
      }
      if (!sameMatches(r.same, ci, si)) {
        step(r, false, r.same === true ? `sameLabels: user labels differ ([${ci.user.split('\n').join(', ')}] vs [${si.user.split('\n').join(', ')}])` : `sameLabels: ${r.same.join(', ')} differ or are missing`);
        continue;
      }
    }
    if (r.action === 2) {
      observed.push(a.id);
      step(r, true, `${ruleText(a)} — observed, evaluation continues`);
      continue;
    }
    step(r, true, ruleText(a));
    return finish(decisionIn(p, r, modeOf(p, local)));
  }
  chain.push({ direction, ruleId: p.defaultDecision.ruleId, line: 0, matched: true, why: 'no rule matched: the default is reject' });
  return finish(decisionIn(p, null, modeOf(p, local)));
}

/**
 * Explain the decision for a connection from `q.from` to `q.to` on `q.port`. With direction
 * both (the default), each side that runs Tessera is evaluated — the server's host (ingress)
 * when `to` is a PU, the client's host (egress) when `from` is — and the connection is
 * allowed only if every evaluated side allows it (mutual authorization).
 */
export function explain(policy: Policy, q: ExplainQuery): Explanation {
  const p = compiledOf.get(policy);
  if (!p) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', 'explain needs a policy made by compilePolicy or createDefaultPolicy');
  if (!Number.isInteger(q.port) || q.port < 0 || q.port > 65535) {
    throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `port ${String(q.port)} is not a TCP port (0..65535)`);
  }
  const dir = q.direction ?? 'both';
  if (dir === 'ingress' || dir === 'egress') {
    const local = dir === 'ingress' ? q.to : q.from;
    if (local === null) {
      throw new TesseraError(
        'TESSERA_ERR_INVALID_ARGUMENT',
        `${dir} is evaluated on the ${dir === 'ingress' ? "server's" : "client's"} host: ${dir === 'ingress' ? 'to' : 'from'} must be a PU's labels`,
      );
    }
    const side = explainSide(p, dir === 'ingress' ? DIR_INGRESS : DIR_EGRESS, q);
    return { decision: side.decision, chain: side.chain, [dir]: side };
  }
  if (q.from === null && q.to === null) {
    throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', 'at least one side must be a PU (labels); null means a peer without Tessera');
  }
  const ing = q.to !== null ? explainSide(p, DIR_INGRESS, q) : undefined;
  const eg = q.from !== null ? explainSide(p, DIR_EGRESS, q) : undefined;
  // The client's host decides first in time (SYN-ACK) only after the server's (SYN): report
  // the server's refusal if there is one, then the client's, else the server's allow.
  let decision: PolicyDecision;
  if (ing && !ing.decision.allow) decision = ing.decision;
  else if (eg && !eg.decision.allow) decision = eg.decision;
  else decision = (ing ?? eg)!.decision;
  return {
    decision,
    chain: [...(ing?.chain ?? []), ...(eg?.chain ?? [])],
    ...(ing ? { ingress: ing } : {}),
    ...(eg ? { egress: eg } : {}),
  };
}
