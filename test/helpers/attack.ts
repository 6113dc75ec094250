// Shared utilities of the attack and lifecycle tests: helper processes inside namespace hosts
// (NFQUEUE taps, raw sockets), iptables rules that are always removed again, and the packet
// surgery an on-path attacker does (move a captured segment to another address, port and
// sequence space, with correct checksums).

import { readFileSync, readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import type { NsHost } from '../../scripts/lib/netns.js';
import { killAndWait } from '../../scripts/lib/netns.js';
import { parseTcp, rebuild, findOption, type TcpPacket } from '../../src/packet/index.js';

const here = dirname(fileURLToPath(import.meta.url));

export const TCP = { FIN: 1, SYN: 2, RST: 4, PSH: 8, ACK: 16 } as const;
const MARKER_KIND = 253;
const MARKER_EXID = 0x7e55;
const TCPOPT_TIMESTAMP = 8;

// ---------------------------------------------------------------- helper processes

export interface HelperEvent {
  ev: string;
  [k: string]: unknown;
}

export interface Helper {
  readonly child: ChildProcess;
  /** Every event so far, in order. */
  readonly events: HelperEvent[];
  /** The first event (already seen or still to come) that matches, or a timeout error. */
  waitFor(what: string, pred: (e: HelperEvent) => boolean, timeoutMs?: number): Promise<HelperEvent>;
  send(msg: object): void;
  stop(): Promise<void>;
}

/**
 * Start test/helpers/<script> with node inside `host`'s namespace and wait for its
 * {ev:'ready'} line. Its stderr is kept for error messages.
 */
export async function startHelper(host: NsHost, script: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Helper> {
  const child = host.spawn([process.execPath, join(here, script), ...args], { stdio: 'pipe', env: { ...process.env, ...env } });
  const events: HelperEvent[] = [];
  const waiters = new Set<() => void>();
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      events.push(JSON.parse(line) as HelperEvent);
    } catch {
      events.push({ ev: 'text', line });
    }
    for (const w of [...waiters]) w();
  });
  let exited = false;
  child.once('exit', () => {
    exited = true;
    for (const w of [...waiters]) w();
  });
  const waitFor: Helper['waitFor'] = (what, pred, timeoutMs = 10_000) =>
    new Promise((resolve, reject) => {
      const check = (): boolean => {
        const e = events.find(pred);
        if (e) {
          done();
          resolve(e);
          return true;
        }
        if (exited) {
          done();
          reject(new Error(`${script} exited while waiting for ${what}; stderr: ${stderr}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} from ${script}; stderr: ${stderr}`));
      }, timeoutMs);
      const w = (): void => void check();
      const done = (): void => {
        clearTimeout(timer);
        waiters.delete(w);
      };
      waiters.add(w);
      check();
    });
  const helper: Helper = {
    child,
    events,
    waitFor,
    send: (msg) => child.stdin?.write(JSON.stringify(msg) + '\n'),
    async stop() {
      child.stdin?.end();
      await killAndWait(child, 2000);
    },
  };
  const ready = await waitFor('ready', (e) => e.ev === 'ready' || e.ev === 'error', 15_000).catch(async (err: unknown) => {
    await helper.stop();
    throw err;
  });
  if (ready.ev !== 'ready') {
    await helper.stop();
    throw new Error(`${script} failed to start: ${JSON.stringify(ready)}`);
  }
  return helper;
}

// ---------------------------------------------------------------- iptables in a namespace

/** Run an iptables command in `host`; throws with its stderr on failure. */
export async function iptables(host: NsHost, args: string[], binary: 'iptables' | 'ip6tables' = 'iptables'): Promise<string> {
  const r = await host.exec([binary, '-w', '5', ...args], { timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`${binary} ${args.join(' ')} in ${host.ns} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/**
 * Insert one rule (first in its chain) and return a function that deletes it again; the
 * deleter is idempotent and never throws, so it is safe in finally/afterAll.
 */
export async function insertRule(host: NsHost, table: string, chain: string, rule: string[]): Promise<() => Promise<void>> {
  await iptables(host, ['-t', table, '-I', chain, '1', ...rule]);
  let removed = false;
  return async () => {
    if (removed) return;
    removed = true;
    await host.exec(['iptables', '-w', '5', '-t', table, '-D', chain, ...rule], { timeoutMs: 15_000 });
  };
}

/** iptables-save and ip6tables-save of `host`. */
export async function saveRules(host: NsHost): Promise<{ v4: string; v6: string }> {
  const v4 = await host.exec(['iptables-save'], { timeoutMs: 15_000 });
  const v6 = await host.exec(['ip6tables-save'], { timeoutMs: 15_000 });
  if (v4.code !== 0) throw new Error(`iptables-save in ${host.ns} failed: ${v4.stderr}`);
  if (v6.code !== 0) throw new Error(`ip6tables-save in ${host.ns} failed: ${v6.stderr}`);
  return { v4: v4.stdout, v6: v6.stdout };
}

/** The lines of an iptables-save text that mention Tessera's chains. */
export function tesseraLines(saved: string): string[] {
  return saved.split('\n').filter((l) => l.includes('TESSERA'));
}

/** TCP sockets of `host` as `ss -tan` reports them: state, local and peer "addr:port" (IPv4-mapped addresses unmapped). */
export async function tcpSockets(host: NsHost): Promise<Array<{ state: string; local: string; peer: string }>> {
  const r = await host.exec(['ss', '-tanH'], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`ss in ${host.ns} failed: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 5)
    .map((f) => ({ state: f[0]!, local: unmap(f[3]!), peer: unmap(f[4]!) }));
}

/** "[::ffff:10.0.0.1]:80" (an IPv4 peer of a dual-stack socket) → "10.0.0.1:80". */
function unmap(endpoint: string): string {
  return endpoint.replace(/^\[(?:::ffff:)?([^\]]*)\]:(\d+|\*)$/i, '$1:$2');
}

