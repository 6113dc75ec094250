// Which TCP ports do these processes listen on? Server-side PUs are found by listening port
// because a SYN-ACK never matches `-m cgroup` (it leaves from a request socket). We read the
// listening sockets of this network namespace from /proc/net/tcp{,6} and the socket inodes
// held by the PU's processes from /proc/PID/fd.

import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

const LISTEN = '0A';

/** inode -> port of every listening TCP socket in our network namespace. */
export function listeningSockets(procNet = '/proc/net'): Map<string, number> {
  const out = new Map<string, number>();
  for (const file of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`${procNet}/${file}`, 'utf8');
    } catch {
      continue; // no IPv6 in this kernel/namespace
    }
    const lines = text.split('\n');
    for (let i = 1; i < lines.length; i++) {
      const cols = lines[i]!.trim().split(/\s+/);
      if (cols.length < 10 || cols[3] !== LISTEN) continue;
      const local = cols[1]!;
      const port = parseInt(local.slice(local.lastIndexOf(':') + 1), 16);
      out.set(cols[9]!, port);
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
