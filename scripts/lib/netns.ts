// Test hosts as network namespaces on one machine: N "hosts" joined by a bridge that lives in
// its own "switch" namespace, so nothing is added to the machine's own namespace. Used by the
// integration tests, the demo and the benchmark. Addresses are always inside 10.213.0.0/16.
//
// Everything created is recorded and removed by destroy(), also from process exit handlers,
// and processes started through spawn() are ended by PID.

import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface NsHost {
  /** Short name given by the caller, e.g. "a". */
  readonly name: string;
  /** Network namespace name. */
  readonly ns: string;
  /** The host's IPv4 address on the shared segment. */
  readonly addr: string;
  /** Run a command inside the namespace and wait for it. Never throws on a non-zero exit. */
  exec(argv: string[], opts?: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv }): Promise<ExecResult>;
  /** Start a long-running command inside the namespace; it is killed by destroy(). */
  spawn(argv: string[], opts?: SpawnOptions): ChildProcess;
}

export interface Topology {
  readonly hosts: NsHost[];
  host(name: string): NsHost;
  destroy(): Promise<void>;
}

export interface TopologyOptions {
  /** Unique, short prefix (≤ 8 chars) for namespace names. */
  prefix: string;
  /** Host names, e.g. ["a", "b", "c"]. */
  hosts: string[];
  /** Third octet of 10.213.X.0/24 used for this topology (1..254). */
  subnet: number;
  /** MTU of the links (default 1500). */
  mtu?: number;
}

const live = new Set<Topology>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last-resort synchronous cleanup when the process dies without calling destroy().
  process.on('exit', () => {
    for (const t of live) (t as TopologyImpl).destroySync();
  });
}

export async function run(argv: string[], opts: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ExecResult> {
  const [file, ...args] = argv;
  if (!file) throw new Error('run: empty argv');
  try {
    const child = execFileP(file, args, {
      timeout: opts.timeoutMs ?? 30_000,
      maxBuffer: 64 * 1024 * 1024,
      env: opts.env ?? process.env,
    });
    if (opts.input !== undefined) {
      child.child.stdin?.end(opts.input);
    }
    const { stdout, stderr } = await child;
    return { stdout: String(stdout), stderr: String(stderr), code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number | string; signal?: string };
    const code = typeof e.code === 'number' ? e.code : 1;
    return { stdout: String(e.stdout ?? ''), stderr: String(e.stderr ?? '') + (e.signal ? ` (killed by ${e.signal})` : ''), code };
  }
}

export async function mustRun(argv: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<string> {
  const r = await run(argv, opts);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

class TopologyImpl implements Topology {
  readonly hosts: NsHost[] = [];
  readonly switchNs: string;
  readonly children = new Set<ChildProcess>();
  /** destroy() started; the exit hook must still finish the job if it never completes. */
  private destroying = false;
  private destroyed = false;

  constructor(readonly opts: TopologyOptions) {
    this.switchNs = `${opts.prefix}-sw`;
  }

  host(name: string): NsHost {
    const h = this.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no host ${name} in topology ${this.opts.prefix}`);
    return h;
  }

  makeHost(name: string, index: number): NsHost {
    return nsHost(name, `${this.opts.prefix}-${name}`, `10.213.${this.opts.subnet}.${index + 1}`, this.children);
  }

  async create(): Promise<void> {
    const { prefix, subnet } = this.opts;
    const mtu = String(this.opts.mtu ?? 1500);
    if (prefix.length > 8) throw new Error('topology prefix must be at most 8 characters');
    if (subnet < 1 || subnet > 254) throw new Error('subnet must be 1..254');
    await mustRun(['ip', 'netns', 'add', this.switchNs]);
    await mustRun(['ip', '-n', this.switchNs, 'link', 'add', 'br0', 'type', 'bridge']);
    await mustRun(['ip', '-n', this.switchNs, 'link', 'set', 'br0', 'up']);
    await mustRun(['ip', '-n', this.switchNs, 'link', 'set', 'lo', 'up']);
    // Where br_netfilter is present, the bridge would run iptables and IPv4 header checks on
    // frames between our hosts; a switch is not a router: turn that off (best effort).
    await run(['ip', 'netns', 'exec', this.switchNs, 'sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=0', 'net.bridge.bridge-nf-call-ip6tables=0']);
    for (const [i, name] of this.opts.hosts.entries()) {
      const h = this.makeHost(name, i);
      this.hosts.push(h);
      await mustRun(['ip', 'netns', 'add', h.ns]);
      const port = `p${i}`;
      await mustRun(['ip', '-n', this.switchNs, 'link', 'add', port, 'mtu', mtu, 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', mtu, 'netns', h.ns]);
      await mustRun(['ip', '-n', this.switchNs, 'link', 'set', port, 'master', 'br0', 'up']);
      await mustRun(['ip', '-n', h.ns, 'addr', 'add', `${h.addr}/24`, 'dev', 'eth0']);
      await mustRun(['ip', '-n', h.ns, 'link', 'set', 'eth0', 'up']);
      await mustRun(['ip', '-n', h.ns, 'link', 'set', 'lo', 'up']);
    }
  }

  async destroy(): Promise<void> {
    if (this.destroying || this.destroyed) return;
    this.destroying = true;
    await Promise.all([...this.children].map((c) => killAndWait(c)));
    for (const h of this.hosts) await run(['ip', 'netns', 'del', h.ns]);
    await run(['ip', 'netns', 'del', this.switchNs]);
    this.destroyed = true;
    live.delete(this);
  }

  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const c of this.children) {
      try {
        if (c.pid) process.kill(c.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    // Synchronous on purpose: this runs from the process 'exit' handler.
    for (const ns of [...this.hosts.map((h) => h.ns), this.switchNs]) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        /* already gone */
      }
    }
  }
}

/**
 * A host view of network namespace `ns`: commands run with `ip netns exec`, and processes
 * started through spawn() are recorded in `children` so that whoever owns it ends them by PID.
 */
export function nsHost(name: string, ns: string, addr: string, children: Set<ChildProcess>): NsHost {
  return {
    name,
    ns,
    addr,
    exec: (argv, o) => run(['ip', 'netns', 'exec', ns, ...argv], o),
    spawn: (argv, o) => {
      const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: 'pipe', ...o });
      children.add(child);
      child.on('exit', () => children.delete(child));
      return child;
    },
  };
}

/** SIGTERM a child we started, then SIGKILL after a grace period. */
export function killAndWait(child: ChildProcess, graceMs = 3000): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => {
      try {
        child.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }, graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    try {
      child.kill('SIGTERM');
    } catch {
      clearTimeout(timer);
      resolve();
    }
  });
}

/** Build a topology; on any failure everything created so far is removed. */
export async function createTopology(opts: TopologyOptions): Promise<Topology> {
  installExitHook();
  const t = new TopologyImpl(opts);
  live.add(t);
  try {
    await t.create();
  } catch (err) {
    await t.destroy();
    throw err;
  }
  return t;
}

/** A short unique prefix for namespace names, e.g. "ts3f9a". */
export function uniquePrefix(tag = 't'): string {
  return `${tag}${process.pid.toString(36).slice(-3)}${Math.floor(Math.random() * 36 ** 3).toString(36)}`.slice(0, 8);
}

/** True when running as root (integration tests need it). */
export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
