// The scenario table. Each NFQUEUE scenario's handler is ONE entry here: pointing the
// tessera row at the real datapath (`tessera daemon` in an accept-all mode) is a one-line
// change of its `handler` (plus `rules: 'handler'` if the daemon installs its own rules).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { NsHost } from '../../scripts/lib/netns.js';
import { TesseraError } from '../../src/errors.js';

/** Everything a handler command may need to know about where it runs. */
export interface HandlerContext {
  /** Repository root (absolute). */
  root: string;
  /** Absolute path of a built benchmark binary in bench/out/. */
  bin(name: string): string;
  /** Queue number the harness's rules send packets to (unique per scenario). */
  queue: number;
  /** The namespace host this handler runs in, and its role there. */
  host: NsHost;
  role: 'client' | 'server';
  /** The other host. */
  peer: NsHost;
  /** A scratch directory for this host and scenario (state dirs, sockets, keys). */
  dir: string;
}

export type HandlerCommand = (ctx: HandlerContext) => string[];

export interface Scenario {
  id: string;
  /** Row label in the table. */
  title: string;
  /** Queue passes per connection (SYN + SYN-ACK at both ends = 4). */
  passes: number;
  /**
   * The handler started in each host: 'none' for the baseline; undefined when no command
   * exists yet (the scenario is skipped with `missing` as the printed note).
   */
  handler: HandlerCommand | 'none' | undefined;
  /** 'bench': the harness installs the queue rules; 'handler': the handler installs its own. */
  rules: 'none' | 'bench' | 'handler';
  /** Files (relative to the repository root) the handler needs; missing ones skip the scenario. */
  requires?: string[];
  /** The note printed when the scenario is skipped because `handler` is undefined. */
  missing?: string;
  /** Printed by the handler when it is ready for traffic (stdout or stderr). Default /^ready$/m. */
  ready?: RegExp;
}

const node = process.execPath;

export const SCENARIOS: readonly Scenario[] = [
  { id: 'baseline', title: 'no NFQUEUE (baseline)', passes: 0, rules: 'none', handler: 'none' },
  {
    id: 'c-accept',
    title: 'C libnetfilter_queue accept-all',
    passes: 4,
    rules: 'bench',
    handler: (c) => [c.bin('nfq_accept'), '--queue', String(c.queue)],
  },
  {
    id: 'c-accept-batch',
    title: 'C accept-all, batch verdicts',
    passes: 4,
    rules: 'bench',
    handler: (c) => [c.bin('nfq_accept'), '--queue', String(c.queue), '--batch'],
  },
  {
    id: 'nfqueue-npm',
    title: 'npm nfqueue in Node accept-all',
    passes: 4,
    rules: 'bench',
    requires: ['node_modules/nfqueue/build/Release/nfqueue.node'],
    handler: (c) => [node, join(c.root, 'bench/handlers/nfqueue-accept.cjs'), '--queue', String(c.queue)],
  },
  {
    id: 'tessera-accept',
    title: 'tessera addon accept-all (worker)',
    passes: 4,
    rules: 'bench',
    requires: ['native/build/Release/tessera_nfq.node', 'native/index.cjs'],
    // The one line to swap for the real datapath, e.g.
    //   handler: (c) => [node, join(c.root, 'dist/src/bin/tessera.js'), 'daemon', '--accept-all', '--state-dir', c.dir],
    handler: (c) => [node, join(c.root, 'bench/handlers/tessera-accept.mjs'), '--queue', String(c.queue)],
  },
  {
    id: 'tessera-ca',
    title: 'tessera full mutual auth (CA mode)',
    passes: 6,
    rules: 'handler',
    handler: undefined,
    missing: 'no command yet: set its handler in bench/lib/scenarios.ts once `tessera daemon` runs in CA mode',
  },
];

/** Why a scenario cannot run on this checkout, or null when it can. */
export function unavailable(s: Scenario, root: string): string | null {
  if (s.handler === undefined) return s.missing ?? 'no handler command';
  const absent = (s.requires ?? []).filter((f) => !existsSync(join(root, f)));
  return absent.length ? `missing ${absent.join(', ')}` : null;
}

/** Select scenarios by id, in table order; unknown ids are an error naming the known ones. */
export function selectScenarios(ids: readonly string[] | null): Scenario[] {
  if (ids === null) return [...SCENARIOS];
  const known = new Set(SCENARIOS.map((s) => s.id));
  const unknown = ids.filter((id) => !known.has(id));
  if (unknown.length) {
    throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `unknown scenario(s) ${unknown.join(', ')}; known: ${[...known].join(', ')}`);
  }
  return SCENARIOS.filter((s) => ids.includes(s.id));
}
