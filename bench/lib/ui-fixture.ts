// Generated flow records for the flow map (its unit tests and bench/ui.bench.ts), and Debian's
// chromium driven by playwright-core. No browser is downloaded: the page runs in the system's
// chromium (scripts/setup.sh installs it with apt).

import { existsSync } from 'node:fs';
import type { FlowEntry } from '../../src/api/schemas.js';

export const CHROMIUM = process.env.TESSERA_CHROMIUM ?? '/usr/bin/chromium';
export const haveChromium = existsSync(CHROMIUM);

export async function launchChromium(): Promise<import('playwright-core').Browser> {
  const { chromium } = await import('playwright-core');
  // --no-sandbox: the tests run as root, where chromium's sandbox refuses to start.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
}

export interface FlowSpec {
  client: string | { addr: string };
  server: string | { addr: string };
  port: number;
  verdict?: FlowEntry['verdict'];
  reason?: string;
  ruleId?: string;
  /** The client's ephemeral port (a distinct connection per value). */
  clientPort?: number;
  time?: number;
}

/** One record as the host that decided it would send it: egress for a PU client, ingress for an address client. */
export function flow(s: FlowSpec): FlowEntry {
  const verdict = s.verdict ?? 'accept';
  const base = {
    time: new Date(s.time ?? Date.now()).toISOString(),
    verdict,
    reason: s.reason ?? (verdict === 'accept' ? 'ok' : 'policy'),
    ruleId: s.ruleId ?? (verdict === 'accept' ? 'allow-all' : 'default:reject'),
  };
  const clientPort = s.clientPort ?? 40000;
  if (typeof s.client === 'string') {
    return {
      ...base,
      direction: 'egress',
      stage: 'syn-ack',
      localPu: `pu-${s.client}`,
      localLabels: [`app=${s.client}`, 'env=test'],
      localPort: clientPort,
      remoteAddr: typeof s.server === 'string' ? '10.213.1.2' : s.server.addr,
      remotePort: s.port,
      remoteHost: typeof s.server === 'string' ? 'host-b' : null,
      remotePu: typeof s.server === 'string' ? `pu-${s.server}` : null,
      remoteLabels: typeof s.server === 'string' ? [`app=${s.server}`, 'env=test'] : null,
    };
  }
  const server = s.server as string;
  return {
    ...base,
    direction: 'ingress',
    stage: 'syn',
    localPu: `pu-${server}`,
    localLabels: [`app=${server}`, 'env=test'],
    localPort: s.port,
    remoteAddr: s.client.addr,
    remotePort: clientPort,
    remoteHost: null,
    remotePu: null,
    remoteLabels: null,
  };
}

/**
 * A large map: `groups` PU groups and `edges` distinct edges between them (every fifth one
 * refused, every seventh audited), a few records each, in islands of ~`islandSize` groups.
 */
export function generateFlows(groups: number, edges: number, islandSize = 25, t0 = Date.now() - 60_000): FlowEntry[] {
  const out: FlowEntry[] = [];
  const seen = new Set<string>();
  let x = 12345;
  const rnd = (n: number): number => {
    x = (Math.imul(x, 1103515245) + 12345) & 0x7fffffff;
    return (x >>> 8) % n;
  };
  const islands = Math.max(1, Math.floor(groups / islandSize));
  // A chain through each island first, so every group has an edge and islands are connected.
  const pairs: Array<[number, number]> = [];
  const add = (a: number, b: number): void => {
    const key = `${a}-${b}`;
    if (a === b || b >= groups || seen.has(key) || pairs.length >= edges) return;
    seen.add(key);
    pairs.push([a, b]);
  };
  for (let g = 0; g + islands < groups; g++) add(g, g + islands);
  for (let guard = 0; pairs.length < edges && guard < edges * 50; guard++) {
    const a = rnd(groups);
    add(a, (a % islands) + islands * rnd(Math.ceil(groups / islands)));
  }
  pairs.forEach(([a, b], idx) => {
    const i = idx + 1;
    const refused = i % 5 === 0;
    const audit = !refused && i % 7 === 0;
    for (let r = 0; r < 3; r++) {
      out.push(
        flow({
          client: `g${a}`,
          server: `g${b}`,
          port: 8000 + (b % 100),
          clientPort: 30000 + ((i * 3 + r) % 30000),
          verdict: refused ? 'reject' : 'accept',
          reason: refused ? 'policy' : audit ? 'audit' : 'ok',
          time: t0 + i * 10 + r,
        }),
      );
    }
  });
  return out.sort((p, q) => (p.time < q.time ? -1 : 1));
}
