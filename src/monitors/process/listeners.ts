// Which TCP ports do these processes listen on? Server-side PUs are found by listening port
// because a SYN-ACK never matches `-m cgroup` (it leaves from a request socket). We get the
// listening sockets of this network namespace from the addon's sock_diag dump (handed in by
// the daemon: monitors may not import datapath), else from /proc/net/tcp{,6}, and the socket
// inodes held by the PU's processes from /proc/PID/fd.

import { closeSync, openSync, readSync, readdirSync, readlinkSync } from 'node:fs';
import { readdir, readlink } from 'node:fs/promises';

const LISTEN = '0A';

/** The addon's listeningSockets(): [inode, port, inode, port, ...] of this namespace's LISTEN TCP sockets. */
export type ListenerDump = () => Uint32Array;

/**
 * inode -> port of every listening TCP socket in our network namespace: from `dump` (the
 * addon's sock_diag query, which walks only the kernel's listening hash) when given, else
 * from /proc/net/tcp{,6} under `procNet`.
 */
export function listeningSockets(dump?: ListenerDump | null, procNet = '/proc/net'): Map<string, number> {
  if (!dump) return procListeningSockets(procNet);
  const words = dump();
  const out = new Map<string, number>();
  for (let i = 0; i + 1 < words.length; i += 2) out.set(String(words[i]), words[i + 1]!);
  return out;
}

/**
 * The daemon's source of listening sockets: `dump` while it works; /proc/net/tcp{,6} when
 * there is none (the addon did not load) and, for good, from the first dump that throws
 * (a kernel without inet_diag, a refusing LSM) — that error goes to `onDumpError` once.
 */
export function createListenerSource(dump: ListenerDump | null, onDumpError: (err: unknown) => void, procNet = '/proc/net'): () => Map<string, number> {
  let current = dump;
  return () => {
    if (current) {
      try {
        return listeningSockets(current, procNet);
      } catch (err) {
        current = null;
        onDumpError(err);
      }
    }
    return listeningSockets(null, procNet);
  };
}

/**
 * The fallback reader. The kernel lists listening sockets first in /proc/net/tcp{,6}, so
 * reading stops at the first line in another state: a busy server has tens of thousands of
 * TIME_WAIT lines after them, and reading those every scan cost ~95 ms of CPU (measured by
 * the benchmark at 31k sockets). tcp6 without IPv6 listeners still walks the whole
 * established hash in the kernel to find that out.
 */
function procListeningSockets(procNet: string): Map<string, number> {
  const out = new Map<string, number>();
  const chunk = Buffer.allocUnsafe(64 * 1024);
  for (const file of ['tcp', 'tcp6']) {
    let fd: number;
    try {
      fd = openSync(`${procNet}/${file}`, 'r');
    } catch {
      continue; // no IPv6 in this kernel/namespace
    }
    try {
      let rest = '';
      let header = true;
      let done = false;
      while (!done) {
        const n = readSync(fd, chunk, 0, chunk.length, null);
        if (n === 0) break;
        const lines = (rest + chunk.toString('latin1', 0, n)).split('\n');
        rest = lines.pop()!;
        for (const line of lines) {
          if (header) {
            header = false;
            continue;
          }
          const cols = line.trim().split(/\s+/);
          if (cols.length < 10) continue;
          if (cols[3] !== LISTEN) {
            done = true;
            break;
          }
          const local = cols[1]!;
          out.set(cols[9]!, parseInt(local.slice(local.lastIndexOf(':') + 1), 16));
        }
      }
    } finally {
      closeSync(fd);
    }
  }
  return out;
}

/** Socket inodes held open by a process (empty if it is gone or not ours to read). */
export function socketInodes(pid: number): string[] {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  const inodes: string[] = [];
  for (const fd of fds) {
    try {
      const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (link.startsWith('socket:[')) inodes.push(link.slice(8, -1));
    } catch {
      /* closed meanwhile */
    }
  }
  return inodes;
}

/** The TCP ports that any of `pids` listens on, sorted. */
export function listeningPorts(pids: readonly number[], sockets = listeningSockets()): number[] {
  const ports = new Set<number>();
  for (const pid of pids) {
    for (const inode of socketInodes(pid)) {
      const port = sockets.get(inode);
      if (port !== undefined) ports.add(port);
    }
  }
  return [...ports].sort((a, b) => a - b);
}

/** Socket inodes held open by a process, read asynchronously (empty if it is gone or not ours to read). */
export async function socketInodesAsync(pid: number): Promise<string[]> {
  let fds: string[];
  try {
    fds = await readdir(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  const links = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
  return links.filter((l) => l.startsWith('socket:[')).map((l) => l.slice(8, -1));
}

/** listeningPorts() without synchronous file system calls: for the few PUs the cgroup dump cannot place. */
export async function listeningPortsAsync(pids: readonly number[], sockets: Map<string, number>): Promise<number[]> {
  const ports = new Set<number>();
  for (const pid of pids) {
    for (const inode of await socketInodesAsync(pid)) {
      const port = sockets.get(inode);
      if (port !== undefined) ports.add(port);
    }
  }
  return [...ports].sort((a, b) => a - b);
}

/** The arguments of the dump of listening TCP sockets with their cgroup v2 (iproute2 ss, sock_diag). */
export const SS_LISTENERS = ['ss', '-Hltn', '--cgroup'];

/**
 * Listening sockets from `ss -Hltn --cgroup` output: port and cgroup v2 path ("/a/b") of each.
 * Lines without a cgroup (an older ss) are left out; null when no line has one at all.
 */
export function parseSsListeners(text: string): Array<{ port: number; cgroup: string }> | null {
  const out: Array<{ port: number; cgroup: string }> = [];
  let lines = 0;
  for (const line of text.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 5) continue;
    lines++;
    const local = cols[3]!;
    const port = Number(local.slice(local.lastIndexOf(':') + 1));
    const cg = cols.find((c) => c.startsWith('cgroup:'));
    if (!cg || !Number.isInteger(port) || port < 1 || port > 65535) continue;
    out.push({ port, cgroup: cg.slice('cgroup:'.length) });
  }
  return lines > 0 && out.length === 0 ? null : out;
}
