// The scenario table. Each NFQUEUE scenario's handler is ONE entry here; a handler that
// protects processes (the real daemon) also says how to run a command as its PU (`pu`).
import { existsSync, writeFileSync } from 'node:fs';
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
  /** A scratch directory for this host and scenario, emptied before every round (state dirs, sockets). */
  dir: string;
  /** A scratch directory of this scenario shared by both hosts for the whole run (keys made by `prepare`). */
  shared: string;
}

export type HandlerCommand = (ctx: HandlerContext) => string[];

/**
 * For handlers that protect processes (the real daemon): the benchmark's own server and client
 * must then run as PUs, which the handler discovers by itself.
 */
export interface PuSupport {
  /** Command prefix that runs a command as a PU in this host (server, sink and every client phase). */
  wrap(ctx: HandlerContext): string[];
  /** A command printing the handler's status as JSON: `{ pus: [{ ports: number[] }] }`. */
  status(ctx: HandlerContext): string[];
  /**
   * A command that exits 0 once the handler protects a server PU's `port` in the kernel, not
   * only in its own tables: `status` may list a port before its rules are installed.
   */
  serving(ctx: HandlerContext, port: number): string[];
  /** Removes what the handler may have left in its host (rules, cgroups); run after it stopped. */
  cleanup(ctx: HandlerContext): string[];
  /** Machine-wide cgroup directory names (prefix) this scenario may create, for the watchdog. */
  cgroupPrefix(ns: string): string;
}

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
  /** Instead of `ready`: a command run in the handler's host until it exits 0. */
  probe?: HandlerCommand;
  /** Once per run, before the first round (e.g. make keys in `shared`). Commands run on the machine. */
  prepare?: (root: string, shared: string, run: (argv: string[]) => Promise<void>) => Promise<void>;
  /** Set when the server and client must run as PUs of this handler. */
  pu?: PuSupport;
}

const node = process.execPath;
/**
 * Node handlers' interpreter argv. BENCH_CPU_PROF=DIR adds --cpu-prof (main thread and every
 * worker write a .cpuprofile into DIR when they exit): for finding where a row's time goes.
 * BENCH_NODE_FLAGS="--trace-deopt ..." adds node/V8 flags (with --verbose to see their output);
 * BENCH_BASE_NODE_FLAGS, when set, replaces them for the *-base rows.
 */
const nodeArgv = (base = false): string[] => {
  const dir = process.env.BENCH_CPU_PROF;
  // The *-base rows take BENCH_BASE_NODE_FLAGS when it is set (even empty): an A/B of flags alone.
  const flags = base && process.env.BENCH_BASE_NODE_FLAGS !== undefined ? process.env.BENCH_BASE_NODE_FLAGS : process.env.BENCH_NODE_FLAGS;
  const extra = flags?.split(' ').filter(Boolean) ?? [];
  return [node, ...extra, ...(dir ? ['--cpu-prof', '--cpu-prof-dir', dir] : [])];
};
const TESSERA_JS = 'dist/src/bin/tessera.js';
const socketOf = (c: HandlerContext): string => join(c.dir, 'tessera.sock');
// One net_cls subtree per daemon: the hierarchy is machine-wide, the namespace name is unique.
const cgroupRootOf = (ns: string): string => `tessera-${ns}`;

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
    // The row the targets compare with C: our datapath exactly as the daemon runs it
    // (the worker pool of src/datapath, built), in accept-all mode, under the bench's rules.
    id: 'tessera-accept',
    title: 'tessera datapath pool accept-all',
    passes: 4,
    rules: 'bench',
    requires: ['native/build/Release/tessera_nfq.node', 'native/index.cjs', 'dist/src/datapath/index.js', 'dist/src/datapath/queue.worker.js'],
    handler: (c) => [...nodeArgv(), join(c.root, 'bench/handlers/tessera-datapath.mjs'), '--queue', String(c.queue)],
  },
  {
    // The addon alone in one worker: the difference to the pool row is what the pool adds.
    id: 'tessera-addon',
    title: 'tessera addon only (worker)',
    passes: 4,
    rules: 'bench',
    requires: ['native/build/Release/tessera_nfq.node', 'native/index.cjs'],
    handler: (c) => [node, join(c.root, 'bench/handlers/tessera-addon.mjs'), '--queue', String(c.queue)],
  },
  // The product: `tessera daemon` in each host, CA trust, its own rules; server and client
  // run as PUs with one label, so every connection is a full mutual authorization.
  caScenario('tessera-ca', 'tessera full mutual auth (CA mode)', false),
  caScenario('tessera-ca-policy50', 'tessera full mutual auth (CA), 50-rule policy', true),
  // The same daemons and rules with `--accept-all`: what the four passes cost without the
  // protocol's work (the floor the full-auth rows are measured against), and protocol v1's
  // six-pass layout (`--six-passes`: the first ACK queued at both ends) beside it.
  caScenario('tessera-daemon-accept', 'tessera daemon rules, accept-all handler (4-pass floor)', false, true),
  caScenario('tessera-daemon-accept6', 'tessera daemon rules, accept-all handler (6-pass floor, v1 layout)', false, true, true),
  // Same-run A/B against another checkout (BENCH_BASE_ROOT=/path/to/a/built/clone): the same
  // rows with that checkout's daemon, interleaved with ours, so a change is measured against
  // its parent under the same load rather than against a number from another hour.
  caScenario('tessera-ca-base', 'tessera full mutual auth (CA), BENCH_BASE_ROOT daemon', false, false, false, baseRoot),
  caScenario('tessera-daemon-accept-base', 'tessera daemon rules, accept-all (4-pass floor), BENCH_BASE_ROOT daemon', false, true, false, baseRoot),
];

