// Cutting established connections that the current policy refuses (`tessera flows --revoke`).
// Established flows never leave the kernel, so a policy change applies to new connections
// only; this is the explicit way to apply it to existing ones. The daemon remembers the
// identities of every connection it authorized; conntrack (our AUTHORIZED connmark bit)
// says which of them still exist; `ss -K` destroys the local socket (the kernel sends the
// peer a reset) and `conntrack -D` drops the entry.

import { CT_AUTHORIZED, hex } from '../marks.js';
import { Lru } from '../identity/index.js';
import type { CommandRunner } from '../rules/index.js';
import type { Policy } from '../policy/index.js';
import type { FlowEntry, RevokedFlowInfo } from '../api/index.js';

/** What this host remembers of a connection it authorized (the revoke report minus the verdict). */
export type AuthorizedFlow = Omit<RevokedFlowInfo, 'ruleId' | 'cut'>;
export type RevokedFlow = RevokedFlowInfo;

const MAX_FLOWS = 65_536;

/** The identities of connections this host authorized, by tuple; bounded (32 768 to 65 536 kept), oldest dropped. */
export class AuthorizedFlows {
  // Two generations (identity's Lru): evicting from one 65 536-entry Map cost ~17 µs per
  // connection on the daemon's main thread (V8 iterates the holes of deleted keys).
  readonly #flows = new Lru<string, AuthorizedFlow>(MAX_FLOWS);

  /** Remember a final accept: the server's SYN (protocol v2 decides there; v1 at the ACK), the client's SYN-ACK. */
  note(f: Omit<FlowEntry, 'time'>): void {
    if (f.verdict !== 'accept' || !f.localLabels) return;
    const final = f.direction === 'ingress' ? f.stage === 'ack' || f.stage === 'syn' : f.stage === 'syn-ack';
    if (!final) return;
    const key = `${f.remoteAddr}|${f.remotePort}|${f.localPort}`;
    this.#flows.set(key, {
      direction: f.direction,
      localPort: f.localPort,
      remoteAddr: f.remoteAddr,
      remotePort: f.remotePort,
      localPu: f.localPu,
      localLabels: f.localLabels,
      remoteLabels: f.remoteLabels,
      remoteHost: f.remoteHost,
    });
  }

  all(): AuthorizedFlow[] {
    return [...this.#flows.values()];
  }

  forget(f: AuthorizedFlow): void {
    this.#flows.delete(`${f.remoteAddr}|${f.remotePort}|${f.localPort}`);
  }
}

/**
 * "addr|port|port" keys (remote address, remote port, local port) of live authorized flows
 * in `conntrack -L -p tcp` output. Only ESTABLISHED entries are live: a connection in
 * TIME_WAIT, FIN_WAIT, CLOSE... is closed or closing, and has nothing left to cut.
 */
export function parseConntrack(text: string): Set<string> {
  const live = new Set<string>();
  for (const line of text.split('\n')) {
    // "tcp      6 431999 ESTABLISHED src=..." (with -o extended: "ipv4     2 tcp      6 ...").
    if (/\btcp\s+\d+\s+\d+\s+(\S+)/.exec(line)?.[1] !== 'ESTABLISHED') continue;
    const groups = [...line.matchAll(/src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)/g)];
    for (const g of groups) {
      // Either side may be the remote one: record both orientations.
      live.add(`${g[2]}|${g[4]}|${g[3]}`);
      live.add(`${g[1]}|${g[3]}|${g[4]}`);
    }
  }
  return live;
}

function stillAllowed(policy: Policy, f: AuthorizedFlow): { allow: boolean; ruleId: string } {
  const remote = f.remoteLabels ? { labels: f.remoteLabels } : null;
  const local = { labels: f.localLabels };
  const d =
    f.direction === 'ingress'
      ? policy.ingress({ client: remote, server: local, port: f.localPort, peerAddr: f.remoteAddr })
      : policy.egress({ client: local, server: remote, port: f.remotePort, peerAddr: f.remoteAddr });
  return { allow: d.allow, ruleId: d.ruleId };
}

export async function revokeFlows(flows: AuthorizedFlows, policy: Policy, runner: CommandRunner, dryRun: boolean): Promise<RevokedFlow[]> {
  const listed = await runner.run(['conntrack', '-L', '-p', 'tcp', '--mark', `${hex(CT_AUTHORIZED)}/${hex(CT_AUTHORIZED)}`]);
  const live = parseConntrack(listed.stdout);
  const out: RevokedFlow[] = [];
  for (const f of flows.all()) {
    if (!live.has(`${f.remoteAddr}|${f.remotePort}|${f.localPort}`)) {
      flows.forget(f); // closed since
      continue;
    }
    const verdict = stillAllowed(policy, f);
    if (verdict.allow) continue;
    let cut = false;
    if (!dryRun) {
      const dst = f.remoteAddr.includes(':') ? `[${f.remoteAddr}]` : f.remoteAddr;
      const ss = await runner.run(['ss', '-K', '-t', 'dst', dst, 'dport', '=', `:${f.remotePort}`, 'sport', '=', `:${f.localPort}`]).catch(() => null);
      await runner.run(['conntrack', '-D', '-p', 'tcp', '--mark', `${hex(CT_AUTHORIZED)}/${hex(CT_AUTHORIZED)}`, ...(f.direction === 'ingress' ? ['--orig-src', f.remoteAddr, '--sport', String(f.remotePort), '--dport', String(f.localPort)] : ['--orig-dst', f.remoteAddr, '--dport', String(f.remotePort), '--sport', String(f.localPort)])]).catch(() => null);
      cut = ss !== null;
      flows.forget(f);
    }
    out.push({ ...f, ruleId: verdict.ruleId, cut });
  }
  return out;
}