// ---------------------------------------------------------------- processes

/**
 * The PID of the node process behind a `ip netns exec NS node ...` child. iproute2 execs the
 * command in place (same PID) unless it runs in batch mode, where it forks: handle both.
 */
export function nodePidOf(child: ChildProcess): number {
  const pid = child.pid;
  if (!pid) throw new Error('child has no pid');
  const isNode = (p: number): boolean => {
    try {
      const argv0 = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0')[0] ?? '';
      return argv0 === process.execPath || /(^|\/)node$/.test(argv0);
    } catch {
      return false;
    }
  };
  if (isNode(pid)) return pid;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    let children: string;
    try {
      children = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const c of children.trim().split(/\s+/).filter(Boolean).map(Number)) if (isNode(c)) return c;
  }
  throw new Error(`no node process found for pid ${pid}`);
}

// ---------------------------------------------------------------- packets

export function fromHex(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

export function parse(buf: Uint8Array): TcpPacket {
  const pkt = parseTcp(buf);
  if (!pkt.ok) throw new Error(`not a TCP packet: ${pkt.reason}`);
  return pkt;
}

/** Exact flag byte (FIN..ACK bits only). */
export function flagsOf(pkt: TcpPacket): number {
  return pkt.flags & 0x1f;
}

export function isTagged(buf: Uint8Array, pkt: TcpPacket): boolean {
  return findOption(buf, pkt, MARKER_KIND, MARKER_EXID) >= 0;
}

/** The handshake block type in the payload trailer (1 SYN, 2 SYN-ACK, 3 ACK), or 0. */
export function blockType(buf: Uint8Array, pkt: TcpPacket): number {
  const end = pkt.payloadOffset + pkt.payloadLength;
  if (pkt.payloadLength < 4 || buf[end - 4] !== 1) return 0;
  return buf[end - 3]!;
}

/** TSval of a packet's timestamp option, or null. */
export function tsval(buf: Uint8Array, pkt: TcpPacket): number | null {
  const at = findOption(buf, pkt, TCPOPT_TIMESTAMP);
  if (at < 0) return null;
  return Buffer.from(buf.buffer, buf.byteOffset).readUInt32BE(at + 2);
}

export interface Rewrite {
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
  seq?: number;
  ack?: number;
  /** New TSecr for the timestamp option (echo of the peer's TSval), when the packet has one. */
  tsecr?: number;
}

/**
 * A copy of an IPv4 TCP packet moved to other addresses, ports and sequence numbers, with the
 * IPv4 header and TCP checksums recomputed (payload, options and the token block untouched).
 */
export function rewritePacket(original: Uint8Array, w: Rewrite): Buffer {
  const buf = Buffer.from(original);
  const pkt = parse(buf);
  if (pkt.family !== 4) throw new Error('rewritePacket handles IPv4 only');
  const t = pkt.tcpOffset;
  if (w.src) buf.set(w.src.split('.').map(Number), pkt.srcAddrOffset);
  if (w.dst) buf.set(w.dst.split('.').map(Number), pkt.dstAddrOffset);
  if (w.sport !== undefined) buf.writeUInt16BE(w.sport, t);
  if (w.dport !== undefined) buf.writeUInt16BE(w.dport, t + 2);
  if (w.seq !== undefined) buf.writeUInt32BE(w.seq >>> 0, t + 4);
  if (w.ack !== undefined) buf.writeUInt32BE(w.ack >>> 0, t + 8);
  if (w.tsecr !== undefined) {
    const at = findOption(buf, pkt, TCPOPT_TIMESTAMP);
    if (at >= 0) buf.writeUInt32BE(w.tsecr >>> 0, at + 6);
  }
  // An empty edit is a plain copy with every length and checksum recomputed.
  const out = Buffer.alloc(buf.length);
  const len = rebuild(buf, parse(buf), {}, out);
  if (typeof len !== 'number') throw new Error(`rebuild failed: ${len.reason}`);
  return out.subarray(0, len);
}