/**
 * A 50-rule policy whose only matching rule comes last: the worst case for evaluation
 * (every rule is tried for every handshake), for the "no regression with 50 rules" target.
 */
export function policy50(): string {
  const rules = Array.from(
    { length: 49 },
    (_, i) => `  - id: other-${i}\n    from: {app: svc-${i}, env: [prod, staging]}\n    to: {app: db-${i}, tier: {notIn: [cache, queue]}}\n    ports: ["${1000 + i * 10}-${1005 + i * 10}"]\n    action: allow\n`,
  );
  return `version: 1\nname: bench-50-rules\nrules:\n${rules.join('')}  - id: bench\n    from: {app: bench}\n    to: {app: bench}\n    action: allow\n`;
}

/** The checkout BENCH_BASE_ROOT names (built: dist/ and native/build), or null. */
function baseRoot(): string | null {
  return process.env.BENCH_BASE_ROOT || null;
}

/**
 * The full-auth scenario: a real daemon per host (CA mode), server and client as PUs.
 * `otherRoot`: run the daemon (and its CLI) of that checkout instead of this one; the
 * scenario is skipped when it returns null.
 */
function caScenario(id: string, title: string, withPolicy: boolean, acceptAll = false, sixPasses = false, otherRoot?: () => string | null): Scenario {
  const rootOf = (c: { root: string }): string => otherRoot?.() ?? c.root;
  return {
    id,
    title,
    // Protocol v2: SYN out, SYN in, SYN-ACK out, SYN-ACK in.
    passes: sixPasses ? 6 : 4,
    rules: 'handler',
    requires: [TESSERA_JS, 'native/build/Release/tessera_nfq.node'],
    ...(otherRoot ? { missing: 'BENCH_BASE_ROOT is not set (a built checkout to compare with)' } : {}),
    prepare: async (root, shared, run) => {
      const ca = join(shared, 'ca');
      await run([node, join(root, TESSERA_JS), 'ca', 'init', '--out', ca, '--name', 'tessera-bench-ca']);
      for (const h of ['a', 'b']) await run([node, join(root, TESSERA_JS), 'ca', 'issue', '--ca', join(ca, 'ca.json'), '--host', `host-${h}`, '--out', ca]);
      if (withPolicy) writeFileSync(join(shared, 'policy50.yaml'), policy50());
    },
    handler: (c) => [
      ...nodeArgv(otherRoot !== undefined),
      join(rootOf(c), TESSERA_JS),
      'daemon',
      '--ca', join(c.shared, 'ca', 'ca.pub.json'),
      '--cert', join(c.shared, 'ca', `host-${c.host.name}.cert`),
      '--key', join(c.shared, 'ca', `host-${c.host.name}.key.json`),
      '--socket', socketOf(c),
      '--state-dir', join(c.dir, 'state'),
      '--cgroup-root', cgroupRootOf(c.host.ns),
      '--queue-base', String(c.queue),
      // warn: flow records are logged at info; at 10 k conn/s that would be the benchmark.
      '--log-level', 'warn',
      ...(withPolicy ? ['--policy', join(c.shared, 'policy50.yaml')] : []),
      ...(acceptAll ? ['--accept-all'] : []),
      ...(sixPasses ? ['--six-passes'] : []),
    ],
    probe: (c) => [node, join(rootOf(c), TESSERA_JS), 'status', '--json', '--socket', socketOf(c)],
    pu: {
      wrap: (c) => [node, join(rootOf(c), TESSERA_JS), 'run', '--label', 'app=bench', '--socket', socketOf(c), '--'],
      status: (c) => [node, join(rootOf(c), TESSERA_JS), 'status', '--json', '--socket', socketOf(c)],
      // A server PU's port is in table inet tessera's guard_ports set once the daemon's
      // transaction for it committed (docs/rules.md); its listener is found by the socket
      // lookup from the first SYN anyway.
      serving: (_c, port) => ['sh', '-c', `nft list set inet tessera guard_ports | grep -E -q -- '[ {,]${port}[ ,}]'`],
      cleanup: (c) => [node, join(rootOf(c), TESSERA_JS), 'cleanup', '--cgroup-root', cgroupRootOf(c.host.ns)],
      cgroupPrefix: (ns) => cgroupRootOf(ns),
    },
  };
}

/** Why a scenario cannot run on this checkout, or null when it can. */
export function unavailable(s: Scenario, root: string): string | null {
  if (s.handler === undefined) return s.missing ?? 'no handler command';
  const base = s.id.endsWith('-base') ? baseRoot() : root;
  if (base === null) return s.missing ?? 'no checkout';
  const absent = (s.requires ?? []).filter((f) => !existsSync(join(base, f)));
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
