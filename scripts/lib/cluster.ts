// A Tessera "cluster" on one machine: namespace hosts (scripts/lib/netns.ts), a freshly made
// CA (or PSK), and one `tessera daemon` per host with its own socket, state directory and
// net_cls subtree. Shared by the demo (which narrates) and the integration tests (which assert).

import { mkdtempSync, rmSync, existsSync, createWriteStream, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { createTopology, killAndWait, nsHost, run, type NsHost, type Topology } from './netns.js';
import { removeRuntimeFile, runtimeFilePath } from '../../src/daemon/enroll.js';

const here = dirname(fileURLToPath(import.meta.url));
/** Repository root, whether this file runs from scripts/lib or dist/scripts/lib. */
export const REPO = existsSync(join(here, '..', '..', 'package.json')) ? resolve(here, '..', '..') : resolve(here, '..', '..', '..');
export const TESSERA = join(REPO, 'dist', 'src', 'bin', 'tessera.js');

export interface TesseraHost extends NsHost {
  readonly socket: string;
  readonly cgroupRoot: string;
  readonly logFile: string;
  /** Run the tessera CLI inside this host against its daemon. */
  tessera(args: string[], opts?: { timeoutMs?: number }): Promise<{ stdout: string; stderr: string; code: number }>;
  /** Start a long-running command as a PU (tessera run ... -- argv). */
  spawnPu(labels: string[], argv: string[]): ChildProcess;
  /** Run a command to completion as a PU. */
  runPu(labels: string[], argv: string[], timeoutMs?: number): Promise<{ stdout: string; stderr: string; code: number }>;
  /** Wait until the daemon lists a PU listening on `port`. */
  waitForListener(port: number, timeoutMs?: number): Promise<void>;
  status(): Promise<StatusJson>;
  flows(): Promise<FlowJson[]>;
  daemon: ChildProcess | null;
  /** The argv of this host's daemon (trust, socket, state dir, cgroup root, then `extra`). */
  daemonArgv(extra?: string[]): string[];
  /** Start the daemon; `env` adds variables (e.g. the test-only TESSERA_TEST_CRASH_AFTER_MS). */
  startDaemon(extra?: string[], env?: NodeJS.ProcessEnv): Promise<void>;
  stopDaemon(): Promise<number | null>;
}

export interface StatusJson {
  host: string;
  rules: { ok: boolean; error?: string; since: string; lastFailure?: { error: string; at: string } };
  pus: Array<{ id: string; labels: string[]; ports: number[]; pids: number[]; classid: string }>;
  counters: Record<string, number>;
}
export interface FlowJson {
  direction: string;
  stage: string;
  verdict: string;
  reason: string;
  remoteLabels: string[] | null;
  localLabels: string[] | null;
  localPu?: string | null;
  localPort?: number;
  remoteAddr?: string;
  remotePort?: number;
  remoteHost: string | null;
}

export interface Cluster {
  readonly topology: Topology;
  readonly hosts: TesseraHost[];
  host(name: string): TesseraHost;
  readonly dir: string;
  destroy(): Promise<void>;
}

export interface ClusterOptions {
  prefix: string;
  hosts: string[];
  subnet: number;
  trust?: 'ca' | 'psk';
  /** Extra daemon flags for every host. */
  daemonArgs?: string[];
  /** Extra daemon flags for one host, by name (e.g. --docker only where dockerd runs). */
  hostDaemonArgs?: Record<string, string[]>;
  /** Start the daemons (default true). */
  start?: boolean;
  /**
   * Hosts in namespaces that already exist and are not ours to delete (e.g. tessera-docker,
   * where dockerd runs): they get a daemon like the others; destroy() ends what was started
   * in them and removes their rules and cgroups, but leaves the namespace.
   */
  extraHosts?: NsHost[];
}

/**
 * A host in an existing network namespace (not created, not deleted by the cluster). Commands
 * run with `ip netns exec NS`; processes spawned are ended by PID in the cluster's destroy().
 */
export function existingNsHost(name: string, ns: string, addr: string): NsHost & { readonly children: Set<ChildProcess> } {
  const children = new Set<ChildProcess>();
  return { ...nsHost(name, ns, addr, children), children };
}

async function must(argv: string[]): Promise<string> {
  const r = await run(argv, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr || r.stdout}`);
  return r.stdout;
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** Poll `fn` until it returns a truthy value or the time is up. */
export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 10_000, everyMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export async function createCluster(o: ClusterOptions): Promise<Cluster> {
  if (!existsSync(TESSERA)) throw new Error(`${TESSERA} is missing: run npm run build first`);
  const dir = mkdtempSync(join(tmpdir(), `tessera-${o.prefix}-`));
  const topology = await createTopology({ prefix: o.prefix, hosts: o.hosts, subnet: o.subnet });
  const hosts: TesseraHost[] = [];
  const logs: WriteStream[] = [];
  const trust = o.trust ?? 'ca';
  try {
    const node = process.execPath;
    const keys = join(dir, 'keys');
    if (trust === 'ca') {
      await must([node, TESSERA, 'ca', 'init', '--out', keys, '--name', `${o.prefix}-ca`]);
      for (const h of [...o.hosts, ...(o.extraHosts ?? []).map((x) => x.name)]) await must([node, TESSERA, 'ca', 'issue', '--ca', join(keys, 'ca.json'), '--host', `host-${h}`, '--out', keys]);
    } else {
      await must([node, TESSERA, 'psk', 'init', '--out', join(dir, 'psk.json')]);
    }
    for (const base of [...topology.hosts, ...(o.extraHosts ?? [])]) {
      const socket = `/run/tessera-${o.prefix}/${base.name}/tessera.sock`;
      const cgroupRoot = `tessera-${o.prefix}-${base.name}`;
      const logFile = join(dir, `daemon-${base.name}.log`);
      const trustArgs =
        trust === 'ca'
          ? ['--ca', join(keys, 'ca.pub.json'), '--cert', join(keys, `host-${base.name}.cert`), '--key', join(keys, `host-${base.name}.key.json`)]
          : ['--psk-file', join(dir, 'psk.json'), '--host-id', `host-${base.name}`];
      const cli = (args: string[]) => [node, TESSERA, ...args];
      const h: TesseraHost = {
        ...base,
        socket,
        cgroupRoot,
        logFile,
        daemon: null,
        tessera: (args, opts) => base.exec(cli([...args]), { timeoutMs: opts?.timeoutMs ?? 30_000, env: { ...process.env, TESSERA_SOCKET: socket } }),
        spawnPu: (labels, argv) => base.spawn(cli(['run', ...labels.flatMap((l) => ['--label', l]), '--socket', socket, '--', ...argv])),
        runPu: (labels, argv, timeoutMs = 20_000) => base.exec(cli(['run', ...labels.flatMap((l) => ['--label', l]), '--socket', socket, '--', ...argv]), { timeoutMs }),
        async status() {
          const r = await h.tessera(['status', '--json']);
          if (r.code !== 0) throw new Error(`tessera status failed on ${base.name}: ${r.stderr}`);
          return JSON.parse(r.stdout) as StatusJson;
        },
        async flows() {
          const r = await h.tessera(['flows', '--json', '--limit', '1000']);
          if (r.code !== 0) throw new Error(`tessera flows failed on ${base.name}: ${r.stderr}`);
          return r.stdout.trim() ? r.stdout.trim().split('\n').map((l) => JSON.parse(l) as FlowJson) : [];
        },
        async waitForListener(port, timeoutMs = 10_000) {
          await waitFor(`a PU listening on ${base.name}:${port}`, async () => (await h.status()).pus.some((p) => p.ports.includes(port)), timeoutMs);
        },
        daemonArgv: (extra = []) =>
          cli(['daemon', ...trustArgs, '--socket', socket, '--state-dir', join(dir, 'state', base.name), '--cgroup-root', cgroupRoot, ...(o.daemonArgs ?? []), ...(o.hostDaemonArgs?.[base.name] ?? []), ...extra]),
        async startDaemon(extra = [], env) {
          const log = createWriteStream(logFile, { flags: 'a' });
          logs.push(log);
          const child = base.spawn(h.daemonArgv(extra), env ? { env: { ...process.env, ...env } } : undefined);
          child.stdout?.pipe(log);
          child.stderr?.pipe(log);
          h.daemon = child;
          let exited: number | null | undefined;
          child.once('exit', (code) => (exited = code));
          await waitFor(
            `tessera daemon on ${base.name} (log: ${logFile})`,
            async () => {
              if (exited !== undefined) throw new Error(`daemon exited with ${exited}; see ${logFile}`);
              return (await h.tessera(['status', '--json'], { timeoutMs: 5000 })).code === 0;
            },
            20_000,
            150,
          );
        },
        async stopDaemon() {
          const child = h.daemon;
          if (!child) return null;
          h.daemon = null;
          // Already gone (crashed, killed): its exit event fired long ago.
          if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
          const code = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
          await killAndWait(child, 10_000);
          return code;
        },
      };
      hosts.push(h);
    }
    if (o.start !== false) await Promise.all(hosts.map((h) => h.startDaemon()));
  } catch (err) {
    await destroyAll();
    throw err;
  }

  async function destroyAll(): Promise<void> {
    for (const h of hosts) await h.stopDaemon().catch(() => null);
    for (const x of o.extraHosts ?? []) {
      const kids = (x as { children?: Set<ChildProcess> }).children;
      if (kids) await Promise.all([...kids].map((c) => killAndWait(c)));
    }
    // A stopped daemon leaves its rules and its PU cgroups (fail-closed, for re-adoption):
    // remove them inside each host's namespace, the net_cls subtree being machine-wide.
    // --force: whatever a test left running in the namespace is ending with it.
    for (const h of hosts) await h.exec([process.execPath, TESSERA, 'cleanup', '--force', '--cgroup-root', h.cgroupRoot], { timeoutMs: 30_000 });
    await topology.destroy();
    // A --docker daemon keeps the runtime shim's file when it stops (fail-closed); a test's goes with it.
    for (const h of hosts) await removeRuntimeFile(runtimeFilePath(), h.socket).catch(() => {});
    for (const l of logs) l.end();
    await run(['rm', '-rf', `/run/tessera-${o.prefix}`]);
    if (!process.env.TESSERA_KEEP_LOGS) rmSync(dir, { recursive: true, force: true });
  }

  return {
    topology,
    hosts,
    dir,
    host: (name) => {
      const h = hosts.find((x) => x.name === name);
      if (!h) throw new Error(`no host ${name}`);
      return h;
    },
    destroy: destroyAll,
  };
}
