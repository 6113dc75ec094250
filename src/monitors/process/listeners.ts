// Which TCP ports do these processes listen on? Server-side PUs are found by listening port
// because a SYN-ACK never matches `-m cgroup` (it leaves from a request socket). We read the
// listening sockets of this network namespace from /proc/net/tcp{,6} and the socket inodes
// held by the PU's processes from /proc/PID/fd.

import { closeSync, openSync, readSync, readdirSync, readlinkSync } from 'node:fs';

const LISTEN = '0A';

/**
 * inode -> port of every listening TCP socket in our network namespace. The kernel lists
 * listening sockets first in /proc/net/tcp{,6}, so reading stops at the first line in
 * another state: a busy server has tens of thousands of TIME_WAIT lines after them, and
 * reading those every scan cost ~95 ms of CPU (measured by the benchmark at 31k sockets).
 */
export function listeningSockets(procNet = '/proc/net'): Map<string, number> {
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
