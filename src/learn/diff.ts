// `tessera policy diff`: replay the observed edges through the policy evaluator (the fast
// path the datapath uses, so the answer is the datapath's): which observed flows a policy
// would refuse, and by which rule; which of its rules no observed flow used; and, given the
// running policy too, what changes if the file is applied. Refusals are judged as enforce
// would judge them: an audited or learning refusal counts as a refusal here. Pure.

import { compiledOf } from '../policy/compile.js';
import type { Policy, PolicyDecision } from '../policy/index.js';
import { connections, type Edge, type EdgeTableJson, type Side } from './edges.js';

export interface EdgeVerdict {
  readonly edge: Edge;
  readonly allowed: boolean;
  /** The refusing side's rule (or the allowing rule). */
  readonly ruleId: string;
  /** Which host's check refused: the server's (ingress) or the client's (egress). */
  readonly direction: 'ingress' | 'egress' | null;
}

export interface DiffResult {
  readonly edges: number;
  readonly refused: readonly EdgeVerdict[];
  readonly allowed: number;
  /** Ids of allow/reject/observe rules that no observed edge reached. */
  readonly unused: readonly string[];
  readonly used: ReadonlyMap<string, number>;
}

const refused = (d: PolicyDecision): boolean => !d.allow || d.action === 'reject';

/** Mutual authorization, as the datapath applies it: every side that runs Tessera must allow. */
export function judge(policy: Policy, e: Edge, used?: Map<string, number>): EdgeVerdict {
  const client = 'labels' in e.client ? { labels: e.client.labels } : null;
  const server = 'labels' in e.server ? { labels: e.server.labels } : null;
  const note = (d: PolicyDecision): void => {
    if (!used) return;
    used.set(d.ruleId, (used.get(d.ruleId) ?? 0) + connections(e));
    for (const o of d.observed ?? []) used.set(o, (used.get(o) ?? 0) + connections(e));
  };
  let ing: PolicyDecision | null = null;
  let eg: PolicyDecision | null = null;
  if (server) {
    ing = policy.ingress({ client, server, port: e.port, peerAddr: addrOf(e.client) });
    note(ing);
  }
  if (client) {
    eg = policy.egress({ client, server, port: e.port, peerAddr: addrOf(e.server) });
    note(eg);
  }
  if (ing && refused(ing)) return { edge: e, allowed: false, ruleId: ing.ruleId, direction: 'ingress' };
  if (eg && refused(eg)) return { edge: e, allowed: false, ruleId: eg.ruleId, direction: 'egress' };
  return { edge: e, allowed: true, ruleId: (ing ?? eg)!.ruleId, direction: null };
}

const addrOf = (s: Side): string | undefined => ('addr' in s ? s.addr : undefined);

export function diff(policy: Policy, table: EdgeTableJson, since?: number): DiffResult {
  const used = new Map<string, number>();
  const out: EdgeVerdict[] = [];
  let allowed = 0;
  let n = 0;
  for (const e of table.edges) {
    if (since !== undefined && e.last < since) continue;
    n++;
    const v = judge(policy, e, used);
    if (v.allowed) allowed++;
    else out.push(v);
  }
  const rules = compiledOf.get(policy)?.rules.map((r) => r.ast.id) ?? [];
  return { edges: n, refused: out, allowed, unused: rules.filter((id) => !used.has(id)), used };
}

export interface Change {
  readonly edge: Edge;
  readonly before: EdgeVerdict;
  readonly after: EdgeVerdict;
}

/** What applying `next` instead of `running` changes for the observed edges. */
export function compare(running: Policy, next: Policy, table: EdgeTableJson, since?: number): { newlyRefused: Change[]; newlyAllowed: Change[] } {
  const newlyRefused: Change[] = [];
  const newlyAllowed: Change[] = [];
  for (const e of table.edges) {
    if (since !== undefined && e.last < since) continue;
    const before = judge(running, e);
    const after = judge(next, e);
    if (before.allowed && !after.allowed) newlyRefused.push({ edge: e, before, after });
    else if (!before.allowed && after.allowed) newlyAllowed.push({ edge: e, before, after });
  }
  return { newlyRefused, newlyAllowed };
}

/** "app=web → app=db:5432/tcp" for tables and messages (user labels only when there are any). */
export function describeEdge(e: Edge): string {
  const side = (s: Side): string => {
    if ('addr' in s) return s.addr;
    const user = s.labels.filter((l) => !l.startsWith('@'));
    return (user.length > 0 ? user : s.labels).join(',') || '(no labels)';
  };
  return `${side(e.client)} → ${side(e.server)}:${e.port}/${e.protocol}`;
}
